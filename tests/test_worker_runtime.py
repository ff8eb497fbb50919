"""The Paddle runtime of a job: cached queries, seeded training, streamed augmented queries,
progress, stage timings and cancellation."""

from __future__ import annotations

import threading

import numpy as np
import paddle
import pytest
from augment_reference import augmented
from worker_fixtures import NUM_CLASSES, AuditTree, records, write_audit_tree, write_dataset, write_model

from privaudit.services.attack_worker import paddle_runtime
from privaudit.services.attack_worker.attacks.augment import Augment, Mirror, Rotation, translations
from privaudit.services.attack_worker.paddle_runtime import JobCancelled, PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.errors import TaskError
from privaudit.v1 import results_pb2


@pytest.fixture
def tree(tmp_path) -> AuditTree:
    return write_audit_tree(tmp_path)


def make_runtime(tree: AuditTree, seed: int = 5, events: list | None = None,
                 cancelled: threading.Event | None = None) -> PaddleRuntime:
    sink = events if events is not None else []
    return PaddleRuntime(WorkerSettings(str(tree.root)), seed, lambda *event: sink.append(event), cancelled)


def batch_sizes_seen(layer: paddle.nn.Layer) -> list[int]:
    """The batch size of every forward pass of `layer` from now on."""
    seen: list[int] = []
    layer.register_forward_post_hook(lambda _layer, inputs, _output: seen.append(inputs[0].shape[0]))
    return seen


def test_predict_is_batched_known_and_computed_once(tree):
    rt = make_runtime(tree)
    model = rt.load_model("target_model", tree.model)
    members = rt.load_dataset("test_datasets.members", tree.members)
    seen = batch_sizes_seen(model.layer)

    outputs = rt.predict(model, members, batch_size=3)
    assert seen == [3, 3, 2]
    assert outputs.logits.dtype == np.float32 and outputs.labels.dtype == np.int64
    assert outputs.logits.shape == (8, NUM_CLASSES)
    np.testing.assert_array_equal(outputs.logits.argmax(axis=1) == outputs.labels, tree.member_correct)

    # The same folder however spelled is the same handle, and its outputs are not recomputed.
    assert rt.load_model("shadow_model", f"./{tree.model}/") is model
    assert rt.load_dataset("shadow_datasets.members", f"datasets/../{tree.members}") is members
    assert rt.predict(model, members, batch_size=5) is outputs
    assert seen == [3, 3, 2]
    assert rt.num_classes(model, members) == NUM_CLASSES


def test_datasets_read_are_listed_by_field_in_order(tree):
    rt = make_runtime(tree)
    rt.load_dataset("test_datasets.non_members", tree.non_members)
    rt.load_dataset("test_datasets.members", tree.members)
    rt.load_dataset("shadow_datasets.members", tree.members)
    assert list(rt.datasets_read) == ["test_datasets.non_members", "test_datasets.members",
                                      "shadow_datasets.members"]
    assert rt.datasets_read["shadow_datasets.members"] is rt.datasets_read["test_datasets.members"]


def test_fresh_models_are_seeded_by_the_job(tree):
    def fresh_weights(seed: int) -> np.ndarray:
        model = make_runtime(tree, seed).load_model("shadow_model", tree.model, trained=False)
        return model.layer.linear.weight.numpy()

    np.testing.assert_array_equal(fresh_weights(5), fresh_weights(5))
    assert not np.array_equal(fresh_weights(5), fresh_weights(6))
    trained = make_runtime(tree).load_model("target_model", tree.model).layer.linear.weight.numpy()
    np.testing.assert_array_equal(trained, np.eye(NUM_CLASSES))


def test_training_learns_is_reproducible_and_refreshes_outputs(tmp_path):
    labels = [i % NUM_CLASSES for i in range(16)]
    tree = write_audit_tree(tmp_path)
    write_dataset(tmp_path / "datasets" / "learnable", *records(labels, [True] * 16))

    def trained(seed: int) -> tuple[np.ndarray, float, float]:
        rt = make_runtime(tree, seed)
        model = rt.load_model("shadow_model", tree.model, trained=False)
        data = rt.load_dataset("shadow_datasets.members", "datasets/learnable")
        before = rt.predict(model, data, batch_size=16)
        rt.train(model, data, epochs=40, lr=0.1, batch_size=4)
        after = rt.predict(model, data, batch_size=16)
        accuracy = [float(np.mean(o.logits.argmax(axis=1) == o.labels)) for o in (before, after)]
        return model.layer.linear.weight.numpy(), *accuracy

    weights, before, after = trained(5)
    assert after == 1.0 > before
    np.testing.assert_array_equal(weights, trained(5)[0])
    assert not np.array_equal(weights, trained(6)[0])


