"""What a worker keeps between and within jobs: datasets read into memory once, the output cache
keyed by contents, and the size-bounded store under both caches."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from worker_fixtures import AuditTree, baseline_request, identity_weights, write_audit_tree, write_model

from privaudit.services.attack_worker.__main__ import parse_flags
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.npz_store import NpzStore
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.v1 import results_pb2

FOUND = "found in the output cache"


@pytest.fixture
def tree(tmp_path) -> AuditTree:
    return write_audit_tree(tmp_path / "storage")


def run(tree: AuditTree, cache_dir, **request_options):
    """A BASELINE job's result and progress messages on a worker caching in `cache_dir`."""
    progress: list[results_pb2.JobProgress] = []
    settings = WorkerSettings(str(tree.root), cache_dir=str(cache_dir))
    result = run_job(baseline_request(tree, **request_options), settings, progress.append)
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    return result, [p.message for p in progress]


def measured(result: results_pb2.AttackResult) -> tuple:
    return result.metrics.SerializeToString(), result.target_model.train_acc, result.target_model.test_acc


# ---------------------------------------------------------------- the output cache


def test_a_later_job_reads_the_targets_outputs_instead_of_querying_again(tree, tmp_path):
    first, messages = run(tree, tmp_path / "cache")
    assert not any(FOUND in m for m in messages)
    assert len(list((tmp_path / "cache" / "outputs").glob("*.npz"))) == 2  # members, non-members

    again, messages = run(tree, tmp_path / "cache", seed=99)  # another task with the same model and data
    assert sum(FOUND in m for m in messages) == 2
    assert measured(again) == measured(first)


def test_the_output_cache_is_keyed_by_contents_not_paths(tree, tmp_path):
    cache = tmp_path / "cache"
    run(tree, cache)
    shutil.copytree(tree.root / tree.model, tree.root / "models" / "copy")
    _, messages = run(tree, cache, target_model="models/copy")
    assert sum(FOUND in m for m in messages) == 2  # same weights elsewhere: the same outputs

    weights = identity_weights()
    weights["linear.bias"] = weights["linear.bias"] + 0.5  # same argmax, other logits
    write_model(tree.root / tree.model, weights)
    _, messages = run(tree, cache)
    assert not any(FOUND in m for m in messages)

    data = np.load(tree.root / tree.members / "records.npz")
    np.savez(tree.root / tree.members / "records.npz", samples=data["samples"] * 2, labels=data["labels"])
    _, messages = run(tree, cache)
    assert sum(FOUND in m for m in messages) == 1  # the non-members are unchanged


def test_outputs_of_a_retrained_model_stay_within_the_job(tree, tmp_path):
    settings = WorkerSettings(str(tree.root), cache_dir=str(tmp_path / "cache"))
    rt = PaddleRuntime(settings, 1, lambda *_: None)
    model = rt.load_model("target_model", tree.model)
    members = rt.load_dataset("test_datasets.members", tree.members)
    assert model.digest is not None
    rt.train(model, members, epochs=1, lr=0.1, batch_size=4)
    assert model.digest is None
    rt.predict(model, members, batch_size=4)
    assert not (tmp_path / "cache" / "outputs").exists()


def test_an_unusable_output_cache_entry_is_computed_again(tree, tmp_path):
    cache = tmp_path / "cache"
    first, _ = run(tree, cache)
    for entry in (cache / "outputs").glob("*.npz"):
        entry.write_bytes(b"not an npz file")
    again, messages = run(tree, cache)
    assert not any(FOUND in m for m in messages)
    assert measured(again) == measured(first)


# ---------------------------------------------------------------- datasets in memory


