"""privaudit's one error model: whose fault a failure is, whether trying again can help, and
the gRPC status it travels as.

Every failure the services know about is a `Failure` holding three facts:

- `fault` (`results_pb2.Fault`): FAULT_TASK, the task, a file it names or the request (an
  invalid argument, model code that crashes, a job past its worker's `--job-timeout-s` or
  `--job-memory-mb`); FAULT_INFRASTRUCTURE, what the services run on (a worker that died or
  stopped answering, a dropped link, a deadline that passed while the worker was healthy, the
  kernel's out-of-memory killer); FAULT_SERVICE, privaudit itself (a bug, a worker without the
  attack).
- `retryable`: whether running the same thing again, elsewhere or later, may succeed.
- `code` (`grpc.StatusCode`): the status it crosses gRPC as.

How to use it, in every service and every change to come:

- Raise the typed exception where the failure is found: `TaskError.at(field, message)` (or
  `InvalidArgument` for a request that is not a task), `NotFound`, `OutOfRange`, `Overloaded`
  (a service's own limit: try again later), `Unavailable` (a peer is away), `DeadlineExceeded`,
  `Unimplemented`, `ServiceBug`. For a new kind, subclass the one whose code, fault and
  retryability it shares (`QueueFull(Overloaded)`), or pass `fault=`/`retryable=` to one
  instance when what happened decides it.
- In a servicer, let it propagate: never call `context.abort`. `start_server` installs the one
  interceptor (`privaudit.services.common.server.FailureInterceptor`) that turns a Failure into its status,
  with an `ErrorInfo` detail (domain `ERROR_DOMAIN`, reason the fault's name, metadata
  `retryable`) and, for INVALID_ARGUMENT, a `BadRequest` detail per field; and any other
  exception into INTERNAL, FAULT_SERVICE, with an incident id for the caller and the traceback
  in the service's log only.
- In an attack's result, `failure.attack_error()` is its `AttackError` (enum, code name, field,
  message).
- Whoever receives a failure classifies it here: `from_rpc_error` (reads the ErrorInfo; a status
  without one did not come from a privaudit servicer) or `from_attack_error` (reads the enum;
  results of older workers fall back to their code name), and decides by `.retryable`.
- gRPC code names are never written as strings: `grpc.StatusCode.X` (`.name` for a code field).

Where the changes to come plug in: a retry loop (e.g. BuildReport while the reporter is away)
asks `from_rpc_error(error).retryable`, not a list of codes; input checks raise TaskError /
InvalidArgument naming the field, or NotFound; a job that kills the worker's fork server fails
with a TaskError saying so, while the restarted server's own trouble is Unavailable; rate
limiting of logged tracebacks belongs in `privaudit.services.common.server.status_of`, the one place
that logs an unexpected exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from privaudit.v1 import results_pb2

TASK = results_pb2.FAULT_TASK
INFRASTRUCTURE = results_pb2.FAULT_INFRASTRUCTURE
SERVICE = results_pb2.FAULT_SERVICE
# ErrorInfo.domain of the statuses privaudit's servicers send.
ERROR_DOMAIN = "privaudit.v1"
_RETRYABLE_KEY = "retryable"

# How a status code alone classifies a failure: for results of workers older than the enum, and
# for statuses without privaudit's ErrorInfo (see `from_rpc_error` for INTERNAL and UNKNOWN).
_BY_CODE: dict[grpc.StatusCode, tuple[int, bool]] = {
    **dict.fromkeys([grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OUT_OF_RANGE,
                     grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS], (TASK, False)),
    **dict.fromkeys([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
                     grpc.StatusCode.CANCELLED], (INFRASTRUCTURE, True)),
    # Without privaudit's detail (a full queue says it is retryable), RESOURCE_EXHAUSTED is gRPC's own
    # message-size limit: the same message is refused again, however often it is sent.
    grpc.StatusCode.RESOURCE_EXHAUSTED: (INFRASTRUCTURE, False),
    # A deployment whose tokens or certificates do not match: the operator's to fix, not a retry's.
    **dict.fromkeys([grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED], (INFRASTRUCTURE, False)),
    **dict.fromkeys([grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED,
                     grpc.StatusCode.DATA_LOSS], (SERVICE, False)),
}
# gRPC drops a status whose trailers pass about 8 KiB and reports RESOURCE_EXHAUSTED instead: the
# message and the field list are cut to fit well inside (the message may be percent-encoded).
MAX_STATUS_MESSAGE = 1500
MAX_DETAIL_BYTES = 2500
_FAULT_WORDS = {TASK: "the task's fault", INFRASTRUCTURE: "an infrastructure fault", SERVICE: "a fault of privaudit"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a task: the field (e.g. `attacks[0].args.topk`) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Failure(Exception):
    """A failure whose gRPC code, fault and retryability are known. Subclasses fix the three;
    one instance may override them when what happened decides (see the module's docstring)."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    fault: int = SERVICE
    retryable: bool = False

    def __init__(self, message: str, field: str = "", *, code: grpc.StatusCode | None = None,
                 fault: int | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        if fault is not None:
            self.fault = fault
        if retryable is not None:
            self.retryable = retryable

    def attack_error(self) -> results_pb2.AttackError:
        """The failure as an attack result's error."""
        return results_pb2.AttackError(code=self.code.name, field=self.field, message=self.message,
                                       fault=self.fault, retryable=self.retryable)

    def status_message(self) -> str:
        """The status's message: what the caller reads."""
        return str(self)

    def status_details(self) -> list[Message]:
        """Rich details beyond the ErrorInfo every privaudit status carries."""
        return []

    def to_status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(reason=results_pb2.Fault.Name(self.fault), domain=ERROR_DOMAIN,
                                           metadata={_RETRYABLE_KEY: str(self.retryable).lower()})
        packed = []
        for detail in [info, *map(_within_budget, self.status_details())]:
            packed.append(any_pb2.Any())
            packed[-1].Pack(detail)
        return rpc_status.to_status(status_pb2.Status(code=self.code.value[0],
                                                      message=shorten(self.status_message(), MAX_STATUS_MESSAGE),
                                                      details=packed))

    def describe(self) -> str:
        """E.g. `an infrastructure fault, worth retrying`: whose fault and whether to retry."""
        return f"{_FAULT_WORDS.get(self.fault, 'an unclassified fault')}, " \
               f"{'worth retrying' if self.retryable else 'not worth retrying'}"


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`: an exception in a message that fits on a line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    note = f" ... ({len(text) - limit} more characters not shown)"
    return text[: max(limit - len(note), 0)] + note


def _within_budget(detail: Message) -> Message:
    """A BadRequest cut to its first field violations that fit MAX_DETAIL_BYTES (descriptions
    shortened); other details as they are."""
    if not isinstance(detail, error_details_pb2.BadRequest) or detail.ByteSize() <= MAX_DETAIL_BYTES:
        return detail
    kept = error_details_pb2.BadRequest()
    for violation in detail.field_violations:
        shortened = error_details_pb2.BadRequest.FieldViolation(field=shorten(violation.field, 200),
                                                                description=shorten(violation.description, 300))
        if kept.ByteSize() + shortened.ByteSize() + 4 > MAX_DETAIL_BYTES:
            break
        kept.field_violations.append(shortened)
    return kept


class InvalidArgument(Failure, ValueError):
    """A request, or the task in it, is wrong; the fields at fault travel as a BadRequest detail
    per problem, so typed clients read the fields and people read the message."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    fault = TASK
    retryable = False
    prefix = ""  # before the problems in the status's message

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems), self.problems[0].field if self.problems else "")

    @classmethod
    def at(cls, field: str, message: str) -> Self:
        return cls(Problem(field, message))

    def prefixed(self, prefix: str) -> Self:
        """The same problems with `prefix` before each field (e.g. `attacks[1].args.`)."""
        return type(self)([Problem(f"{prefix}{p.field}" if p.field else "", p.message) for p in self.problems])

    def attack_error(self) -> results_pb2.AttackError:
        """The first field; one problem's own message, or every problem as `field: message`."""
        error = super().attack_error()
        if len(self.problems) == 1:
            error.message = self.problems[0].message
        return error

    def status_message(self) -> str:
        return f"{self.prefix}{self}"

    def status_details(self) -> list[Message]:
        return [error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=p.field, description=p.message)
            for p in self.problems])]


class TaskError(InvalidArgument):
    """The task, or a file it names, is wrong; retrying will not help."""

    prefix = "invalid task: "


class NotFound(Failure):
    """What the request names does not exist (e.g. an audit id)."""

    code = grpc.StatusCode.NOT_FOUND
    fault = TASK


class OutOfRange(Failure):
    """A request's position or count is beyond what exists (e.g. an event number)."""

    code = grpc.StatusCode.OUT_OF_RANGE
    fault = TASK


class Overloaded(Failure):
    """A resource ran out that is not the task's to size: a service's own limit (a full queue),
    or the machine's memory (the kernel's out-of-memory killer). The same work may succeed
    later or elsewhere."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    fault = INFRASTRUCTURE
    retryable = True


class Unavailable(Failure):
    """A peer is away: a worker died, its link dropped, it stopped answering probes."""

    code = grpc.StatusCode.UNAVAILABLE
    fault = INFRASTRUCTURE
    retryable = True


class DeadlineExceeded(Failure):
    """An answer did not come in time although nothing said the task was at fault."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    fault = INFRASTRUCTURE
    retryable = True


class Unimplemented(Failure):
    """This service lacks what was asked for (e.g. an attack of a newer version)."""

    code = grpc.StatusCode.UNIMPLEMENTED
    fault = SERVICE


class ServiceBug(Failure):
    """privaudit broke: the same request breaks it again, so it is never retried."""

    code = grpc.StatusCode.INTERNAL
    fault = SERVICE


def classify_code(code: grpc.StatusCode) -> tuple[int, bool]:
    """The fault and retryability a status code implies when nothing more is known."""
    return _BY_CODE.get(code, (SERVICE, False))


def from_rpc_error(error: grpc.RpcError, what: str = "") -> Failure:
    """The failure a call ended with. A privaudit servicer's status says its fault and
    retryability (ErrorInfo); a status without one came from gRPC or the network between
    (INTERNAL and UNKNOWN there are a broken stream, say, not a bug of ours), so its code
    decides. `what` prefixes the message, e.g. `worker 10.0.0.3:50052: `."""
    code = error.code() if isinstance(error.code(), grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    message = f"{what}{code.name}: {error.details() or 'no details'}"
    info = _error_info(error)
    if info is not None:
        try:
            fault = results_pb2.Fault.Value(info.reason)
        except ValueError:
            fault = classify_code(code)[0]
        return Failure(message, code=code, fault=fault, retryable=info.metadata.get(_RETRYABLE_KEY) == "true")
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        return Failure(message, code=code, fault=INFRASTRUCTURE, retryable=True)
    fault, retryable = classify_code(code)
    return Failure(message, code=code, fault=fault, retryable=retryable)


def from_attack_error(error: results_pb2.AttackError) -> Failure:
    """The failure an attack result holds; a result without the enum (an older worker's) is
    classified by its code name."""
    code = grpc.StatusCode.__members__.get(error.code, grpc.StatusCode.UNKNOWN)
    if error.fault != results_pb2.FAULT_UNSPECIFIED:
        return Failure(error.message, error.field, code=code, fault=error.fault, retryable=error.retryable)
    fault, retryable = classify_code(code)
    return Failure(error.message, error.field, code=code, fault=fault, retryable=retryable)


def code_name(error: results_pb2.AttackError) -> str:
    """The error's code name, UNKNOWN when it has none."""
    return error.code or grpc.StatusCode.UNKNOWN.name


def failure_summary(error: results_pb2.AttackError) -> str:
    """A failed attack's code and field, and whose fault it is when the result says (older results
    do not): e.g. `INVALID_ARGUMENT at attacks[0].args.topk; the task's fault, not worth retrying`."""
    summary = code_name(error) + (f" at {error.field}" if error.field else "")
    if error.fault == results_pb2.FAULT_UNSPECIFIED:
        return summary
    return f"{summary}; {from_attack_error(error).describe()}"


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """privaudit's ErrorInfo among the status's details, if it carries one."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a status whose details contradict its code: not one of ours
        return None
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return info
    return None


def problems_from_status(error: grpc.RpcError) -> list[Problem]:
    """The field violations in an INVALID_ARGUMENT error, or one problem with its message."""
    status = rpc_status.from_call(error)
    problems = []
    for detail in status.details if status else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            problems += [Problem(v.field, v.description) for v in bad_request.field_violations]
    return problems or [Problem("", error.details() or str(error.code()))]
