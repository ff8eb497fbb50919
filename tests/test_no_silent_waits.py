"""No wait is silent: a quiet audit stream carries heartbeats, a client gives up on a silent one,
and a reporter that goes away is waited for (saying so) and the report arrives when it is back."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from service_processes import REPO, ServiceProcesses

from privaudit.client.api import AuditClient, AuditError, AuditOutcome
from privaudit.services.common.server import Service, start_server
from privaudit.services.orchestrator.app import Orchestrator, OrchestratorConfig
from privaudit.services.orchestrator.event_log import EventLog
from privaudit.services.orchestrator.server import SERVICE_NAME as ORCHESTRATOR_SERVICE
from privaudit.services.orchestrator.store import TaskStore
from privaudit.services.orchestrator.worker_pool import WORKER_SERVICE
from privaudit.services.reporter.server import SERVICE_NAME as REPORTER_SERVICE
from privaudit.v1 import (
    attack_worker_pb2,
    attack_worker_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    report_pb2,
    reporter_pb2,
    reporter_pb2_grpc,
    results_pb2,
    task_pb2,
)

TASK = """
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: BASELINE
  args: {test_datasets: [d/in, d/out], target_model: m/target}
"""
EXAMPLE_BASELINE = """
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: BASELINE
  args:
    test_datasets: [./example/datasets/digits_target_members, ./example/datasets/digits_target_non_members]
    target_model: ./example/models/digits_mlp
"""


class Worker(attack_worker_pb2_grpc.AttackWorkerServiceServicer):
    hold: threading.Event | None = None  # when set by a test: the job says nothing until it is set

    def RunAttack(self, request, context):
        if self.hold is not None:
            self.hold.wait(10)
        yield attack_worker_pb2.RunAttackResponse(result=results_pb2.AttackResult(
            attack_index=request.attack_index, attack_name="BASELINE", status=results_pb2.ATTACK_STATUS_SUCCEEDED,
            metrics=results_pb2.Metrics(auc=0.5)))

    def GetCapacity(self, request, context):
        return attack_worker_pb2.GetCapacityResponse(slots=1)


class Reporter(reporter_pb2_grpc.ReporterServiceServicer):
    def BuildReport(self, request, context):
        yield reporter_pb2.BuildReportResponse(summary=report_pb2.ReportSummary(overall_risk=report_pb2.RISK_LEVEL_LOW))
        yield reporter_pb2.BuildReportResponse(chunk=report_pb2.ReportChunk(data=b"the report", last=True))


def serve_reporter(listen: str = "127.0.0.1:0") -> Service:
    return start_server(lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(Reporter(), s),
                        [REPORTER_SERVICE], listen)


@pytest.fixture
def services():
    """A scripted worker and reporter and a real orchestrator; yields (orchestrator, reporter) and
    a way to start the orchestrator with a given report wait."""
    worker = start_server(lambda s: attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(Worker(), s),
                          [WORKER_SERVICE], "127.0.0.1:0")
    reporter = serve_reporter()
    running: list = [worker]

    def orchestrator(report_wait: float) -> tuple[str, str]:
        node = Orchestrator(OrchestratorConfig(reporter=reporter.address, workers=[worker.address],
                                               probe_interval=0.2, report_wait=report_wait))
        running.append(node)
        return node.start("127.0.0.1:0").address, reporter.address

    orchestrator.reporter = reporter
    yield orchestrator
    for service in reversed(running):
        service.stop(0)
    reporter.stop(0)


def run_in_background(address: str, task: str = TASK) -> tuple[threading.Thread, list[orchestrator_pb2.AuditEvent],
                                                                list]:
    events: list[orchestrator_pb2.AuditEvent] = []
    outcome: list[AuditOutcome | Exception] = []

    def run() -> None:
        with AuditClient(address) as client:
            try:
                outcome.append(client.run(task, on_event=events.append))
            except Exception as error:  # handed to the test
                outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, events, outcome


def wait_for(condition, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_quiet_stream_carries_heartbeats_that_use_up_no_sequence_number():
    store = TaskStore(None)
    store.create_task("t1", task_pb2.Task(), report_pb2.REPORT_FORMAT_TEXT)
    log = EventLog(store, "t1")
    log.append(accepted=orchestrator_pb2.AuditAccepted(attack_names=["BASELINE"]))
    followed = log.follow(0, heartbeat_seconds=0.1, poll_seconds=0.02)

    assert next(followed).HasField("accepted")
    started = time.monotonic()
    beat = next(followed)
    assert beat.HasField("heartbeat") and beat.sequence == 1 and 0.08 < time.monotonic() - started < 2
    log.append(done=orchestrator_pb2.AuditDone())
    assert [e.WhichOneof("kind") for e in followed] == ["done"]
    assert [e.WhichOneof("kind") for e in store.events("t1")] == ["accepted", "done"]  # never stored


def test_the_report_arrives_when_the_reporter_comes_back(services):
    address, reporter_address = services(report_wait=60)
    services.reporter.stop(0)  # the reporter dies while the audit runs

    thread, events, outcome = run_in_background(address)
    wait_for(lambda: any(e.HasField("notice") for e in events), what="the notice that the reporter is away")
    notice = next(e.notice.message for e in events if e.HasField("notice"))
    assert f"waiting for the reporter at {reporter_address}" in notice and "retrying for up to 60 s" in notice

    services.reporter = serve_reporter(reporter_address)  # back on the same address
    thread.join(60)
    (result,) = outcome
    assert isinstance(result, AuditOutcome), result
    assert result.rendered == "the report" and not result.done.error
    assert result.summary.overall_risk == report_pb2.RISK_LEVEL_LOW


def test_a_reporter_that_never_comes_back_ends_the_audit_with_a_clear_error_in_time(services):
    address, reporter_address = services(report_wait=6)  # the channel's own retries take about 3.5 s
    services.reporter.stop(0)

    started = time.monotonic()
    thread, events, outcome = run_in_background(address)
    thread.join(30)
    (result,) = outcome
    assert time.monotonic() - started < 25
    assert "the report could not be built: reporter UNAVAILABLE" in result.done.error
    assert f"{reporter_address} still unavailable after" in result.done.error
    assert "(the orchestrator waits up to 6 s)" in result.done.error
    assert [e.WhichOneof("kind") for e in events if e.HasField("notice") or e.HasField("done")] == ["notice", "done"]


class SilentOrchestrator(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Accepts the task, then says nothing more: a hung server (or a link that dropped silently)."""

    def SubmitAudit(self, request, context):
        yield orchestrator_pb2.SubmitAuditResponse(event=orchestrator_pb2.AuditEvent(
            task_id="abc123", accepted=orchestrator_pb2.AuditAccepted(attack_names=["BASELINE"])))
        while context.is_active():
            time.sleep(0.05)


