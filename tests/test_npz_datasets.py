"""Data without code: a dataset folder holding a data.npz (x, y, optional ids) instead of a .py.

Read with pickling off, checked as a .py's records are (the same `storage.read_records`), and
digested by its records alone, so an npz and a .py with the same records share cache entries
and give the same report: checked whole through a real local cluster.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from worker_fixtures import NUM_CLASSES, records, write_audit_tree, write_dataset

from privaudit.client import AuditClient, LocalCluster
from privaudit.services.attack_worker import storage
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.errors import TaskError
from privaudit.v1 import orchestrator_pb2, report_pb2


def write_npz(folder: Path, **arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz", **arrays)
    return folder


def runtime(root: Path) -> PaddleRuntime:
    return PaddleRuntime(WorkerSettings(str(root)), seed=1, report=lambda *_: None)


@pytest.fixture
def same_records(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A storage root with the same 12 records as a .py dataset ("code") and as a data.npz
    whose samples are float64 and labels int32 ("arrays"); the records' samples and labels."""
    samples, labels = records([i % NUM_CLASSES for i in range(12)], [i % 3 != 0 for i in range(12)], layout="CHW")
    samples = samples + np.linspace(0, 0.5, samples.size, dtype=np.float32).reshape(samples.shape)
    write_dataset(tmp_path / "code", samples, labels)
    write_npz(tmp_path / "arrays", x=samples.astype(np.float64), y=labels.astype(np.int32),
              ids=np.arange(100, 112))
    return tmp_path, samples, labels


def test_an_npz_folder_gives_its_records_as_a_py_folder_does(same_records):
    root, samples, labels = same_records
    rt = runtime(root)
    code, arrays = rt.load_dataset("code", "code"), rt.load_dataset("arrays", "arrays")
    assert len(arrays) == 12
    for dataset in (code, arrays):
        read_samples, read_labels = dataset.read(range(12))
        np.testing.assert_array_equal(read_samples, samples)
        np.testing.assert_array_equal(read_labels, labels)
        assert (read_samples.dtype, read_labels.dtype) == (np.float32, np.int64)
    assert arrays.digest is not None and arrays.digest == code.digest


def test_the_digest_is_of_the_records_not_of_the_file(same_records):
    root, samples, labels = same_records
    (root / "compressed").mkdir()  # other bytes, other dtypes, the same records
    np.savez_compressed(root / "compressed" / "data.npz", x=samples, y=labels.astype(np.uint8))
    write_npz(root / "one_label_changed", x=samples, y=np.where(np.arange(12) == 4, (labels + 1) % NUM_CLASSES, labels))
    rt = runtime(root)
    digest = rt.load_dataset("arrays", "arrays").digest
    assert rt.load_dataset("compressed", "compressed").digest == digest
    assert rt.load_dataset("changed", "one_label_changed").digest != digest


def test_a_folder_with_a_py_reads_the_py_and_ignores_a_data_npz(same_records):
    root, samples, _ = same_records
    write_npz(root / "code", x=np.zeros((3, 1, 2, 2)), y=np.zeros(3, dtype=np.int64))
    assert len(runtime(root).load_dataset("code", "code")) == len(samples)


def test_pickled_objects_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    write_npz(tmp_path / "hostile", x=np.array([Payload(), Payload()], dtype=object), y=np.array([0, 1]))
    with pytest.raises(TaskError) as refused:
        storage.load_dataset(tmp_path, "hostile", "target_datasets.members")
    assert refused.value.field == "target_datasets.members"
    assert "hostile/data.npz: x holds Python objects, which are never unpickled" in refused.value.message
    assert not marker.exists()


GOOD_X = np.eye(NUM_CLASSES, dtype=np.float32)[[i % NUM_CLASSES for i in range(8)]].reshape(8, 2, 2)
GOOD_Y = np.arange(8) % NUM_CLASSES
NAN_X = GOOD_X.copy()
NAN_X[5, 1, 0] = np.nan


