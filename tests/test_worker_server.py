"""The AttackWorkerService over a real gRPC channel, served in-process on loopback."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import paddle
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score
from test_shadow_jobs import ShadowTree, lira_args, measurements, write_population
from test_shadow_jobs import request as lira_request
from worker_fixtures import (
    MODEL_CODE,
    AuditTree,
    baseline_request,
    identity_weights,
    served_worker,
    write_audit_tree,
    write_model,
)

from privaudit.services.attack_worker import server as worker_server
from privaudit.services.attack_worker.device import UnusableDevice, job_device
from privaudit.services.attack_worker.server import SERVICE_NAME
from privaudit.services.attack_worker.settings import JobLimits, WorkerSettings
from privaudit.services.common.channels import open_channel
from privaudit.services.common.errors import from_rpc_error
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc, results_pb2

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path) -> AuditTree:
    return write_audit_tree(tmp_path / "root")


@pytest.fixture
def worker(tree):
    with served_worker(tree.root) as stub_and_channel:
        yield stub_and_channel


def run(stub, request) -> tuple[list[results_pb2.JobProgress], results_pb2.AttackResult]:
    responses = list(stub.RunAttack(request, timeout=60))
    assert [r.WhichOneof("event") for r in responses][-1] == "result"
    assert all(r.WhichOneof("event") == "progress" for r in responses[:-1]), "exactly one result, last"
    return [r.progress for r in responses[:-1]], responses[-1].result


def test_baseline_through_grpc_matches_sklearn(worker, tree):
    stub, _ = worker
    progress, result = run(stub, baseline_request(tree))
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    assert [p.stage for p in progress if p.fraction == 0.0] == [
        results_pb2.STAGE_LOAD, results_pb2.STAGE_PREDICT, results_pb2.STAGE_SCORE]
    assert result.target_model.train_acc == tree.member_correct.mean() == 0.75
    assert result.target_model.test_acc == tree.non_member_correct.mean() == 0.375
    truth = np.r_[np.ones(8), np.zeros(8)]
    scores = np.r_[tree.member_correct, tree.non_member_correct].astype(float)
    called = scores >= 0.5
    assert result.metrics.accuracy == pytest.approx(accuracy_score(truth, called))
    assert result.metrics.precision == pytest.approx(precision_score(truth, called))
    assert result.metrics.recall == pytest.approx(recall_score(truth, called))
    assert result.metrics.auc == pytest.approx(roc_auc_score(truth, scores))


def test_a_path_escaping_the_root_fails_the_attack_not_the_rpc(worker, tree):
    stub, _ = worker
    write_model(tree.root.parent / "outside", identity_weights())
    (tree.root / "models" / "escape").symlink_to(tree.root.parent / "outside")
    _, result = run(stub, baseline_request(tree, target_model="models/escape"))
    assert result.status == results_pb2.ATTACK_STATUS_FAILED
    assert (result.error.code, result.error.field) == ("INVALID_ARGUMENT", "attacks[0].args.target_model")
    assert "outside the storage root" in result.error.message


def test_a_task_id_that_is_no_audit_id_is_refused_before_it_reaches_a_log_line(worker, tree, caplog):
    """Found by fuzzing: a 64 MB task_id ran as a job, and each of its log lines held all of it."""
    caplog.set_level(logging.INFO)
    stub, _ = worker
    for task_id in ("x" * 100_000, "task 1", "task\n1", "\u202etask"):
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.RunAttack(baseline_request(tree, task_id=task_id), timeout=30))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith("task_id: ") and len(refused.value.details()) < 200
    assert max((len(message) for message in caplog.messages), default=0) < 300
    _, result = run(stub, baseline_request(tree, task_id="0123456789ab"))
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error


def test_the_service_reports_serving(worker):
    _, channel = worker
    health = health_pb2_grpc.HealthStub(channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_jobs_queue_one_at_a_time_and_a_cancelled_rpc_stops_its_job(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="privaudit.services.attack_worker.server")
    slow = write_audit_tree(tmp_path / "slow", delay=0.05)  # 16 records: about a second per job
    with served_worker(slow.root) as (stub, _):
        first = stub.RunAttack(baseline_request(slow, task_id="first"), timeout=60)
        assert next(first).progress.stage == results_pb2.STAGE_LOAD
        second = stub.RunAttack(baseline_request(slow, task_id="second"), timeout=60)
        queued = next(second).progress
        assert queued.stage == results_pb2.STAGE_QUEUED and "waiting" in queued.message

        first.cancel()
        with pytest.raises(grpc.RpcError) as ended:
            list(first)
        assert ended.value.code() == grpc.StatusCode.CANCELLED
        assert list(second)[-1].result.status == results_pb2.ATTACK_STATUS_SUCCEEDED

    deadline = time.monotonic() + 10
    while "task first attack 0 BASELINE CANCELLED" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "task first attack 0 BASELINE CANCELLED" in caplog.text
    assert "task second attack 0 BASELINE SUCCEEDED" in caplog.text


def test_capacity_advertises_the_job_limits(tree):
    with served_worker(tree.root, limits=JobLimits(memory_mb=3000, timeout_s=42.5)) as (stub, _):
        capacity = stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=10)
    assert (capacity.slots, capacity.job_timeout_s, capacity.job_memory_mb) == (1, 42.5, 3000)


def test_capacity_reports_the_device_jobs_run_on(tree):
    with served_worker(tree.root, device="cpu") as (stub, _):
        capacity = stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=10)
    assert (capacity.device, capacity.gpu) == ("cpu", False)
    with served_worker(tree.root) as (stub, _):  # Paddle's choice
        capacity = stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=10)
    assert capacity.device == paddle.device.get_device()
    assert capacity.gpu == capacity.device.startswith("gpu")


SERVES_WITHOUT_PADDLE = """
import sys
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc
from privaudit.services.attack_worker import launcher, server
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.channels import open_channel

