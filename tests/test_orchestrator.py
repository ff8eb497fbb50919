"""The orchestrator over real gRPC, against scripted workers and reporter on loopback.

The scripted peers let each test decide exactly how a worker behaves (answers,
dies mid-stream, refuses) so the retry and event rules can be checked precisely.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from client.api import AuditClient
from privaudit.v1 import (
    attack_worker_pb2,
    attack_worker_pb2_grpc,
    orchestrator_pb2_grpc,
    report_pb2,
    reporter_pb2,
    reporter_pb2_grpc,
    results_pb2,
)
from services.common.errors import TaskError
from services.common.server import Service, start_server
from services.orchestrator.audit import AuditRunner
from services.orchestrator.jobs import JobSettings
from services.orchestrator.server import SERVICE_NAME, OrchestratorServicer
from services.orchestrator.worker_pool import WorkerPool

TASK = """
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: BASELINE
  args: {test_datasets: [d/in, d/out], target_model: m/target}
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: BASELINE
  args: {test_datasets: [d/in2, d/out2], target_model: m/target}
"""

Behaviour = Callable[[attack_worker_pb2.RunAttackRequest, grpc.ServicerContext],
                     Iterator[attack_worker_pb2.RunAttackResponse]]


def succeed(request, context):
    yield attack_worker_pb2.RunAttackResponse(progress=results_pb2.JobProgress(
        attack_index=request.attack_index, stage=results_pb2.STAGE_PREDICT, fraction=0.5))
    yield attack_worker_pb2.RunAttackResponse(result=results_pb2.AttackResult(
        attack_index=request.attack_index, attack_name="BASELINE", status=results_pb2.ATTACK_STATUS_SUCCEEDED,
        metrics=results_pb2.Metrics(auc=0.5 + request.attack_index / 10)))


def die_mid_job(request, context):
    yield attack_worker_pb2.RunAttackResponse(progress=results_pb2.JobProgress(attack_index=request.attack_index))
    context.abort(grpc.StatusCode.UNAVAILABLE, "worker going away")


def refuse(request, context):
    context.abort(grpc.StatusCode.UNIMPLEMENTED, "this worker is too old")
    yield  # pragma: no cover


@dataclass
class ScriptedWorker(attack_worker_pb2_grpc.AttackWorkerServiceServicer):
    behaviour: Behaviour
    calls: list[int] = field(default_factory=list)

    def RunAttack(self, request, context):
        self.calls.append(request.attack_index)
        yield from self.behaviour(request, context)


class ScriptedReporter(reporter_pb2_grpc.ReporterServiceServicer):
    def BuildReport(self, request, context):
        yield reporter_pb2.BuildReportResponse(summary=report_pb2.ReportSummary(overall_risk=report_pb2.RISK_LEVEL_LOW))
        text = "".join(f"{r.attack_index}:{results_pb2.AttackStatus.Name(r.status)}\n" for r in request.results)
        yield reporter_pb2.BuildReportResponse(chunk=report_pb2.ReportChunk(data=text.encode(), last=True))


def serve(add: Callable[[grpc.Server], None]) -> Service:
    return start_server(add, [], "127.0.0.1:0", max_workers=8)


@pytest.fixture
def cluster():
    """Builds an orchestrator over the given worker behaviours; yields a client factory."""
    services: list[Service] = []

    def build(*behaviours: Behaviour, max_attempts: int = 3) -> tuple[AuditClient, list[ScriptedWorker]]:
        workers = [ScriptedWorker(b) for b in behaviours]
        for worker in workers:
            services.append(serve(
                lambda s, w=worker: attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(w, s)))
        reporter = serve(lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(ScriptedReporter(), s))
        services.append(reporter)
        pool = WorkerPool.from_addresses([s.address for s in services[-len(workers) - 1:-1]])
        runner = AuditRunner(pool, reporter_pb2_grpc.ReporterServiceStub(grpc.insecure_channel(reporter.address)),
                             JobSettings(max_attempts=max_attempts, attempt_timeout=10))
        servicer = OrchestratorServicer(runner)
        orchestrator = start_server(
            lambda s: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, s),
            [SERVICE_NAME], "127.0.0.1:0")
        services.append(orchestrator)
        return AuditClient(orchestrator.address), workers

    yield build
    for service in services:
        service.stop(0)


def test_stream_order_and_report(cluster):
    client, _ = cluster(succeed, succeed)
    kinds = []
    outcome = client.run(TASK, on_event=lambda e: kinds.append(e.WhichOneof("kind")))
    assert kinds[0] == "accepted" and kinds[-1] == "done"
    assert kinds.index("report_summary") > max(i for i, k in enumerate(kinds) if k == "attack_result")
    assert [r.attack_index for r in outcome.results] == [0, 1]
    assert [round(r.metrics.auc, 2) for r in outcome.results] == [0.5, 0.6]
    assert outcome.report == "0:ATTACK_STATUS_SUCCEEDED\n1:ATTACK_STATUS_SUCCEEDED\n"
    assert (outcome.done.succeeded_attacks, outcome.done.failed_attacks) == (2, 0)


def test_sequence_numbers_are_dense(cluster):
    client, _ = cluster(succeed)
    events = list(client.submit(TASK))
    assert [e.sequence for e in events] == list(range(len(events)))
    assert len({e.task_id for e in events}) == 1


def test_job_whose_worker_dies_is_retried_on_another_worker(cluster):
    client, (dying, healthy) = cluster(die_mid_job, succeed)
    outcome = client.run(TASK)
    assert all(r.status == results_pb2.ATTACK_STATUS_SUCCEEDED for r in outcome.results)
    assert dying.calls, "the dying worker should have been tried"
    assert sorted(healthy.calls) == [0, 1]


def test_job_gives_up_after_max_attempts(cluster):
    client, (worker,) = cluster(die_mid_job, max_attempts=2)
    outcome = client.run(TASK)
    assert len(worker.calls) == 4  # two attacks, two attempts each
    assert all(r.status == results_pb2.ATTACK_STATUS_FAILED for r in outcome.results)
    assert "gave up after 2 attempts" in outcome.results[0].error.message
    assert outcome.done.failed_attacks == 2


def test_non_retryable_error_fails_the_attack_once(cluster):
    client, (worker,) = cluster(refuse)
    outcome = client.run(TASK)
    assert len(worker.calls) == 2
    assert outcome.results[0].error.code == "UNIMPLEMENTED"


def test_invalid_task_is_refused_with_fields(cluster):
    client, (worker,) = cluster(succeed)
    with pytest.raises(TaskError) as caught:
        client.run(TASK.replace("m/target", "../escape", 1))
    assert caught.value.field == "attacks[0].args.target_model"
    assert not worker.calls


def test_many_concurrent_audits(cluster):
    client, _ = cluster(succeed, succeed)
    outcomes = [None] * 6

    def one(i):
        outcomes[i] = client.run(TASK)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len({o.task_id for o in outcomes}) == 6
    assert all(o.done.succeeded_attacks == 2 for o in outcomes)