@pytest.mark.parametrize(("arrays", "words"), [
    ({"x": GOOD_X}, ["has no y", "holds x", "optionally ids"]),
    ({"x": GOOD_X, "y": GOOD_Y[:7]}, ["one entry per record", "'x': 8, 'y': 7"]),
    ({"x": GOOD_X, "y": GOOD_Y, "ids": np.arange(9)}, ["one entry per record", "'ids': 9"]),
    ({"x": GOOD_X.reshape(-1), "y": GOOD_Y}, ["x is float32 [32]", "one sample array per record"]),
    ({"x": GOOD_X, "y": GOOD_Y.astype(np.float64)}, ["y is float64 [8]", "integer class index"]),
    ({"x": GOOD_X, "y": GOOD_Y.reshape(8, 1)}, ["y is int64 [8, 1]"]),
    ({"x": GOOD_X.astype(np.complex64), "y": GOOD_Y}, ["x is complex64"]),
    ({"x": GOOD_X[:0], "y": GOOD_Y[:0]}, ["holds no records"]),
    ({"x": NAN_X, "y": GOOD_Y}, ["record 5", "NaN or infinite values", "data.npz"]),
    ({"x": GOOD_X, "y": np.where(GOOD_Y == 2, -1, GOOD_Y)}, ["label of record 2", "class index", "-1"]),
])
def test_bad_arrays_are_refused_naming_the_fault(tmp_path, arrays, words):
    write_npz(tmp_path / "bad", **arrays)
    with pytest.raises(TaskError) as refused:
        rt = runtime(tmp_path)
        rt.load_dataset("target_datasets.members", "bad")
    assert refused.value.field == "target_datasets.members"
    for word in words:
        assert word in refused.value.message, refused.value.message


def test_a_file_that_is_no_npz_is_refused(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "data.npz").write_text("x,y\n1,2\n")
    with pytest.raises(TaskError, match=r"text/data.npz is not a readable .npz archive.*numpy.savez"):
        storage.load_dataset(tmp_path, "text", "f")