def reference_correct(samples: np.ndarray, labels: np.ndarray, augment: Augment) -> np.ndarray:
    """Whether the identity model labels `samples` so augmented (by the scipy reference) right."""
    flat = augmented(augment, samples).reshape(len(samples), -1)
    return flat.argmax(axis=1) == labels


@pytest.mark.parametrize(("augments", "batch_size", "passes"), [
    ([Rotation(0), Mirror()], 4, [4, 4, 4, 4]),  # 4 records, their 8 copies in 2 passes
    ([Rotation(0), Mirror()], 5, [5, 5, 5, 1]),  # records 0-4, then 5-7
    ([Rotation(3), *translations(1)], 2, [2] * 24),  # 2 records, 12 copies: 6 passes
])
def test_augmented_copies_go_through_the_model_in_passes_of_the_batch_size(tree, augments, batch_size, passes):
    rt = make_runtime(tree)
    model = rt.load_model("target_model", tree.model)
    members = rt.load_dataset("test_datasets.members", tree.members)
    samples, labels = members.read(range(len(members)))
    seen = batch_sizes_seen(model.layer)

    correct = rt.predict_augmented(model, members, augments, batch_size=batch_size)

    assert correct.dtype == bool and correct.shape == (8, len(augments))
    for column, augment in enumerate(augments):
        np.testing.assert_array_equal(correct[:, column], reference_correct(samples, labels, augment))
    np.testing.assert_array_equal(correct[:, 0], tree.member_correct)
    assert seen == passes, "streamed batch by batch, every pass within the batch size"


def test_a_selection_is_queried_through_its_augmentation_on_the_device(tree):
    rt = make_runtime(tree)
    model = rt.load_model("target_model", tree.model)
    members = rt.load_dataset("test_datasets.members", tree.members)
    samples, labels = members.read(range(len(members)))
    order = np.array([7, 0, 3, 5])
    mirrored = rt.records([members], order, "mirrored", Mirror())

    np.testing.assert_array_equal(mirrored.read([0, 1])[0], samples[order[:2]])  # read: the records as they are
    logits = rt.predict(model, mirrored, batch_size=3).logits
    np.testing.assert_allclose(logits, augmented(Mirror(), samples[order]).reshape(4, -1))  # identity weights
    np.testing.assert_array_equal(logits.argmax(axis=1) == labels[order],
                                  reference_correct(samples[order], labels[order], Mirror()))


def test_the_job_runs_paddle_on_the_workers_device(tree, monkeypatch):
    chosen: list[str] = []
    monkeypatch.setattr(paddle, "set_device", chosen.append)
    make_runtime(tree)
    assert chosen == [], "no --device: Paddle's own choice"
    PaddleRuntime(WorkerSettings(str(tree.root), device="gpu:1"), 5, lambda *_: None)
    assert chosen == ["gpu:1"]


def test_a_job_on_the_cpu_builds_its_models_and_batches_there(tree):
    rt = PaddleRuntime(WorkerSettings(str(tree.root), device="cpu"), 5, lambda *_: None)
    model = rt.load_model("target_model", tree.model)
    members = rt.load_dataset("test_datasets.members", tree.members)
    places: list[str] = []
    model.layer.register_forward_pre_hook(lambda _layer, inputs: places.append(str(inputs[0].place)))

    rt.predict_augmented(model, members, [Mirror()], batch_size=4)

    assert paddle.device.get_device() == "cpu"
    assert {str(p.place) for p in model.layer.parameters()} == {"Place(cpu)"}
    assert set(places) == {"Place(cpu)"}


def test_a_label_beyond_the_models_classes_names_the_dataset(tmp_path):
    tree = write_audit_tree(tmp_path)
    samples, _ = records([0, 1], [True, True])
    write_dataset(tmp_path / "datasets" / "wide", samples, np.array([0, 7]))
    rt = make_runtime(tree)
    model = rt.load_model("target_model", tree.model)
    dataset = rt.load_dataset("test_datasets.members", "datasets/wide")
    with pytest.raises(TaskError, match="has label 7, but model net has only 4 classes") as caught:
        rt.predict(model, dataset, batch_size=8)
    assert caught.value.field == "test_datasets.members"


def test_a_model_that_cannot_take_the_samples_names_the_model(tmp_path):
    tree = write_audit_tree(tmp_path)
    write_dataset(tmp_path / "datasets" / "long", np.zeros((2, 3), np.float32), np.array([0, 1]))
    rt = make_runtime(tree)
    model = rt.load_model("target_model", tree.model)
    dataset = rt.load_dataset("test_datasets.members", "datasets/long")
    with pytest.raises(TaskError, match=r"model net failed on samples of shape \[3\]") as caught:
        rt.predict(model, dataset, batch_size=8)
    assert caught.value.field == "target_model"


