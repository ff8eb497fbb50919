"""The orchestrator over real gRPC, against scripted workers and reporter on loopback.

The scripted peers let each test decide exactly how a worker behaves (answers,
dies mid-stream, refuses) so the retry and event rules can be checked precisely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2
from test_store import SCHEMA_0_STATUS, schema_0_folder, sketch
from test_tls import INTERNAL_NAME, PKI

from privaudit.client.api import AuditClient, AuditError
from privaudit.services.common import task_spec
from privaudit.services.common.channels import ChannelSecurity
from privaudit.services.common.entry_transfer import CHUNK_BYTES
from privaudit.services.common.errors import Failure, Overloaded, ServiceBug, TaskError, Unimplemented
from privaudit.services.common.server import ServerOptions, Service, start_server
from privaudit.services.common.tls import ClientTLS, ServerTLS
from privaudit.services.orchestrator import worker_pool
from privaudit.services.orchestrator.app import Orchestrator, OrchestratorConfig
from privaudit.services.orchestrator.scheduler import JobSettings
from privaudit.services.orchestrator.worker_pool import WORKER_SERVICE
from privaudit.v1 import (
    attack_worker_pb2,
    attack_worker_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    report_pb2,
    reporter_pb2,
    reporter_pb2_grpc,
    results_pb2,
)

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
    job_timeout_s: float = 0.0  # the job limit it advertises (0: none, as older workers)
    slots: int = 1

    def RunAttack(self, request, context):
        self.calls.append(request.attack_index)
        yield from self.behaviour(request, context)

    def GetCapacity(self, request, context):
        return attack_worker_pb2.GetCapacityResponse(slots=self.slots, job_timeout_s=self.job_timeout_s)


class ScriptedReporter(reporter_pb2_grpc.ReporterServiceServicer):
    def BuildReport(self, request, context):
        yield reporter_pb2.BuildReportResponse(summary=report_pb2.ReportSummary(overall_risk=report_pb2.RISK_LEVEL_LOW))
        text = "".join(f"{r.attack_index}:{results_pb2.AttackStatus.Name(r.status)}\n" for r in request.results)
        yield reporter_pb2.BuildReportResponse(chunk=report_pb2.ReportChunk(data=text.encode(), last=True))


def serve(add: Callable[[grpc.Server], None], names: list[str] = ()) -> Service:
    return start_server(add, names, "127.0.0.1:0", max_workers=8)


class Link:
    """A TCP relay to `target`, as the network between the orchestrator and a worker: once
    `cut`, it carries nothing more either way, without closing anything, as a link that fails
    silently does (calls through it hang; nothing answers)."""

    def __init__(self, target: str):
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:  # closed
                return
            far = socket.create_connection(self.target)
            self.sockets += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.cut.is_set():
                    sink.sendall(data)
        except OSError:
            pass


@dataclass
class Cluster:
    """Scripted workers and reporter, and a real orchestrator over them."""

    workers: list[ScriptedWorker]
    peers: list[Service]
    reporter: str
    links: list[Link] = field(default_factory=list)  # when given, the orchestrator reaches each worker through one
    orchestrator: Orchestrator | None = None
    address: str = ""

    def start_orchestrator(self, state_dir=None, **settings) -> AuditClient:
        jobs = JobSettings(**{"assumed_job_limit": 10, **settings})
        dialled = self.links or self.peers[:len(self.workers)]
        self.orchestrator = Orchestrator(OrchestratorConfig(
            reporter=self.reporter, workers=[d.address for d in dialled],
            state_dir=state_dir, jobs=jobs, probe_interval=0.2))
        self.address = self.orchestrator.start("127.0.0.1:0").address
        return AuditClient(self.address)

    def stub(self) -> orchestrator_pb2_grpc.OrchestratorServiceStub:
        return orchestrator_pb2_grpc.OrchestratorServiceStub(grpc.insecure_channel(self.address))


@pytest.fixture
def cluster():
    """Builds scripted workers with the given behaviours and an orchestrator over them."""
    built: list[Cluster] = []

    def build(*behaviours: Behaviour, job_timeout_s: float = 0.0, reporter_servicer=None, linked: bool = False,
              slots: int = 1, **settings) -> tuple[AuditClient, list[ScriptedWorker]]:
        workers = [b if isinstance(b, ScriptedWorker) else ScriptedWorker(b, job_timeout_s=job_timeout_s, slots=slots)
                   for b in behaviours]
        peers = [serve(lambda s, w=w: attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(w, s),
                       [WORKER_SERVICE]) for w in workers]
        reporter = serve(lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(
            reporter_servicer or ScriptedReporter(), s))
        links = [Link(peer.address) for peer in peers] if linked else []
        built.append(Cluster(workers, [*peers, reporter], reporter.address, links))
        return built[-1].start_orchestrator(**settings), workers

    build.clusters = built
    yield build
    for c in built:
        if c.orchestrator:
            c.orchestrator.stop(0)
        for peer in c.peers:
            peer.stop(0)
        for link in c.links:
            link.close()


def test_stream_order_and_report(cluster):
    client, _ = cluster(succeed, succeed)
    kinds = []
    outcome = client.run(TASK, on_event=lambda e: kinds.append(e.WhichOneof("kind")))
    assert kinds[0] == "accepted" and kinds[-1] == "done"
    assert kinds.index("report_summary") > max(i for i, k in enumerate(kinds) if k == "attack_result")
    assert [r.attack_index for r in outcome.results] == [0, 1]
    assert [round(r.metrics.auc, 2) for r in outcome.results] == [0.5, 0.6]
    assert outcome.rendered == "0:ATTACK_STATUS_SUCCEEDED\n1:ATTACK_STATUS_SUCCEEDED\n"
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


def fail_with(failure: Failure) -> Behaviour:
    """A worker that answers every job with a FAILED result carrying `failure`."""
    def behaviour(request, context):
        yield attack_worker_pb2.RunAttackResponse(result=results_pb2.AttackResult(
            attack_index=request.attack_index, attack_name="BASELINE", status=results_pb2.ATTACK_STATUS_FAILED,
            error=failure.attack_error()))
    return behaviour


def raise_(failure: Exception) -> Behaviour:
    """A worker whose RunAttack raises `failure` (its status made by the server's interceptor)."""
    def behaviour(request, context):
        raise failure
        yield  # pragma: no cover
    return behaviour


def progress_messages(events) -> list[str]:
    return [e.progress.message for e in events if e.HasField("progress") and e.progress.message]


ONE = TASK.split("- type")[1].join(["- type", ""])  # the task's first attack alone


@pytest.mark.parametrize("failure", [
    TaskError.at("attacks[0].args.target_model", "holds no .pdparams file"),
    # A deterministic bug of the worker: retrying it on every worker would only fail again.
    ServiceBug("the attack worker failed (IndexError: 3); its log has the details"),
    Unimplemented("LIRA is not available in this version", "attacks[0].name"),
], ids=lambda f: type(f).__name__)
def test_a_result_that_is_not_worth_retrying_is_final_after_one_attempt_anywhere(cluster, failure):
    client, workers = cluster(fail_with(failure), fail_with(failure))
    events = list(client.submit(ONE))
    (result,) = [e.attack_result for e in events if e.HasField("attack_result")]
    assert sum(len(w.calls) for w in workers) == 1
    assert result.error == failure.attack_error(), "the worker's error arrives as it is"
    assert not progress_messages(events)


@pytest.mark.parametrize("error", [
    results_pb2.AttackError(code="INTERNAL", message="an older worker's bug"),
    results_pb2.AttackError(code="INVALID_ARGUMENT", field="attacks[0]", message="an older worker's task fault"),
], ids=["internal", "invalid"])
def test_an_older_workers_failed_result_is_classified_by_its_code_and_final(cluster, error):
    def old_worker(request, context):
        yield attack_worker_pb2.RunAttackResponse(result=results_pb2.AttackResult(
            attack_index=request.attack_index, status=results_pb2.ATTACK_STATUS_FAILED, error=error))

    client, workers = cluster(old_worker, old_worker)
    outcome = client.run(ONE)
    assert sum(len(w.calls) for w in workers) == 1
    assert outcome.results[0].error == error


def test_a_retryable_result_runs_again_on_a_worker_it_has_not_run_on(cluster):
    oom = Overloaded("the kernel's out-of-memory killer ended the job's process")
    order: list[int] = []  # which worker answered each attempt

    def worker_number(number: int) -> Behaviour:
        def behaviour(request, context):
            order.append(number)
            yield from (fail_with(oom) if len(order) == 1 else succeed)(request, context)
        return behaviour

    client, _ = cluster(worker_number(0), worker_number(1))
    events = list(client.submit(ONE))
    (result,) = [e.attack_result for e in events if e.HasField("attack_result")]
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED
    assert sorted(order) == [0, 1], "the second attempt ran on the other worker"
    killed_on, moved_to = (cluster.clusters[0].peers[number].address for number in order)
    assert progress_messages(events) == [
        f"retrying: attempt 1 of 3 failed on worker {killed_on} (an infrastructure fault, worth retrying): "
        "the kernel's out-of-memory killer ended the job's process",
        f"retrying: attempt 2 of 3 on worker {moved_to}, a worker it has not run on"]


def test_a_retry_on_the_only_worker_says_it_is_the_same_one_and_gives_up_saying_so(cluster):
    oom = Overloaded("the kernel's out-of-memory killer ended the job's process")
    client, (worker,) = cluster(fail_with(oom))
    events = list(client.submit(ONE))
    (result,) = [e.attack_result for e in events if e.HasField("attack_result")]
    messages = progress_messages(events)
    assert worker.calls == [0, 0, 0]
    assert not any("another worker" in m or "has not run on" in m for m in messages)
    assert sum("the worker of an earlier attempt: no other was free" in m for m in messages) == 2
    address = cluster.clusters[0].peers[0].address
    assert result.error.message == (f"gave up after 3 attempts (on {address}); last: the kernel's out-of-memory "
                                    "killer ended the job's process")
    assert (result.error.code, result.error.fault, result.error.retryable) == \
        ("RESOURCE_EXHAUSTED", results_pb2.FAULT_INFRASTRUCTURE, True)


def test_a_worker_bug_raised_through_the_rpc_is_not_retried_but_a_broken_stream_is(cluster):
    bug = raise_(ServiceBug("the attack worker broke; see its log"))
    client, workers = cluster(bug, bug)
    outcome = client.run(ONE)
    assert sum(len(w.calls) for w in workers) == 1
    assert (outcome.results[0].error.code, outcome.results[0].error.fault) == ("INTERNAL", results_pb2.FAULT_SERVICE)

    broken: list[int] = []

    def first_stream_broken(request, context):  # INTERNAL from gRPC itself: no privaudit detail
        if not broken:
            broken.append(1)
            context.abort(grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2")
        yield from succeed(request, context)

    client, workers = cluster(first_stream_broken, first_stream_broken)
    outcome = client.run(ONE)
    assert sorted(len(w.calls) for w in workers) == [1, 1]
    assert outcome.results[0].status == results_pb2.ATTACK_STATUS_SUCCEEDED


def finishes_at_its_limit(limit: float, overrun: float = 0.3) -> Behaviour:
    """A worker as the real one behaves with --job-timeout-s `limit` on a job that runs forever:
    silent, then, a little after the limit (the kill, the reaping), a failed result that is the
    task's fault and names the flag."""
    def behaviour(request, context):
        yield attack_worker_pb2.RunAttackResponse(progress=results_pb2.JobProgress(
            attack_index=request.attack_index, stage=results_pb2.STAGE_TRAIN_SHADOW))
        time.sleep(limit + overrun)
        failure = TaskError.at("", f"the job ran past this worker's {limit:g} s time limit "
                                   f"(--job-timeout-s {limit:g}) while in the train_shadow stage")
        yield from fail_with(failure)(request, context)
    return behaviour


def test_a_job_past_its_workers_limit_fails_once_with_the_workers_message(cluster):
    """Defect 13: the orchestrator's deadline is the limit the worker advertises plus a margin, so
    the worker's own time-limit failure arrives, once, instead of three deadline retries."""
    client, workers = cluster(finishes_at_its_limit(1.0), finishes_at_its_limit(1.0), job_timeout_s=1.0,
                              deadline_margin=1.5, deadline_margin_fraction=0.0)
    events = list(client.submit(ONE))
    (result,) = [e.attack_result for e in events if e.HasField("attack_result")]
    assert sum(len(w.calls) for w in workers) == 1
    assert (result.error.code, result.error.fault, result.error.retryable) == \
        ("INVALID_ARGUMENT", results_pb2.FAULT_TASK, False)
    assert "(--job-timeout-s 1)" in result.error.message
    assert not progress_messages(events)


def test_without_the_margin_the_deadline_would_fire_first_and_retry(cluster):
    """The same worker and job with the deadline equal to the worker's limit: the orchestrator
    gives up first, as before the fix, and the deadline is an infrastructure fault."""
    client, (worker,) = cluster(finishes_at_its_limit(0.5), job_timeout_s=0.5, max_attempts=2,
                                deadline_margin=0.0, deadline_margin_fraction=0.0)
    outcome = client.run(ONE)
    assert worker.calls == [0, 0]
    assert "gave up after 2 attempts" in outcome.results[0].error.message
    assert "gave no answer within 0 s, its job time limit of 0.5 s and a margin" in outcome.results[0].error.message
    assert outcome.results[0].error.fault == results_pb2.FAULT_INFRASTRUCTURE


def test_a_worker_silent_past_its_limit_and_the_margin_is_given_up_and_the_job_moves(cluster):
    hung = Gate()
    answered: list[int] = []

    def first_attempt_hangs(request, context):
        answered.append(1)
        yield from (hung if len(answered) == 1 else succeed)(request, context)

    client, workers = cluster(first_attempt_hangs, first_attempt_hangs, job_timeout_s=0.2, deadline_margin=0.5,
                              deadline_margin_fraction=0.0)
    events = list(client.submit(ONE))
    hung.release.set()
    assert events[-1].done.succeeded_attacks == 1
    assert sorted(len(w.calls) for w in workers) == [1, 1]
    (failed_attempt, moved) = progress_messages(events)
    assert "gave no answer within 1 s, its job time limit of 0.2 s and a margin: the worker or its link is stuck" \
        in failed_attempt and "an infrastructure fault, worth retrying" in failed_attempt
    assert moved.endswith("a worker it has not run on")


class FailingReporter(ScriptedReporter):
    """Fails its first `failures` BuildReport calls with `fail(context)`, then reports."""

    def __init__(self, fail: Callable[[grpc.ServicerContext], None], failures: int = 1):
        self.fail, self.failures, self.calls = fail, failures, 0

    def BuildReport(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            self.fail(context)
        yield from super().BuildReport(request, context)


def test_a_reporter_stream_broken_by_the_network_is_retried_and_the_report_arrives(cluster):
    """INTERNAL without privaudit's detail is gRPC's (a reset stream), so worth another try."""
    reporter = FailingReporter(lambda context: context.abort(grpc.StatusCode.INTERNAL, "Received RST_STREAM"))
    client, _ = cluster(succeed, reporter_servicer=reporter)
    events = []
    outcome = client.run(ONE, on_event=events.append)
    assert reporter.calls == 2 and outcome.rendered == "0:ATTACK_STATUS_SUCCEEDED\n" and not outcome.done.error
    (notice,) = [e.notice.message for e in events if e.HasField("notice")]
    assert "waiting for the reporter" in notice and "Received RST_STREAM" in notice


def test_a_reporter_that_refuses_or_breaks_ends_the_audit_at_once(cluster):
    def bug(context):
        raise ServiceBug("the reporter broke; see its log")

    reporter = FailingReporter(bug, failures=5)
    client, _ = cluster(succeed, reporter_servicer=reporter)
    events = []
    outcome = client.run(ONE, on_event=events.append)
    assert reporter.calls == 1 and not any(e.HasField("notice") for e in events)
    assert outcome.done.error == ("the report could not be built: reporter INTERNAL: the reporter broke; "
                                  "see its log")
    status = cluster.clusters[0].stub().GetAudit(orchestrator_pb2.GetAuditRequest(task_id=outcome.task_id)).audit
    assert (status.state, status.error) == (orchestrator_pb2.AUDIT_STATE_FAILED, outcome.done.error)


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


class Gate:
    """A worker behaviour that holds each job until released or cancelled."""

    def __init__(self):
        self.release = threading.Event()
        self.cancelled: list[int] = []
        self.started = threading.Semaphore(0)

    def __call__(self, request, context):
        self.started.release()
        yield attack_worker_pb2.RunAttackResponse(progress=results_pb2.JobProgress(
            attack_index=request.attack_index, stage=results_pb2.STAGE_TRAIN_SHADOW))
        while not self.release.wait(0.02):
            if not context.is_active():
                self.cancelled.append(request.attack_index)
                return
        yield from succeed(request, context)


def submit_in_background(client: AuditClient, task: str) -> tuple[threading.Thread, list]:
    """Follows an audit in a thread; the list gets its events, then the AuditError that ended
    the stream, if one did."""
    events: list = []

    def consume():
        try:
            events.extend(client.submit(task))
        except AuditError as error:
            events.append(error)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    return thread, events


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_full_queue_refuses_with_resource_exhausted(cluster):
    gate = Gate()
    client, _ = cluster(gate, queue_limit=2)
    first, _ = submit_in_background(client, TASK)  # one job runs, one waits
    assert gate.started.acquire(timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        list(cluster.clusters[0].stub().SubmitAudit(orchestrator_pb2.SubmitAuditRequest(task_yaml=TASK)))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "holds 1 of 2 jobs and this task adds 2" in caught.value.details()
    gate.release.set()
    first.join(10)


def test_tasks_are_served_in_turn(cluster):
    client, (worker,) = cluster(succeed)
    big = TASK * 4  # 8 attacks
    order = []
    original = worker.behaviour

    def recording(request, context):
        order.append(request.task_id)
        time.sleep(0.05)
        yield from original(request, context)

    worker.behaviour = recording
    big_thread, _ = submit_in_background(client, big)
    wait_until(lambda: len(order) >= 1)
    small_thread, small_events = submit_in_background(client, TASK)
    small_thread.join(20)
    big_thread.join(20)
    small_id = small_events[0].task_id
    first_small = order.index(small_id)
    assert first_small <= 2, f"the small task waited behind the big one: {order}"


def test_cancel_stops_running_jobs_on_the_worker(cluster):
    gate = Gate()
    client, _ = cluster(gate, Gate())
    thread, events = submit_in_background(client, TASK)
    assert gate.started.acquire(timeout=10)
    wait_until(lambda: events)
    stub = cluster.clusters[0].stub()
    status = stub.CancelAudit(orchestrator_pb2.CancelAuditRequest(task_id=events[0].task_id)).audit
    assert status.state == orchestrator_pb2.AUDIT_STATE_CANCELLED
    thread.join(10)
    assert events[-1].done.cancelled
    wait_until(lambda: gate.cancelled)


def test_watch_get_and_list(cluster):
    client, _ = cluster(succeed)
    outcome = client.run(TASK)
    stub = cluster.clusters[0].stub()
    replay = [r.event for r in stub.WatchAudit(orchestrator_pb2.WatchAuditRequest(task_id=outcome.task_id))]
    assert replay[0].HasField("accepted") and replay[-1].HasField("done")
    tail = [r.event for r in stub.WatchAudit(orchestrator_pb2.WatchAuditRequest(
        task_id=outcome.task_id, from_sequence=len(replay) - 1))]
    assert tail == replay[-1:]
    status = stub.GetAudit(orchestrator_pb2.GetAuditRequest(task_id=outcome.task_id)).audit
    assert status.state == orchestrator_pb2.AUDIT_STATE_SUCCEEDED
    assert len(status.results) == 2 and status.event_count == len(replay)
    listed = stub.ListAudits(orchestrator_pb2.ListAuditsRequest()).audits
    assert [a.task_id for a in listed] == [outcome.task_id] and not listed[0].results
    for call in (lambda: stub.GetAudit(orchestrator_pb2.GetAuditRequest(task_id="nope")),
                 lambda: list(stub.WatchAudit(orchestrator_pb2.WatchAuditRequest(task_id="nope")))):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_restart_requeues_unfinished_attacks_and_keeps_finished_ones(cluster, tmp_path):
    gate = Gate()

    def first_succeeds_second_waits(request, context):
        behaviour = succeed if request.attack_index == 0 else gate
        yield from behaviour(request, context)

    client, (worker,) = cluster(first_succeeds_second_waits, state_dir=tmp_path)
    thread, events = submit_in_background(client, TASK)
    assert gate.started.acquire(timeout=10)
    wait_until(lambda: any(e.HasField("attack_result") for e in events))
    task_id = events[0].task_id
    built = cluster.clusters[0]
    built.orchestrator.stop(0)
    thread.join(10)
    assert isinstance(events[-1], AuditError), "the stream ends when its orchestrator stops"
    assert worker.calls == [0, 1]

    gate.release.set()
    client = built.start_orchestrator(state_dir=tmp_path)
    stub = built.stub()
    replay = [r.event for r in stub.WatchAudit(orchestrator_pb2.WatchAuditRequest(task_id=task_id))]
    assert replay[-1].done.succeeded_attacks == 2 and not replay[-1].done.error
    assert worker.calls == [0, 1, 1], "the finished attack must not run again"
    assert any("after an orchestrator restart" in e.progress.message for e in replay)
    assert [e.sequence for e in replay] == list(range(len(replay)))


def test_jobs_of_a_worker_that_stops_answering_probes_move_elsewhere(cluster):
    """A silently cut link: the call would hang; unanswered probes get the job moved."""
    hung = Gate()
    client, (_, healthy) = cluster(hung, succeed, linked=True)
    built = cluster.clusters[0]
    built.orchestrator.pool.probe_timeout = 1.0
    thread, events = submit_in_background(client, TASK)
    assert hung.started.acquire(timeout=10)
    built.links[0].cut.set()
    thread.join(20)
    hung.release.set()
    done = events[-1]
    assert done.done.succeeded_attacks == 2
    assert len(healthy.calls) == 2
    (moved,) = [m for m in progress_messages(events) if "stopped answering" in m]
    assert "3 health probes unanswered; last: no answer: DEADLINE_EXCEEDED" in moved


def test_a_worker_answering_not_serving_keeps_its_running_job_and_gets_no_new_ones(cluster):
    """A worker restarting its job launcher answers NOT_SERVING for seconds while it is alive: its
    running job is neither cancelled nor moved (it ends through its own call), though the pool
    once took it for lost after 3 such probes; new jobs go elsewhere, though it has a free slot."""
    gate = Gate()
    client, workers = cluster(gate, gate, slots=2)
    first, first_events = submit_in_background(client, ONE)
    assert gate.started.acquire(timeout=10)
    (busy,) = [number for number, worker in enumerate(workers) if worker.calls]
    built = cluster.clusters[0]
    built.peers[busy].health.set(WORKER_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    pool = built.orchestrator.pool
    wait_until(lambda: pool.workers[built.peers[busy].address].problem == "health is NOT_SERVING")
    time.sleep(3 * pool.lost_after * pool.refresh_seconds)  # thrice as long as a lost worker takes
    second, second_events = submit_in_background(client, ONE)
    assert gate.started.acquire(timeout=10)
    gate.release.set()
    first.join(10)
    second.join(10)
    assert not gate.cancelled
    assert [len(worker.calls) for worker in workers] == [1, 1], "the second job went to the serving worker"
    for events in (first_events, second_events):
        assert events[-1].done.succeeded_attacks == 1
        assert not progress_messages(events), "no job was retried"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("worker_tls", [True, False], ids=["tls-worker", "plaintext-worker"])
def test_a_worker_that_speaks_the_other_protocol_is_logged_once_saying_so(pki, caplog, worker_tls):
    """gRPC reports a TLS mismatch as a closed socket or a failed handshake, probe after probe."""
    tls = ServerTLS.from_files(*pki.internal, None) if worker_tls else None
    peer = start_server(lambda s: attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(
        ScriptedWorker(succeed), s), [WORKER_SERVICE], "127.0.0.1:0", options=ServerOptions(tls=tls))
    peers = ChannelSecurity() if worker_tls else ChannelSecurity(tls=ClientTLS(pki.ca.pem.read_bytes(),
                                                                               server_name=INTERNAL_NAME))
    orchestrator = Orchestrator(OrchestratorConfig(reporter="127.0.0.1:1", workers=[peer.address],
                                                   probe_interval=0.1, peers=peers))
    try:
        with caplog.at_level(logging.WARNING, logger=worker_pool.__name__):
            orchestrator.start("127.0.0.1:0")
            time.sleep(1.5)  # over ten probes
            [described] = orchestrator.pool.describe()
    finally:
        orchestrator.stop(0)
        peer.stop(0)
    expected = ("it serves TLS and the orchestrator connects in plaintext; give the orchestrator the CA that "
                "signed its certificate (--peer-tls-ca; with mTLS also --peer-tls-cert and --peer-tls-key)"
                if worker_tls else
                "it serves plaintext and the orchestrator connects over TLS; drop the orchestrator's --peer-tls-ca, "
                "--peer-tls-cert and --peer-tls-key, or serve TLS there (its --tls-cert and --tls-key)")
    assert f"unhealthy: cannot reach it: {expected}" in described
    said = [record.getMessage() for record in caplog.records if expected in record.getMessage()]
    assert said == [f"worker {peer.address}: cannot reach it: {expected}"]


LIRA_TASK = """
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: LIRA
  args: {target_datasets: [d/in, d/out], target_model: m/target, num_shadow: 6}
"""


def shadow_worker(request, context):
    """Answers shadow parts with their output and the score part with a result whose AUC
    encodes which shadow indices it received (sum of 2**index / 1000)."""
    case = request.WhichOneof("part")
    if case == "shadow":
        yield attack_worker_pb2.RunAttackResponse(shadow=attack_worker_pb2.ShadowOutput(
            shadow_index=request.shadow.shadow_index, num_rows=1, num_classes=1))
    elif case == "score":
        received = sum(2 ** s.shadow_index for s in request.score.shadows)
        yield attack_worker_pb2.RunAttackResponse(result=results_pb2.AttackResult(
            attack_index=request.attack_index, attack_name="LIRA", status=results_pb2.ATTACK_STATUS_SUCCEEDED,
            metrics=results_pb2.Metrics(auc=received / 1000)))
    else:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "LIRA must come in parts")


def test_shadow_attack_fans_out_one_job_per_shadow_then_scores_with_all(cluster):
    client, workers = cluster(shadow_worker, shadow_worker)
    outcome = client.run(LIRA_TASK)
    assert outcome.results[0].status == results_pb2.ATTACK_STATUS_SUCCEEDED
    assert round(outcome.results[0].metrics.auc * 1000) == 2 ** 6 - 1, "the score job gets all six shadows"
    assert all(w.calls for w in workers), "shadow jobs spread over both workers"
    assert sum(len(w.calls) for w in workers) == 7


def test_a_failed_shadow_fails_its_attack_alone(cluster):
    def third_shadow_fails(request, context):
        if request.WhichOneof("part") == "shadow" and request.shadow.shadow_index == 2:
            yield attack_worker_pb2.RunAttackResponse(result=results_pb2.AttackResult(
                attack_index=request.attack_index, status=results_pb2.ATTACK_STATUS_FAILED,
                error=results_pb2.AttackError(code="INVALID_ARGUMENT", message="bad population")))
            return
        if request.WhichOneof("part") is None:
            yield from succeed(request, context)
            return
        yield from shadow_worker(request, context)

    client, _ = cluster(third_shadow_fails)
    outcome = client.run(LIRA_TASK + TASK)
    lira, *baselines = outcome.results
    assert lira.status == results_pb2.ATTACK_STATUS_FAILED
    assert lira.error.message == "shadow model 2: bad population"
    assert all(b.status == results_pb2.ATTACK_STATUS_SUCCEEDED for b in baselines)


def referenced_shadow_worker(missing_rounds: int):
    """A worker whose shadow parts answer by reference, and whose score part misses shadow
    models 1 and 4 the first `missing_rounds` times it runs; the requests it received."""
    received: list[attack_worker_pb2.RunAttackRequest] = []
    lock = threading.Lock()

    def behaviour(request, context):
        with lock:
            received.append(request)
            scores = sum(r.WhichOneof("part") == "score" for r in received)
        if request.WhichOneof("part") == "shadow":
            output = attack_worker_pb2.ShadowOutput(shadow_index=request.shadow.shadow_index, num_rows=1,
                                                    num_classes=1, cache_key=f"key{request.shadow.shadow_index}")
            output.entry.size_bytes, output.entry.sha256 = 1000, "ab" * 32
            yield attack_worker_pb2.RunAttackResponse(shadow=output)
        elif request.WhichOneof("part") == "score" and scores <= missing_rounds:
            yield attack_worker_pb2.RunAttackResponse(shadows_missing=attack_worker_pb2.ShadowsMissing(
                shadow_index=[1, 4], reason="shadow 1: no entry key1.npz in /cache/shadows; and 1 more"))
        else:
            yield from (shadow_worker if request.WhichOneof("part") else succeed)(request, context)

    return behaviour, received


@pytest.mark.parametrize("rounds", [1, 2])
def test_shadow_models_a_score_job_misses_are_trained_again_then_it_scores(cluster, rounds):
    behaviour, received = referenced_shadow_worker(missing_rounds=rounds)
    client, _ = cluster(behaviour, behaviour)
    kinds: list[str] = []
    outcome = client.run(LIRA_TASK, on_event=lambda e: kinds.append(
        e.progress.message if e.WhichOneof("kind") == "progress" else ""))
    assert outcome.results[0].status == results_pb2.ATTACK_STATUS_SUCCEEDED, outcome.results[0].error
    assert round(outcome.results[0].metrics.auc * 1000) == 2 ** 6 - 1, "the last score job gets all six shadows"
    shadow_parts = sorted(r.shadow.shadow_index for r in received if r.WhichOneof("part") == "shadow")
    assert shadow_parts == sorted([*range(6), *[1, 4] * rounds]), "only the missing ones again"
    scores = [r for r in received if r.WhichOneof("part") == "score"]
    assert len(scores) == rounds + 1
    assert all(s.entry.sha256 == "ab" * 32 and not s.logits for s in scores[-1].score.shadows)
    said = [m for m in kinds if m.startswith("training shadow models 1 and 4 again")]
    assert len(said) == rounds and "(round 1 of at most 2)" in said[0] and "no entry key1.npz" in said[0]


def test_shadow_models_missing_round_after_round_fail_their_attack_naming_the_cache_flags(cluster):
    behaviour, received = referenced_shadow_worker(missing_rounds=10)
    client, _ = cluster(behaviour)
    outcome = client.run(LIRA_TASK + TASK)
    lira, *baselines = outcome.results
    assert lira.status == results_pb2.ATTACK_STATUS_FAILED
    assert (lira.error.fault, lira.error.retryable) == (results_pb2.FAULT_INFRASTRUCTURE, False)
    assert "the workers seem not to share a cache folder" in lira.error.message
    assert "--cache-dir" in lira.error.message and "--cache-shared" in lira.error.message
    assert sum(r.WhichOneof("part") == "score" for r in received) == 3, "two rounds of training again, then no more"
    assert all(b.status == results_pb2.ATTACK_STATUS_SUCCEEDED for b in baselines)


def test_restart_trains_only_the_missing_shadow_models(cluster, tmp_path):
    gate = Gate()

    def shadows_after_the_third_wait(request, context):
        if request.WhichOneof("part") == "shadow" and request.shadow.shadow_index >= 3:
            gate.started.release()
            while not gate.release.wait(0.02):
                if not context.is_active():
                    return
        yield from shadow_worker(request, context)

    client, (worker,) = cluster(shadows_after_the_third_wait, state_dir=tmp_path)
    thread, events = submit_in_background(client, LIRA_TASK)
    assert gate.started.acquire(timeout=10)
    built = cluster.clusters[0]
    built.orchestrator.stop(0)
    thread.join(10)
    assert sorted(worker.calls) == [0, 0, 0, 0]  # shadows 0-2 done, shadow 3 cut off

    gate.release.set()
    client = built.start_orchestrator(state_dir=tmp_path)
    status = client.collect(client.watch(events[0].task_id))
    assert round(status.results[0].metrics.auc * 1000) == 2 ** 6 - 1
    assert len(worker.calls) == 4 + 3 + 1, "shadows 3-5 again, then the score job; 0-2 not retrained"


@dataclass
class RelayingWorker(ScriptedWorker):
    """A worker with a private cache (`held`, by key): its shadow parts stream their entry (of
    1.5 chunks) when asked, its score part scores (AUC encoding the shadow indices, as
    `shadow_worker`) only when it holds every referenced entry as described, else answers them
    missing. `damage_once`: the first streamed entry's second chunk has a byte flipped."""

    behaviour: Behaviour | None = None
    held: dict[str, bytes] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)
    requests: list[attack_worker_pb2.RunAttackRequest] = field(default_factory=list)
    damage_once: bool = False

    def RunAttack(self, request, context):
        self.calls.append(request.attack_index)
        self.requests.append(request)
        if request.WhichOneof("part") == "shadow":
            index = request.shadow.shadow_index
            data = bytes([index]) * (CHUNK_BYTES + CHUNK_BYTES // 2)
            key = hashlib.sha256(f"shadow {index}".encode()).hexdigest()
            self.held[key] = data
            entry = attack_worker_pb2.StoredEntry(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
            if request.shadow.stream_entry:
                for offset in range(0, len(data), CHUNK_BYTES):
                    piece = data[offset:offset + CHUNK_BYTES]
                    if offset and self.damage_once:
                        piece, self.damage_once = b"\xff" + piece[1:], False
                    yield attack_worker_pb2.RunAttackResponse(entry_chunk=attack_worker_pb2.EntryChunk(
                        cache_key=key, offset=offset, data=piece, entry=None if offset else entry))
            yield attack_worker_pb2.RunAttackResponse(shadow=attack_worker_pb2.ShadowOutput(
                shadow_index=index, cache_key=key, num_rows=1, num_classes=1, entry=entry))
            return
        missing = [s.shadow_index for s in request.score.shadows
                   if hashlib.sha256(self.held.get(s.cache_key, b"")).hexdigest() != s.entry.sha256]
        if missing:
            yield attack_worker_pb2.RunAttackResponse(shadows_missing=attack_worker_pb2.ShadowsMissing(
                shadow_index=missing, reason="not in this worker's cache"))
        else:
            yield from shadow_worker(request, context)

    def PutEntries(self, requests, context):
        received: dict[str, bytearray] = {}
        for request in requests:
            assert len(request.chunk.data) <= CHUNK_BYTES
            received.setdefault(request.chunk.cache_key, bytearray()).extend(request.chunk.data)
        self.held.update(received)
        self.uploaded += list(received)
        return attack_worker_pb2.PutEntriesResponse(cache_key=list(received))


def test_without_a_shared_cache_entries_go_through_the_orchestrator_to_the_score_jobs_worker(cluster, tmp_path):
    workers = [RelayingWorker(), RelayingWorker()]
    client, _ = cluster(*workers, state_dir=tmp_path)
    outcome = client.run(LIRA_TASK)
    assert outcome.results[0].status == results_pb2.ATTACK_STATUS_SUCCEEDED, outcome.results[0].error
    assert round(outcome.results[0].metrics.auc * 1000) == 2 ** 6 - 1, "the score job held all six entries"
    shadow_parts = [r for w in workers for r in w.requests if r.WhichOneof("part") == "shadow"]
    assert len(shadow_parts) == 6 and all(r.shadow.stream_entry for r in shadow_parts)
    (scorer,) = [w for w in workers if any(r.WhichOneof("part") == "score" for r in w.requests)]
    (other,) = [w for w in workers if w is not scorer]
    produced_elsewhere = {
        hashlib.sha256(f"shadow {r.shadow.shadow_index}".encode()).hexdigest()
        for r in other.requests if r.WhichOneof("part") == "shadow"}
    assert sorted(scorer.uploaded) == sorted(produced_elsewhere), "only what it lacked, once each"
    rows = cluster.clusters[0].orchestrator.store.shadows(outcome.task_id, 0)
    assert all(not row.logits and row.entry.size_bytes == CHUNK_BYTES * 3 // 2 for row in rows)
    wait_until(lambda: not [path for path in (tmp_path / "entries").rglob("*") if path.is_file()])  # once it ended


def test_a_streamed_entry_that_is_not_as_described_runs_its_shadow_part_again(cluster, tmp_path):
    client, (worker,) = cluster(RelayingWorker(damage_once=True), state_dir=tmp_path)
    messages: list[str] = []
    outcome = client.run(LIRA_TASK, on_event=lambda e: messages.append(e.progress.message))
    assert outcome.results[0].status == results_pb2.ATTACK_STATUS_SUCCEEDED, outcome.results[0].error
    retried = [m for m in messages if m.startswith("retrying: attempt 1 of 3 failed")]
    assert len(retried) == 1 and "streamed a shadow entry that is not as described" in retried[0]
    assert "SHA-256" in retried[0]
    assert len(worker.requests) == 6 + 1 + 1, "one shadow part twice, then the score job"


@dataclass
class StuckUploads(RelayingWorker):
    """A RelayingWorker whose PutEntries holds the call until its caller cancels it."""

    uploading: threading.Event = field(default_factory=threading.Event)
    upload_cancelled: threading.Event = field(default_factory=threading.Event)

    def PutEntries(self, requests, context):
        self.uploading.set()
        deadline = time.monotonic() + 20
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not context.is_active():
            self.upload_cancelled.set()
        return attack_worker_pb2.PutEntriesResponse()


def test_cancelling_an_audit_cancels_the_upload_of_its_score_jobs_entries(cluster, tmp_path):
    workers = [StuckUploads(), StuckUploads()]
    client, _ = cluster(*workers, state_dir=tmp_path)
    thread, events = submit_in_background(client, LIRA_TASK)
    wait_until(lambda: any(w.uploading.is_set() for w in workers))
    stub = cluster.clusters[0].stub()
    status = stub.CancelAudit(orchestrator_pb2.CancelAuditRequest(task_id=events[0].task_id)).audit
    assert status.state == orchestrator_pb2.AUDIT_STATE_CANCELLED
    wait_until(lambda: any(w.upload_cancelled.is_set() for w in workers), timeout=5)
    thread.join(10)
    assert events[-1].done.cancelled
    assert not any(w.requests[-1].WhichOneof("part") == "score" for w in workers), "no score job after it"
    wait_until(lambda: not [path for path in (tmp_path / "entries").rglob("*") if path.is_file()])


def test_an_orchestrator_on_a_schema_0_state_folder_finishes_what_it_left(cluster, tmp_path):
    """A state folder of the orchestrator before status columns (see test_store): its two unfinished
    audits run their missing jobs only, and its finished ones answer as they did."""
    def baseline_or_shadow(request, context):
        yield from (shadow_worker if request.WhichOneof("part") else succeed)(request, context)

    schema_0_folder(tmp_path)
    client, (worker,) = cluster(baseline_or_shadow, state_dir=tmp_path)
    lira = client.collect(client.watch("76f0e775182d"))
    baselines = client.collect(client.watch("f6c1fd1e18d9"))
    assert round(lira.results[0].metrics.auc * 1000) == 2 ** 6 - 1, "the score job gets all six shadows"
    assert [r.attack_index for r in baselines.results] == [0, 1] and baselines.rendered
    assert sorted(worker.calls) == [0] * 5 + [1], "shadows 2-5 and the score; the unfinished baseline alone"
    stub = cluster.clusters[0].stub()
    for task_id, known in SCHEMA_0_STATUS.items():
        if known[0] in (orchestrator_pb2.AUDIT_STATE_SUCCEEDED, orchestrator_pb2.AUDIT_STATE_FAILED,
                        orchestrator_pb2.AUDIT_STATE_CANCELLED):
            assert sketch(stub.GetAudit(orchestrator_pb2.GetAuditRequest(task_id=task_id)).audit) == known
    listed = stub.ListAudits(orchestrator_pb2.ListAuditsRequest()).audits
    assert [a.task_id for a in listed] == list(SCHEMA_0_STATUS)
    assert {a.task_id: a.state for a in listed}["76f0e775182d"] == orchestrator_pb2.AUDIT_STATE_SUCCEEDED


class RecordingReporter(ScriptedReporter):
    """The scripted reporter, keeping every request it gets."""

    def __init__(self):
        self.requests: list[reporter_pb2.BuildReportRequest] = []

    def BuildReport(self, request, context):
        self.requests.append(request)
        yield from super().BuildReport(request, context)


def test_the_reporter_renders_json_too_with_the_audits_provenance_and_its_baseline(cluster):
    reporter = RecordingReporter()
    cluster(succeed, reporter_servicer=reporter)
    baseline = json.dumps({"schema_version": "3.0", "task_id": "before"})
    before = int(time.time())
    responses = cluster.clusters[0].stub().SubmitAudit(orchestrator_pb2.SubmitAuditRequest(
        task_yaml=ONE, seed=11, report_format=report_pb2.REPORT_FORMAT_HTML, baseline_report_json=baseline),
        timeout=30)
    assert [r.event.WhichOneof("kind") for r in responses][-1] == "done"
    (request,) = reporter.requests
    assert (request.format, list(request.also_formats)) == (report_pb2.REPORT_FORMAT_HTML,
                                                            [report_pb2.REPORT_FORMAT_JSON])
    assert request.baseline_report_json == baseline
    task = task_spec.to_proto(task_spec.parse_yaml(ONE, 11))
    assert request.provenance.seed == 11 == task.seed
    assert request.provenance.task_digest == hashlib.sha256(task.SerializeToString(deterministic=True)).hexdigest()
    assert before <= request.provenance.generated_at.seconds <= time.time()


@pytest.mark.parametrize(("baseline", "message"), [
    ("{not json", "baseline_report_json: not JSON"),
    (json.dumps({"schema_version": "2.0"}), "baseline_report_json: a JSON report of schema 3.x is needed, this one "
                                            "has schema_version '2.0'"),
    ("[]", "has schema_version None"),
])
def test_a_baseline_that_is_no_report_is_refused_before_anything_runs(cluster, baseline, message):
    _, (worker,) = cluster(succeed)
    with pytest.raises(grpc.RpcError) as caught:
        list(cluster.clusters[0].stub().SubmitAudit(
            orchestrator_pb2.SubmitAuditRequest(task_yaml=ONE, baseline_report_json=baseline), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert not worker.calls


def test_an_audit_resumed_after_a_restart_keeps_its_baseline(cluster, tmp_path):
    reporter = RecordingReporter()
    hold = threading.Event()

    def held(request, context):
        hold.wait(10)
        yield from succeed(request, context)

    cluster(held, reporter_servicer=reporter, state_dir=tmp_path)
    first = cluster.clusters[0]
    baseline = json.dumps({"schema_version": "3.1"})
    responses = first.stub().SubmitAudit(orchestrator_pb2.SubmitAuditRequest(
        task_yaml=ONE, baseline_report_json=baseline), timeout=30)
    task_id = next(responses).event.task_id
    first.orchestrator.stop(0)
    hold.set()
    first.start_orchestrator(state_dir=tmp_path)
    list(first.stub().WatchAudit(orchestrator_pb2.WatchAuditRequest(task_id=task_id), timeout=30))
    assert [r.baseline_report_json for r in reporter.requests] == [baseline]