def test_a_folder_with_neither_names_both_choices(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(TaskError, match=r"exactly one .py file, the dataset code defining get_dataset\(\) \(or, "
                                        r"without one, a data.npz holding x and y\); found none"):
        storage.load_dataset(tmp_path, "nothing", "f")


def test_the_worker_length_limit_applies(same_records):
    root, _, _ = same_records
    with pytest.raises(TaskError, match=r"arrays/data\.npz: the dataset has 12 records; this worker reads at most 11"):
        storage.load_dataset(root, "arrays", "f", max_length=11)


def test_the_length_limit_is_checked_before_the_samples_are_read(tmp_path):
    """x's data is cut short after its header: reading it would fail, so the length message
    shows that x was never read."""
    write_npz(tmp_path / "whole", x=np.zeros((40, 1, 28, 28), dtype=np.float32), y=np.zeros(40, dtype=np.int64))
    (tmp_path / "cut").mkdir()
    with zipfile.ZipFile(tmp_path / "whole" / "data.npz") as whole, \
            zipfile.ZipFile(tmp_path / "cut" / "data.npz", "w") as cut:
        cut.writestr("y.npy", whole.read("y.npy"))
        cut.writestr("x.npy", whole.read("x.npy")[:200])
    with pytest.raises(TaskError, match="the dataset has 40 records; this worker reads at most 39"):
        storage.load_dataset(tmp_path, "cut", "f", max_length=39)
    with pytest.raises(TaskError, match=r"cannot read cut/data\.npz"):
        storage.load_dataset(tmp_path, "cut", "f")


def test_a_data_npz_leading_out_of_the_root_is_refused(tmp_path):
    write_npz(tmp_path / "outside", x=GOOD_X, y=GOOD_Y)
    (tmp_path / "root" / "linked").mkdir(parents=True)
    (tmp_path / "root" / "linked" / "data.npz").symlink_to(tmp_path / "outside" / "data.npz")
    with pytest.raises(TaskError, match="leads outside the storage root"):
        storage.load_dataset(tmp_path / "root", "linked", "f")


# ---------------------------------------------------------------- the same report, through the services

TASK = """
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: BASELINE
  args: {target_datasets: [datasets/members, datasets/non_members], target_model: models/net}
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: LOSS
  args: {target_datasets: [datasets/members, datasets/non_members], target_model: models/net,
         population_datasets: [datasets/population]}
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: ML-LEAK
  args: {target_datasets: [datasets/members, datasets/non_members], target_model: models/net,
         shadow_model: models/net, shadow_datasets: [datasets/population, datasets/non_members],
         shadow_epoch: 2, classifier_epoch: 2, batch_size: 4}
"""
# What differs between two runs of one task whatever their data: the audit's id, its date, the wall times
# of its stages (JSON only); the text report's lines of the first two.
RUN_DETAILS = [(r'"task_id": "[^"]*"', '"task_id": ""'), (r'"generated_at": "[^"]*"', '"generated_at": ""'),
               (r'"timings": \{[^}]*\}', '"timings": {}'), (r"Task: \w+", "Task: "),
               (r"generated at: \S+", "generated at: ")]


def as_npz(folder: Path) -> None:
    """Replaces a worker_fixtures dataset folder (dataset.py reading records.npz) by a data.npz."""
    with np.load(folder / "records.npz") as data:
        samples, labels = data["samples"], data["labels"]
    shutil.rmtree(folder)
    write_npz(folder, x=samples, y=labels, ids=np.arange(len(labels)))


def run_details_removed(report: str) -> str:
    for pattern, replacement in RUN_DETAILS:
        report = re.sub(pattern, replacement, report)
    return report


@pytest.mark.e2e
def test_npz_and_py_datasets_with_the_same_records_give_the_same_report(tmp_path):
    """The same task run on .py folders, then on the same folders turned into data.npz, in one
    cluster: the same dataset digests, the second run served from the output cache, and the
    same reports (JSON and text) but for the run's id, date and stage timings."""
    tree = write_audit_tree(tmp_path / "root", member_correct=[True] * 14 + [False] * 2,
                            non_member_correct=[True] * 9 + [False] * 7)
    write_dataset(tmp_path / "root" / "datasets" / "population",
                  *records([i % NUM_CLASSES for i in range(16)], [i % 4 != 0 for i in range(16)]))
    reports = {}
    baseline_notes: set[str] = set()  # BASELINE's progress notes in the last run

    def note(event: orchestrator_pb2.AuditEvent) -> None:
        if event.HasField("progress") and event.progress.attack_index == 0:
            baseline_notes.add(event.progress.message)

    with LocalCluster(workers=1, storage_root=tree.root) as cluster, AuditClient(cluster.address) as client:
        for kind in ("py", "npz"):
            if kind == "npz":
                for folder in ("members", "non_members", "population"):
                    as_npz(tree.root / "datasets" / folder)
            baseline_notes.clear()
            outcome = client.run(TASK, "text", seed=3, on_event=note)
            assert [attack.status for attack in outcome.report.attacks] == ["succeeded"] * 3, outcome.rendered
            reports[kind] = {"text": outcome.renderings[report_pb2.REPORT_FORMAT_TEXT],
                             "json": outcome.renderings[report_pb2.REPORT_FORMAT_JSON]}
            digests = {d.path: d.digest for d in outcome.report.provenance.datasets}
            assert len(digests) == 3 and all(digests.values()), digests
            reports[kind]["digests"] = json.dumps(digests, sort_keys=True)
    assert reports["npz"]["digests"] == reports["py"]["digests"]
    # The worker's output cache is keyed by content: the npz run finds the target's outputs there.
    assert {"outputs of net on members found in the output cache",
            "outputs of net on non_members found in the output cache"} <= baseline_notes, baseline_notes
    assert run_details_removed(reports["npz"]["json"]) == run_details_removed(reports["py"]["json"])
    assert run_details_removed(reports["npz"]["text"]) == run_details_removed(reports["py"]["text"])
