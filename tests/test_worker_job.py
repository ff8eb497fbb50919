"""One attack job from request to result: summaries, metrics, and how each kind of fault ends."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from worker_fixtures import AuditTree, baseline_request, write_audit_tree

from privaudit.services.attack_worker import attacks
from privaudit.services.attack_worker.attacks import baseline
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.paddle_runtime import JobCancelled
from privaudit.services.attack_worker.settings import JobLimits, WorkerSettings
from privaudit.services.common.errors import TaskError, Unavailable
from privaudit.v1 import results_pb2, task_pb2


@pytest.fixture
def tree(tmp_path) -> AuditTree:
    return write_audit_tree(tmp_path)


TASK, SERVICE = results_pb2.FAULT_TASK, results_pb2.FAULT_SERVICE


def run(tree: AuditTree, request=None, cancelled: threading.Event | None = None, **settings):
    progress: list[results_pb2.JobProgress] = []
    result = run_job(request or baseline_request(tree), WorkerSettings(str(tree.root), **settings), progress.append,
                     cancelled)
    return result, progress


def classification(result: results_pb2.AttackResult) -> tuple[str, int, bool]:
    return result.error.code, result.error.fault, result.error.retryable


def test_a_baseline_job_reports_model_datasets_metrics_and_timings(tree):
    result, progress = run(tree, baseline_request(tree, attack_index=2))
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    assert (result.attack_index, result.attack_name) == (2, "BASELINE")
    assert (result.target_model.name, result.target_model.path) == ("net", tree.model)
    assert result.target_model.train_acc == 0.75 and result.target_model.test_acc == 0.375
    assert [(d.name, d.path, d.is_member_dataset, d.length, d.role) for d in result.datasets] == [
        ("members", tree.members, True, 8, "target"), ("non_members", tree.non_members, False, 8, "target")]
    assert result.metrics.accuracy == pytest.approx((6 + 5) / 16)
    assert result.metrics.precision == pytest.approx(6 / 9) and result.metrics.recall == 0.75
    truth = np.r_[np.ones(8), np.zeros(8)]
    scores = np.r_[tree.member_correct, tree.non_member_correct].astype(float)
    assert result.metrics.auc == pytest.approx(roc_auc_score(truth, scores))
    assert result.metrics.advantage == pytest.approx(0.75 - 0.375)
    assert not result.metrics.HasField("tpr_at_1pct_fpr")  # 8 non-members cannot resolve 1%
    assert [(p.fpr, p.tpr) for p in result.roc] == [(0.0, 0.0), (0.375, 0.75), (1.0, 1.0)]
    stages = [results_pb2.STAGE_LOAD, results_pb2.STAGE_PREDICT, results_pb2.STAGE_SCORE]
    assert [t.stage for t in result.timings] == stages
    assert {p.stage for p in progress} == set(stages) and {p.attack_index for p in progress} == {2}


def test_a_job_names_its_most_exposed_members_and_histograms_the_scores(tree):
    """BASELINE scores 1 for the 6 correctly labelled members (records 0-5), 0 for the others."""
    result, _ = run(tree)
    assert [(r.index, r.score) for r in result.most_exposed] == [(i, 1.0) for i in range(6)] + [(6, 0.0), (7, 0.0)]
    histogram = result.score_histogram
    assert (histogram.edges[0], histogram.edges[-1]) == (0.0, 1.0)
    assert (histogram.member_counts[0], histogram.member_counts[-1], sum(histogram.member_counts)) == (2, 6, 8)
    assert (histogram.non_member_counts[0], histogram.non_member_counts[-1]) == (5, 3)


def test_a_failed_job_has_no_measurements(tree):
    result, _ = run(tree, baseline_request(tree, target_model="models/../../elsewhere"))
    assert not result.most_exposed and not result.HasField("score_histogram") and not result.roc


def test_the_job_seed_drives_the_balancing(tmp_path):
    tree = write_audit_tree(tmp_path, member_correct=[True, False] * 10, non_member_correct=[True, False] * 2)
    accuracies = {run(tree, baseline_request(tree, seed=seed))[0].metrics.accuracy for seed in range(6)}
    assert len(accuracies) > 1
    again = run(tree, baseline_request(tree, seed=3))[0].metrics
    assert again == run(tree, baseline_request(tree, seed=3))[0].metrics
    assert (again.num_members, again.num_non_members) == (4, 4)


def test_shadow_datasets_are_listed_after_the_targets(tree, monkeypatch):
    def baseline_reading_a_shadow_set(args, rt):
        rt.load_dataset("shadow_datasets.non_members", tree.members)
        return baseline.run(args, rt)

    monkeypatch.setitem(attacks.RUNNERS, "BASELINE", baseline_reading_a_shadow_set)
    result, _ = run(tree)
    assert [(d.role, d.is_member_dataset, d.path) for d in result.datasets] == [
        ("target", True, tree.members), ("target", False, tree.non_members), ("shadow", False, tree.members)]


def test_a_path_leaving_the_root_fails_naming_the_prefixed_field(tree):
    result, _ = run(tree, baseline_request(tree, attack_index=3, target_model="models/../../elsewhere"))
    assert result.status == results_pb2.ATTACK_STATUS_FAILED
    assert (result.error.code, result.error.field) == ("INVALID_ARGUMENT", "attacks[3].args.target_model")
    assert classification(result) == ("INVALID_ARGUMENT", TASK, False)
    assert "leaves the storage root" in result.error.message
    assert not result.HasField("metrics")


def test_a_file_fault_found_while_running_fails_naming_the_prefixed_field(tree):
    (tree.root / tree.model / "model.pdparams").unlink()
    result, _ = run(tree, baseline_request(tree, attack_index=1))
    assert (result.error.code, result.error.field) == ("INVALID_ARGUMENT", "attacks[1].args.target_model")
    assert "holds no .pdparams file" in result.error.message
    assert [t.stage for t in result.timings] == [results_pb2.STAGE_LOAD]


def test_an_attack_without_args_is_invalid(tree):
    request = baseline_request(tree)
    request.attack.ClearField("baseline")
    result, _ = run(tree, request)
    assert (result.error.code, result.error.field, result.attack_name) == ("INVALID_ARGUMENT", "attacks[0]", "")


def test_an_unregistered_attack_is_unimplemented(tree, monkeypatch):
    monkeypatch.delitem(attacks.RUNNERS, "BASELINE")
    result, _ = run(tree)
    assert result.status == results_pb2.ATTACK_STATUS_FAILED
    assert (result.error.code, result.error.field) == ("UNIMPLEMENTED", "attacks[0].name")
    assert classification(result) == ("UNIMPLEMENTED", SERVICE, False)
    assert "BASELINE is not available in this version" in result.error.message


def test_a_fault_of_the_worker_is_internal_with_a_one_line_message(tree, monkeypatch, caplog):
    def broken(args, rt):
        raise RuntimeError("index out of range\nsecond line of detail")

    monkeypatch.setitem(attacks.RUNNERS, "BASELINE", broken)
    result, _ = run(tree)
    assert (result.error.code, result.error.field) == ("INTERNAL", "")
    assert classification(result) == ("INTERNAL", SERVICE, False), "a bug of ours: never retried"
    assert "RuntimeError: index out of range" in result.error.message
    assert "\n" not in result.error.message and "Traceback" not in result.error.message
    assert "Traceback" in caplog.text and "second line of detail" in caplog.text


def test_running_out_of_memory_is_the_tasks_fault_naming_the_limit(tree, monkeypatch):
    def hungry(args, rt):
        raise MemoryError("(ResourceExhausted) Fail to alloc memory of 1600000000 size")

    monkeypatch.setitem(attacks.RUNNERS, "BASELINE", hungry)
    result, _ = run(tree, limits=JobLimits(memory_mb=2048))
    assert classification(result) == ("INVALID_ARGUMENT", TASK, False)
    assert result.error.message == ("the job ran out of memory (MemoryError: (ResourceExhausted) Fail to alloc memory "
                                    "of 1600000000 size); the job exceeded this worker's 2048 MB memory limit "
                                    "(--job-memory-mb 2048): use smaller data or models, or raise the limit")


def test_a_task_error_raised_from_a_memory_error_names_the_limit_and_its_field(tree, monkeypatch):
    """User code whose import ran out of memory: storage reports it as a task error on the field."""
    def importing(args, rt):
        try:
            raise MemoryError()
        except MemoryError as exc:
            raise TaskError.at("target_model", "importing models/net/model.py raised MemoryError") from exc

    monkeypatch.setitem(attacks.RUNNERS, "BASELINE", importing)
    result, _ = run(tree, limits=JobLimits(memory_mb=1024))
    assert classification(result) == ("INVALID_ARGUMENT", TASK, False)
    assert result.error.field == "attacks[0].args.target_model"
    assert result.error.message.startswith("importing models/net/model.py raised MemoryError; the job exceeded this "
                                           "worker's 1024 MB memory limit (--job-memory-mb 1024)")


def test_a_typed_failure_keeps_its_own_classification(tree, monkeypatch):
    def lost_storage(args, rt):
        raise Unavailable("the shared cache volume is not mounted")

    monkeypatch.setitem(attacks.RUNNERS, "BASELINE", lost_storage)
    result, _ = run(tree)
    assert classification(result) == ("UNAVAILABLE", results_pb2.FAULT_INFRASTRUCTURE, True)
    assert result.error.message == "the shared cache volume is not mounted"


def test_a_cancelled_job_raises_instead_of_returning_a_result(tree):
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(JobCancelled):
        run(tree, cancelled=cancelled)


def test_a_typed_spec_with_an_unknown_type_is_invalid(tree):
    request = baseline_request(tree)
    request.attack.type = task_pb2.ATTACK_TYPE_UNSPECIFIED
    result, _ = run(tree, request)
    assert result.error.code == "INVALID_ARGUMENT" and result.attack_name == "BASELINE"