def test_a_silent_stream_ends_with_a_clear_error_not_a_hang():
    server = start_server(lambda s: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
        SilentOrchestrator(), s), [ORCHESTRATOR_SERVICE], "127.0.0.1:0")
    try:
        with AuditClient(server.address, idle_timeout=1.0) as client:
            started = time.monotonic()
            silent = r"no word from the orchestrator at .* for 1 s.*privaudit watch abc123"
            with pytest.raises(AuditError, match=silent):
                client.run(TASK)
            assert time.monotonic() - started < 10
    finally:
        server.stop(0)


def test_heartbeats_keep_a_long_quiet_audit_alive(services, monkeypatch):
    """A job quiet for longer than the client's idle deadline does not end the stream: heartbeats do."""
    monkeypatch.setattr("privaudit.services.orchestrator.event_log.HEARTBEAT_SECONDS", 0.2)
    release = threading.Event()
    monkeypatch.setattr(Worker, "hold", release)
    address, _ = services(report_wait=60)
    events: list[orchestrator_pb2.AuditEvent] = []
    threading.Timer(2.0, release.set).start()
    with AuditClient(address, idle_timeout=1.0) as client:
        outcome = client.run(TASK, on_event=events.append)
    assert outcome.rendered == "the report"
    assert sum(e.HasField("heartbeat") for e in events) >= 3


@pytest.mark.e2e
def test_a_killed_reporter_process_restarted_on_its_address_delivers_the_report(tmp_path):
    """Real processes: the reporter is killed (SIGKILL) as the audit starts and restarted by hand
    a little later; the client, waiting all along, receives the whole report."""
    processes = ServiceProcesses(tmp_path)
    try:
        reporter = processes.start("reporter")
        worker = processes.start("attack_worker", "--storage-root", str(REPO))
        orchestrator = processes.start("orchestrator", "--workers", worker, "--reporter", reporter)
        processes.started[0][1].send_signal(signal.SIGKILL)
        processes.started[0][1].wait(10)

        thread, events, outcome = run_in_background(orchestrator, EXAMPLE_BASELINE)
        wait_for(lambda: any(e.HasField("notice") for e in events), timeout=60, what="the reporter notice")
        processes.start("reporter", "--listen", reporter)
        thread.join(120)
        (result,) = outcome
        assert isinstance(result, AuditOutcome), result
        assert not result.done.error and "Membership Inference Audit Report" in result.rendered
        assert "BASELINE" in result.rendered and result.summary.overall_risk == report_pb2.RISK_LEVEL_HIGH
    finally:
        processes.stop()