imported = "paddle" in sys.modules
service = server.serve(WorkerSettings(sys.argv[1]), "127.0.0.1:0")
with open_channel(service.address) as channel:
    capacity = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).GetCapacity(
        attack_worker_pb2.GetCapacityRequest(), timeout=10)
print(imported, "paddle" in sys.modules, capacity.device, launcher.current_pid() is not None)
service.stop(grace=0)
"""


def test_the_serving_process_never_imports_paddle_and_learns_the_device_from_its_launcher(tmp_path):
    """Issue 17: a worker's server imported Paddle (seconds, and its memory) only to name the
    device; the launcher, which imports it anyway, answers instead."""
    completed = subprocess.run([sys.executable, "-c", SERVES_WITHOUT_PADDLE, str(tmp_path)], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    imported_at_import, imported_when_serving, device, launcher_runs = completed.stdout.split()
    assert (imported_at_import, imported_when_serving, launcher_runs) == ("False", "False", "True")
    assert device == paddle.device.get_device()


def test_a_gpu_device_is_checked_against_what_paddle_can_use():
    if not paddle.device.is_compiled_with_cuda():
        with pytest.raises(UnusableDevice, match="built without CUDA"):
            job_device("gpu")
    else:
        count = paddle.device.cuda.device_count()
        with pytest.raises(UnusableDevice, match=f"Paddle sees {count} GPU"):
            job_device(f"gpu:{count}")
    assert job_device("cpu") == "cpu"


def test_a_job_that_breaks_without_a_result_is_our_fault_and_not_worth_retrying(worker, tree, monkeypatch, caplog):
    """The RPC ends INTERNAL with the service's fault in its detail, so no orchestrator retries it
    on every worker; the log has the details, the caller only where to look."""
    def broken(request, settings, emit, cancelled):
        raise RuntimeError("pipe closed: secret detail")

    monkeypatch.setattr(worker_server, "run_in_child", broken)
    stub, _ = worker
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.RunAttack(baseline_request(tree), timeout=60))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details() and "see its log" in caught.value.details()
    failure = from_rpc_error(caught.value)
    assert (failure.fault, failure.retryable) == (results_pb2.FAULT_SERVICE, False)
    assert "pipe closed: secret detail" in caplog.text


def test_two_slots_run_two_jobs_at_once_with_the_results_of_one_at_a_time(tmp_path, caplog):
    """Jobs that train (seeded initial weights and data order) give the same numbers whether they
    run side by side in two slots or one after the other; the worker advertises its slots."""
    caplog.set_level(logging.INFO, logger="privaudit.services.attack_worker.server")
    audit = write_audit_tree(tmp_path / "root", member_correct=[True] * 10 + [False] * 2,
                             non_member_correct=[True] * 5 + [False] * 7)
    shadow_tree = ShadowTree(audit, (write_population(audit.root, "pop", 16, 1),))
    jobs = [lira_request(lira_args(shadow_tree), seed=seed) for seed in (3, 4)]
    for job, task_id in zip(jobs, ("first", "second"), strict=True):
        job.task_id = task_id

    with served_worker(audit.root) as (stub, _):
        alone = [run(stub, job)[1] for job in jobs]
    caplog.clear()
    with served_worker(audit.root, slots=2) as (stub, _):
        assert stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=10).slots == 2
        calls = [stub.RunAttack(job, timeout=120) for job in jobs]
        answers = [list(call) for call in calls]
    together = [responses[-1].result for responses in answers]

    assert [r.status for r in together] == [results_pb2.ATTACK_STATUS_SUCCEEDED] * 2, together
    assert [measurements(r) for r in together] == [measurements(r) for r in alone]
    assert measurements(together[0]) != measurements(together[1])  # the seeds matter: the check can fail
    stages = [r.progress.stage for responses in answers for r in responses if r.HasField("progress")]
    assert results_pb2.STAGE_QUEUED not in stages
    starts_and_ends = [line for line in caplog.messages if line.startswith(("job start", "job end"))]
    assert [line.split(":")[0] for line in starts_and_ends][:2] == ["job start"] * 2, starts_and_ends


def test_a_drain_sends_queued_jobs_back_at_once_and_lets_the_running_one_finish(tree):
    write_model(tree.root / "models" / "slow", identity_weights(), code=f"{MODEL_CODE}\nimport time\ntime.sleep(3)\n")
    service, servicer = worker_server.start(WorkerSettings(str(tree.root)), "127.0.0.1:0")
    try:
        with open_channel(service.address) as channel:
            stub = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel)
            running = stub.RunAttack(baseline_request(tree, target_model="models/slow", task_id="running"),
                                     timeout=60)
            assert next(running).progress.stage == results_pb2.STAGE_LOAD
            queued = stub.RunAttack(baseline_request(tree, task_id="queued"), timeout=60)
            assert next(queued).progress.stage == results_pb2.STAGE_QUEUED
            draining = threading.Thread(target=servicer.drain, args=(30.0,))
            started = time.monotonic()
            draining.start()
            with pytest.raises(grpc.RpcError) as sent_back:
                list(queued)
            assert time.monotonic() - started < 2.0, "the queued job waited for the running one"
            assert sent_back.value.code() == grpc.StatusCode.UNAVAILABLE
            assert from_rpc_error(sent_back.value).retryable and "stopping" in sent_back.value.details()
            assert list(running)[-1].result.status == results_pb2.ATTACK_STATUS_SUCCEEDED
            draining.join(30)
            assert not draining.is_alive()
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                                                timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        service.stop(grace=0)