def test_a_model_must_return_2d_logits(tmp_path):
    tree = write_audit_tree(tmp_path)
    write_model(tmp_path / "models" / "flat", code="import paddle\n\n\ndef get_model():\n"
                                                   "    return paddle.nn.Flatten(start_axis=0)\n")
    rt = make_runtime(tree)
    model = rt.load_model("target_model", "models/flat", trained=False)
    dataset = rt.load_dataset("test_datasets.members", tree.members)
    with pytest.raises(TaskError, match=r"must return logits of shape \[batch, num_classes\]"):
        rt.predict(model, dataset, batch_size=8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("memory_mb", [1024, 0], ids=["in memory", "record by record"])
def test_non_finite_samples_are_refused_naming_the_dataset_and_the_record(tmp_path, bad, memory_mb):
    """Read into memory, the dataset is refused as it loads; read record by record (larger than
    --dataset-memory-mb), as soon as a batch holding the record is read, for querying or training."""
    tree = write_audit_tree(tmp_path)
    samples, labels = records([i % NUM_CLASSES for i in range(12)], [True] * 12)
    samples[9, 1, 0] = bad
    write_dataset(tmp_path / "datasets" / "holed", samples, labels)
    rt = PaddleRuntime(WorkerSettings(str(tree.root), dataset_memory_mb=memory_mb), 5, lambda *_: None)
    model = rt.load_model("target_model", tree.model)
    reads = [lambda: rt.load_dataset("target_datasets.members", "datasets/holed")]
    if memory_mb == 0:
        dataset = reads.pop()()
        assert dataset.records is None, "read record by record"
        fresh = rt.load_model("shadow_model", tree.model, trained=False)
        reads = [lambda: rt.predict(model, dataset, batch_size=4),
                 lambda: rt.train(fresh, rt.records([dataset], range(12), "shadow training set"), 1, 0.1, 4)]
    for read in reads:
        with pytest.raises(TaskError) as caught:
            read()
        assert caught.value.field == "target_datasets.members"
        assert "the sample of record 9 holds NaN or infinite values" in str(caught.value)
        assert "fix, impute or drop such records in get_dataset()" in str(caught.value)


def test_stages_are_timed_and_reported(tree, monkeypatch):
    monkeypatch.setattr(paddle_runtime, "PROGRESS_INTERVAL_S", 0.0)
    events: list = []
    rt = make_runtime(tree, events=events)
    with rt.stage(results_pb2.STAGE_LOAD):
        rt.progress(0.5, "half way")
    with rt.stage(results_pb2.STAGE_SCORE):
        pass
    with rt.stage(results_pb2.STAGE_SCORE):  # scored by the attack, then measured by the job
        pass
    assert events == [(results_pb2.STAGE_LOAD, 0.0, ""), (results_pb2.STAGE_LOAD, 0.5, "half way"),
                      (results_pb2.STAGE_LOAD, 1.0, ""), (results_pb2.STAGE_SCORE, 0.0, ""),
                      (results_pb2.STAGE_SCORE, 1.0, ""), (results_pb2.STAGE_SCORE, 0.0, ""),
                      (results_pb2.STAGE_SCORE, 1.0, "")]
    assert [t.stage for t in rt.timings] == [results_pb2.STAGE_LOAD, results_pb2.STAGE_SCORE]
    assert all(t.seconds > 0 for t in rt.timings)


def test_progress_is_rate_limited_but_always_reports_the_end(tree):
    events: list = []
    rt = make_runtime(tree, events=events)
    with rt.stage(results_pb2.STAGE_PREDICT):
        for step in range(1, 11):
            rt.progress(step / 10, "step")
    assert [e[1] for e in events] == [0.0, 1.0, 1.0]  # entry, progress(1.0), stage end


def test_a_cancelled_job_stops_at_its_next_progress_point(tree):
    cancelled = threading.Event()
    rt = make_runtime(tree, cancelled=cancelled)
    model = rt.load_model("target_model", tree.model)
    members = rt.load_dataset("test_datasets.members", tree.members)
    seen = batch_sizes_seen(model.layer)

    model.layer.register_forward_post_hook(lambda *_: cancelled.set())

    with pytest.raises(JobCancelled):
        rt.predict_augmented(model, members, [Mirror()], batch_size=2)
    assert seen == [2], "no batch ran after the cancellation"
    with pytest.raises(JobCancelled), rt.stage(results_pb2.STAGE_PREDICT):
        pass
    with pytest.raises(JobCancelled):
        rt.load_dataset("test_datasets.non_members", tree.non_members)