def test_a_dataset_in_memory_is_read_once_and_a_larger_one_batch_by_batch(tree, monkeypatch):
    in_memory = PaddleRuntime(WorkerSettings(str(tree.root)), 1, lambda *_: None)
    streamed = PaddleRuntime(WorkerSettings(str(tree.root), dataset_memory_mb=0), 1, lambda *_: None)
    small = in_memory.load_dataset("test_datasets.members", tree.members)
    large = streamed.load_dataset("test_datasets.members", tree.members)
    assert small.records is not None and small.digest is not None
    assert large.records is None and large.digest is None

    reads = {"in memory": 0, "streamed": 0}

    def counted(kind: str, original):
        def counting(source, index):
            reads[kind] += 1
            return original(source, index)
        return counting

    for kind, dataset in (("in memory", small), ("streamed", large)):
        source_class = type(dataset.source)
        monkeypatch.setattr(source_class, "__getitem__", counted(kind, source_class.__getitem__))
    for rows in ([0, 5, 2], [7, 7]):
        for a, b in zip(small.read(rows), large.read(rows), strict=True):
            np.testing.assert_array_equal(a, b)
    assert reads == {"in memory": 0, "streamed": 5}


def test_results_are_the_same_whether_datasets_are_in_memory_or_not(tree):
    def result(memory_mb: int):
        settings = WorkerSettings(str(tree.root), dataset_memory_mb=memory_mb)
        return run_job(baseline_request(tree), settings, lambda _: None)

    assert measured(result(0)) == measured(result(1024))


# ---------------------------------------------------------------- the store under both caches


def test_the_store_keeps_the_entries_used_last_within_its_bound(tmp_path):
    entry_bytes = len(_entry_file(tmp_path / "probe"))
    store = NpzStore(tmp_path / "store", max_bytes=2 * entry_bytes)
    store.store("a", x=np.zeros(100))
    store.store("b", x=np.ones(100))
    _age(store, "a", 2), _age(store, "b", 1)
    assert store.load("a") is not None  # reading `a` makes `b` the least recently used
    store.store("c", x=np.full(100, 2.0))
    assert sorted(p.stem for p in store.folder.iterdir()) == ["a", "c"]
    np.testing.assert_array_equal(store.load("c")["x"], np.full(100, 2.0))
    assert store.load("b") is None


def test_a_store_bounded_to_zero_keeps_nothing(tmp_path):
    store = NpzStore(tmp_path / "store", max_bytes=0)
    store.store("a", x=np.zeros(3))
    assert store.load("a") is None and not list(store.folder.iterdir())


def test_a_store_that_cannot_be_written_loses_the_entry_only(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = NpzStore(blocker / "store", max_bytes=2**20)
    store.store("a", x=np.zeros(3))
    assert store.load("a") is None


def test_the_cache_flags(tmp_path, monkeypatch, capsys):
    for name in ("PRIVAUDIT_CACHE_MAX_MB", "PRIVAUDIT_DATASET_MEMORY_MB"):
        monkeypatch.delenv(name, raising=False)
    flags = parse_flags(["--storage-root", str(tmp_path)])
    assert (flags.cache_max_mb, flags.dataset_memory_mb) == (WorkerSettings.cache_max_mb,
                                                             WorkerSettings.dataset_memory_mb)
    monkeypatch.setenv("PRIVAUDIT_CACHE_MAX_MB", "64")
    assert parse_flags(["--storage-root", str(tmp_path), "--dataset-memory-mb", "0"]).cache_max_mb == 64
    with pytest.raises(SystemExit):
        parse_flags(["--storage-root", str(tmp_path), "--dataset-memory-mb", "-1"])
    assert "--dataset-memory-mb / PRIVAUDIT_DATASET_MEMORY_MB: must be at least 0, got -1" in capsys.readouterr().err


def _entry_file(folder) -> bytes:
    NpzStore(folder, max_bytes=2**30).store("probe", x=np.zeros(100))
    return (folder / "probe.npz").read_bytes()


def _age(store: NpzStore, key: str, seconds_ago: float) -> None:
    when = os.stat(store.folder / f"{key}.npz").st_mtime - seconds_ago
    os.utime(store.folder / f"{key}.npz", (when, when))
