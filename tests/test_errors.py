"""The one error model: each kind of failure crosses gRPC as its status (through the one server
interceptor), is classified back the same on the other side, and lands in attack results as an
enum; older results and foreign statuses fall back to their code. No module but the model's
writes a status code name as a string."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status

from privaudit.services.common.channels import open_channel
from privaudit.services.common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    OutOfRange,
    Overloaded,
    Problem,
    ServiceBug,
    TaskError,
    Unavailable,
    Unimplemented,
    failure_summary,
    from_attack_error,
    from_rpc_error,
    problems_from_status,
)
from privaudit.services.common.server import start_server
from privaudit.v1 import (
    attack_worker_pb2,
    attack_worker_pb2_grpc,
    report_pb2,
    reporter_pb2,
    reporter_pb2_grpc,
    results_pb2,
)

REPO = Path(__file__).resolve().parents[1]
TASK, INFRASTRUCTURE, SERVICE = results_pb2.FAULT_TASK, results_pb2.FAULT_INFRASTRUCTURE, results_pb2.FAULT_SERVICE
S = grpc.StatusCode

# Each typed failure: the status it must travel as, whose fault it is and whether to retry.
KINDS = [
    (TaskError([Problem("attacks[0].args.topk", "must be at least 1"), Problem("attacks[1]", "unknown attack")]),
     S.INVALID_ARGUMENT, TASK, False),
    (InvalidArgument.at("format", "7 is not a format"), S.INVALID_ARGUMENT, TASK, False),
    (NotFound("task_id: no audit 'x'", "task_id"), S.NOT_FOUND, TASK, False),
    (OutOfRange("from_sequence: 9 of 3", "from_sequence"), S.OUT_OF_RANGE, TASK, False),
    (Overloaded("the job queue is full"), S.RESOURCE_EXHAUSTED, INFRASTRUCTURE, True),
    (Unavailable("worker w:1 stopped answering"), S.UNAVAILABLE, INFRASTRUCTURE, True),
    (DeadlineExceeded("worker w:1 gave no answer"), S.DEADLINE_EXCEEDED, INFRASTRUCTURE, True),
    (Unimplemented("LIRA is not available here"), S.UNIMPLEMENTED, SERVICE, False),
    (ServiceBug("the worker broke"), S.INTERNAL, SERVICE, False),
]


class Raising(reporter_pb2_grpc.ReporterServiceServicer, attack_worker_pb2_grpc.AttackWorkerServiceServicer):
    """A reporter (server-streaming) and a worker's GetCapacity (unary) that raise what the test
    sets, BuildReport after one response has gone out."""

    def __init__(self):
        self.error: Exception | None = None
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.calls = 0

    def _fail(self, context):
        self.calls += 1
        if self.abort:
            context.abort(*self.abort)
        raise self.error

    def BuildReport(self, request, context):
        yield reporter_pb2.BuildReportResponse(summary=report_pb2.ReportSummary())
        self._fail(context)

    def GetCapacity(self, request, context):
        self._fail(context)


@pytest.fixture(scope="module")
def served():
    servicer = Raising()

    def register(server):
        reporter_pb2_grpc.add_ReporterServiceServicer_to_server(servicer, server)
        attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(servicer, server)

    service = start_server(register, [], "127.0.0.1:0", max_workers=4)
    channel = open_channel(service.address)
    yield servicer, channel
    channel.close()
    service.stop(0)


def unary(channel, servicer, error) -> grpc.RpcError:
    servicer.error, servicer.abort = error, None
    with pytest.raises(grpc.RpcError) as caught:
        attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).GetCapacity(attack_worker_pb2.GetCapacityRequest(),
                                                                            timeout=10)
    return caught.value


def streamed(channel, servicer, error) -> tuple[list, grpc.RpcError]:
    servicer.error, servicer.abort = error, None
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for response in reporter_pb2_grpc.ReporterServiceStub(channel).BuildReport(
                reporter_pb2.BuildReportRequest(), timeout=10):
            received.append(response)
    return received, caught.value


@pytest.mark.parametrize(("failure", "code", "fault", "retryable"), KINDS, ids=lambda v: getattr(v, "name", None))
def test_each_failure_travels_as_its_status_and_is_classified_back_the_same(served, failure, code, fault, retryable):
    servicer, channel = served
    for error in (unary(channel, servicer, failure), streamed(channel, servicer, failure)[1]):
        assert error.code() == code
        assert error.details() == failure.status_message()
        received = from_rpc_error(error, "peer: ")
        assert (received.code, received.fault, received.retryable) == (code, fault, retryable)
        assert received.message == f"peer: {code.name}: {failure.status_message()}"


def test_invalid_arguments_carry_every_field_and_the_task_prefix(served):
    servicer, channel = served
    error = unary(channel, servicer, KINDS[0][0])
    assert error.details() == ("invalid task: attacks[0].args.topk: must be at least 1; "
                               "attacks[1]: unknown attack")
    assert problems_from_status(error) == KINDS[0][0].problems


def test_a_huge_failure_still_reaches_the_caller_as_itself_cut_to_fit(served):
    """gRPC drops a status whose trailers pass about 8 KiB and says RESOURCE_EXHAUSTED instead: a
    failure with a long message and thousands of fields must arrive as itself, shortened."""
    servicer, channel = served
    problems = [Problem(f"attacks[{i}].args.target_model", "x" * 500) for i in range(5000)]
    for failure, code in ((TaskError(problems), S.INVALID_ARGUMENT), (Unavailable("y" * 100_000), S.UNAVAILABLE)):
        for error in (unary(channel, servicer, failure), streamed(channel, servicer, failure)[1]):
            assert error.code() == code
            assert len(error.details()) <= 1500 and "more characters not shown" in error.details()
            assert from_rpc_error(error).fault == failure.fault
    received = problems_from_status(unary(channel, servicer, TaskError(problems)))
    assert 0 < len(received) < len(problems) and received[0].field == problems[0].field


def test_a_stream_that_failed_midway_keeps_what_it_sent(served):
    servicer, channel = served
    received, error = streamed(channel, servicer, Unavailable("gone"))
    assert [r.WhichOneof("part") for r in received] == ["summary"]
    assert error.code() == S.UNAVAILABLE


def test_an_unexpected_exception_is_internal_without_its_details_and_logged_once(served, caplog):
    servicer, channel = served
    caplog.set_level(logging.INFO)
    secret = RuntimeError("index 7 out of range in /srv/secret/path.py")
    for error in (unary(channel, servicer, secret), streamed(channel, servicer, secret)[1]):
        assert error.code() == S.INTERNAL
        assert "secret" not in error.details() and "Traceback" not in error.details()
        incident = re.fullmatch(r"the service failed \(incident ([0-9a-f]{8})\); its log has the details",
                                error.details()).group(1)
        logged = [r for r in caplog.records if incident in r.getMessage()]
        assert len(logged) == 1 and logged[0].exc_info and "index 7 out of range" in logged[0].getMessage()
        assert (from_rpc_error(error).fault, from_rpc_error(error).retryable) == (SERVICE, False)
    assert "Exception calling application" not in caplog.text, "gRPC's own traceback must not be logged too"


def test_a_status_the_handler_chose_itself_is_kept(served):
    servicer, channel = served
    servicer.abort = (S.PERMISSION_DENIED, "not for you")
    with pytest.raises(grpc.RpcError) as caught:
        attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).GetCapacity(attack_worker_pb2.GetCapacityRequest(),
                                                                            timeout=10)
    assert (caught.value.code(), caught.value.details()) == (S.PERMISSION_DENIED, "not for you")
    assert rpc_status.from_call(caught.value) is None, "no privaudit ErrorInfo is made up for it"


def test_a_request_that_does_not_decode_is_invalid_argument_and_never_reaches_the_servicer(served, caplog):
    servicer, channel = served
    calls = servicer.calls
    raw = channel.unary_unary("/privaudit.v1.AttackWorkerService/GetCapacity")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff\xff", timeout=10)
    assert caught.value.code() == S.INVALID_ARGUMENT
    assert "is not a valid message for /privaudit.v1.AttackWorkerService/GetCapacity" in caught.value.details()
    assert servicer.calls == calls
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(("abort_code", "fault", "retryable"), [
    # Not raised by a privaudit servicer (gRPC itself, the network, a proxy): INTERNAL and UNKNOWN
    # there are a broken stream, not a bug of ours, and worth another try.
    (S.INTERNAL, INFRASTRUCTURE, True),
    (S.UNKNOWN, INFRASTRUCTURE, True),
    (S.UNAVAILABLE, INFRASTRUCTURE, True),
    (S.DEADLINE_EXCEEDED, INFRASTRUCTURE, True),
    (S.UNAUTHENTICATED, INFRASTRUCTURE, False),
    # gRPC's own message-size limit: the same message is refused again, so not worth a retry
    # (a full queue is RESOURCE_EXHAUSTED too, but says it is retryable: Overloaded in KINDS).
    (S.RESOURCE_EXHAUSTED, INFRASTRUCTURE, False),
    (S.INVALID_ARGUMENT, TASK, False),
    (S.UNIMPLEMENTED, SERVICE, False),
])
def test_a_status_without_privaudits_detail_is_classified_by_its_code(served, abort_code, fault, retryable):
    servicer, channel = served
    servicer.abort = (abort_code, "from elsewhere")
    with pytest.raises(grpc.RpcError) as caught:
        attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).GetCapacity(attack_worker_pb2.GetCapacityRequest(),
                                                                            timeout=10)
    failure = from_rpc_error(caught.value)
    assert (failure.code, failure.fault, failure.retryable) == (abort_code, fault, retryable)


@pytest.mark.parametrize(("failure", "code", "fault", "retryable"), KINDS, ids=lambda v: getattr(v, "name", None))
def test_each_failure_lands_in_a_result_as_the_enum_and_its_code_name(failure, code, fault, retryable):
    error = failure.attack_error()
    assert (error.code, error.fault, error.retryable, error.field) == (code.name, fault, retryable, failure.field)
    back = from_attack_error(results_pb2.AttackError.FromString(error.SerializeToString()))
    assert (back.code, back.fault, back.retryable, back.message, back.field) == \
        (code, fault, retryable, error.message, error.field)


def test_a_task_error_in_a_result_names_its_first_field_and_every_problem():
    one = TaskError.at("shadow_model", "holds no .py file").prefixed("attacks[2].args.").attack_error()
    assert (one.field, one.message) == ("attacks[2].args.shadow_model", "holds no .py file")
    two = KINDS[0][0].prefixed("x.").attack_error()
    assert (two.field, two.message) == ("x.attacks[0].args.topk",
                                        "x.attacks[0].args.topk: must be at least 1; x.attacks[1]: unknown attack")


@pytest.mark.parametrize(("code", "fault", "retryable"), [
    ("INVALID_ARGUMENT", TASK, False),
    ("INTERNAL", SERVICE, False),  # an older worker's own exception: a bug, not retried
    ("UNIMPLEMENTED", SERVICE, False),
    ("UNAVAILABLE", INFRASTRUCTURE, True),  # an older orchestrator's "gave up after N attempts"
    ("", SERVICE, False),
    ("NOT_A_CODE", SERVICE, False),
])
def test_an_older_result_without_the_enum_is_classified_by_its_code_string(code, fault, retryable):
    failure = from_attack_error(results_pb2.AttackError(code=code, message="m"))
    assert (failure.fault, failure.retryable) == (fault, retryable)


def test_a_report_says_whose_fault_only_when_the_result_does():
    new = TaskError.at("attacks[1].args.shadow_model", "missing").attack_error()
    assert failure_summary(new) == "INVALID_ARGUMENT at attacks[1].args.shadow_model; the task's fault, " \
                                   "not worth retrying"
    assert failure_summary(Overloaded("oom").attack_error()) == \
        "RESOURCE_EXHAUSTED; an infrastructure fault, worth retrying"
    assert failure_summary(results_pb2.AttackError(code="INTERNAL", field="f")) == "INTERNAL at f"
    assert failure_summary(results_pb2.AttackError()) == "UNKNOWN"


def test_no_status_code_name_is_written_as_a_string_outside_the_error_model():
    """`grep -rn '"INVALID_ARGUMENT"\\|"INTERNAL"\\|...' services client` shows the model only."""
    names = "|".join(code.name for code in grpc.StatusCode if code is not S.OK)
    literal = re.compile(rf"""(["'])({names})\1""")
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for folder in ("services", "client") for path in sorted((REPO / folder).rglob("*.py"))
             if "node_modules" not in path.parts and path != REPO / "services" / "common" / "errors.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if literal.search(line)]
    assert not found, "status code names written as strings:\n" + "\n".join(found)
