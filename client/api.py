"""The Python API: submit an audit to an orchestrator and read what comes back.

    from privaudit.client import AuditClient
    with AuditClient("localhost:50051") as auditor:
        outcome = auditor.run(Path("example/tasks/mem_inf.yaml"))
    print(outcome.risk, outcome.report.attacks[0].metrics.auc)  # typed: an AuditReport
    print(outcome.rendered)  # the report in the format asked for (text by default)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from privaudit.services.common import task_spec
from privaudit.services.common.auth import read_tokens
from privaudit.services.common.channels import ChannelSecurity, open_channel
from privaudit.services.common.errors import TaskError, problems_from_status
from privaudit.services.common.tls import ClientTLS, served_protocol
from privaudit.services.orchestrator.limits import check_task_size
from privaudit.v1 import orchestrator_pb2, orchestrator_pb2_grpc, report_pb2, results_pb2, task_pb2

if TYPE_CHECKING:
    from privaudit.services.reporter.report_model import AuditReport

FORMATS = {"text": report_pb2.REPORT_FORMAT_TEXT, "json": report_pb2.REPORT_FORMAT_JSON,
           "html": report_pb2.REPORT_FORMAT_HTML}
# An audit's stream carries a heartbeat at least every 10 s (services/orchestrator/event_log.py);
# this long without any event means the orchestrator or the link is gone.
IDLE_TIMEOUT = 60.0
# While the channel is not ready, the server is probed this often for a TLS mismatch, which
# waiting does not heal.
PROBE_INTERVAL = 1.0
_MISMATCH = {
    "tls": "it serves TLS and this client connected in plaintext; give the CA that signed its certificate "
           "(--tls-ca; with mTLS also --tls-cert and --tls-key)",
    "plaintext": "it serves plaintext and this client connected over TLS; drop --tls-ca, --tls-cert and --tls-key "
                 "(and PRIVAUDIT_CLIENT_TLS_*), or serve TLS (the orchestrator's --tls-cert and --tls-key)",
}


class AuditError(RuntimeError):
    """The audit could not be run or finished (not a fault of the task)."""


@dataclass
class AuditOutcome:
    """Everything an audit's stream carried, gathered: `report` is the typed report (None when
    the stream carried no JSON report: an audit that did not finish, or one stored by an
    orchestrator older than reports 3.0), `rendered` the report in the format the audit was run
    with (`rendered_format`), `renderings` every format the stream carried, and `risk` the
    overall risk ("LOW", "MIDDLE", "HIGH" or "UNRATED")."""

    task_id: str = ""
    attack_names: list[str] = field(default_factory=list)
    seed: int | None = None
    results: list[results_pb2.AttackResult] = field(default_factory=list)
    summary: report_pb2.ReportSummary | None = None
    report: AuditReport | None = None
    renderings: dict[int, str] = field(default_factory=dict)  # ReportFormat -> text, the requested one first
    done: orchestrator_pb2.AuditDone | None = None

    @property
    def rendered_format(self) -> int:
        return next(iter(self.renderings), report_pb2.REPORT_FORMAT_UNSPECIFIED)

    @property
    def rendered(self) -> str:
        return next(iter(self.renderings.values()), "")

    @property
    def risk(self) -> str:
        if self.report is not None:
            return self.report.risk
        from privaudit.services.reporter.report_model import risk_name

        return risk_name(self.summary.overall_risk if self.summary else report_pb2.RISK_LEVEL_UNSPECIFIED)

    @property
    def finished(self) -> bool:
        """Whether the audit ran to its end with a report (not cancelled, not failed)."""
        return self.done is not None and not self.done.cancelled and not self.done.error


class AuditClient:
    """A connection to an orchestrator. Every call raises AuditError when the orchestrator
    cannot be reached or answers with an error; `submit` raises TaskError for a bad task.

    Over TLS when `tls_ca` (the CA bundle the orchestrator's certificate chains to) or a client
    certificate is given; `tls_cert` and `tls_key` are this client's certificate and key for
    mTLS; `tls_server_name` is the name in the orchestrator's certificate when it is not the
    address's host. With `token_file`, its first token is sent as the bearer token. A missing
    or malformed file raises TLSConfigError or TokenFileError (both ValueError) at once.
    An audit's stream that carries nothing, not even a heartbeat, for `idle_timeout` seconds
    ends with an AuditError: never a silent hang.
    """

    def __init__(self, address: str, connect_timeout: float = 30.0, call_timeout: float = 30.0, *,
                 idle_timeout: float = IDLE_TIMEOUT,
                 tls_ca: Path | None = None, tls_cert: Path | None = None, tls_key: Path | None = None,
                 tls_server_name: str | None = None, token_file: Path | None = None):
        self.address = address
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.idle_timeout = idle_timeout
        security = ChannelSecurity(ClientTLS.from_files(tls_ca, tls_cert, tls_key, tls_server_name),
                                   read_tokens(token_file)[0] if token_file else None)
        self._protocol = "tls" if security.tls else "plaintext"
        self._channel = open_channel(address, security=security)
        self._stub = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel)
        self._connected = threading.Event()

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def submit(self, task: str | Path | task_pb2.Task, report_format: str = "text",
               seed: int | None = None, baseline: str | None = None) -> Iterator[orchestrator_pb2.AuditEvent]:
        """Submits the task (YAML text, a YAML file's path, or a typed Task) and yields its events.
        `baseline`: an earlier JSON report's text, which the report is compared with (its
        `comparison`). A task larger than any orchestrator takes (`task_spec.MAX_TASK_BYTES`) is
        refused here, unsent, with a TaskError."""
        request = orchestrator_pb2.SubmitAuditRequest(report_format=FORMATS[report_format], seed=seed)
        if baseline is not None:
            request.baseline_report_json = baseline
        if isinstance(task, task_pb2.Task):
            request.task.CopyFrom(task)
        else:
            text = task_spec.read_task_file(task) if isinstance(task, Path) else task
            try:
                request.task_yaml = text
            except UnicodeEncodeError as error:  # a lone surrogate: not text UTF-8 can carry
                raise TaskError.at("task_yaml", f"character {error.start + 1} of the task's text is "
                                                f"{task_spec.quoted(text[error.start])}, which is not text") from None
        check_task_size(request, task_spec.MAX_TASK_BYTES, "privaudit sends",
                        " (an orchestrator's --max-task-bytes may allow less)")
        yield from self._stream(self._stub.SubmitAudit, request)

    def watch(self, task_id: str, from_sequence: int = 0) -> Iterator[orchestrator_pb2.AuditEvent]:
        """The events of an audit, running or finished, from event number `from_sequence` on."""
        request = orchestrator_pb2.WatchAuditRequest(task_id=task_id, from_sequence=from_sequence)
        yield from self._stream(self._stub.WatchAudit, request)

    def run(self, task: str | Path | task_pb2.Task, report_format: str = "text", seed: int | None = None,
            on_event: Callable[[orchestrator_pb2.AuditEvent], None] | None = None,
            baseline: str | None = None, outcome: AuditOutcome | None = None) -> AuditOutcome:
        """Runs the audit to the end and returns what it produced (see `collect` for `outcome`)."""
        return self.collect(self.submit(task, report_format, seed, baseline), on_event, outcome)

    def status(self, task_id: str) -> orchestrator_pb2.AuditStatus:
        return self._call(self._stub.GetAudit, orchestrator_pb2.GetAuditRequest(task_id=task_id)).audit

    def list(self, limit: int = 100) -> list[orchestrator_pb2.AuditStatus]:
        return list(self._call(self._stub.ListAudits, orchestrator_pb2.ListAuditsRequest(page_size=limit)).audits)

    def cancel(self, task_id: str) -> orchestrator_pb2.AuditStatus:
        return self._call(self._stub.CancelAudit, orchestrator_pb2.CancelAuditRequest(task_id=task_id)).audit

    def attacks(self) -> list[orchestrator_pb2.AttackDescription]:
        """The attacks the service runs, with their arguments and defaults."""
        return list(self._call(self._stub.ListAttacks, orchestrator_pb2.ListAttacksRequest()).attacks)

    def collect(self, events: Iterator[orchestrator_pb2.AuditEvent],
                on_event: Callable[[orchestrator_pb2.AuditEvent], None] | None = None,
                outcome: AuditOutcome | None = None) -> AuditOutcome:
        """Gathers an audit's stream (from `submit` or `watch`) into an AuditOutcome. Given an
        `outcome`, it is filled as the events arrive, so that a caller interrupted meanwhile (an
        AuditError, Ctrl-C) still holds what had arrived."""
        outcome = AuditOutcome() if outcome is None else outcome
        reports: dict[int, bytearray] = {}  # the report's chunks by format, the requested format first
        for event in events:
            if on_event:
                on_event(event)
            outcome.task_id = event.task_id
            kind = event.WhichOneof("kind")
            if kind == "accepted":
                outcome.attack_names, outcome.seed = list(event.accepted.attack_names), event.accepted.seed
            elif kind == "attack_result":
                outcome.results.append(event.attack_result)
                outcome.results.sort(key=lambda result: result.attack_index)
            elif kind == "report_summary":
                outcome.summary = event.report_summary
            elif kind == "report_chunk":
                reports.setdefault(event.report_chunk.format, bytearray()).extend(event.report_chunk.data)
            elif kind == "done":
                outcome.done = event.done
        if outcome.done is None:
            raise AuditError(f"the orchestrator at {self.address} ended the audit's stream before it was done")
        outcome.renderings = {report_format: data.decode() for report_format, data in reports.items()}
        if report_pb2.REPORT_FORMAT_JSON in reports:
            outcome.report = _typed_report(reports[report_pb2.REPORT_FORMAT_JSON])
        return outcome

    def _connect(self) -> None:
        """Waits until the channel is ready (once), so an unreachable address fails clearly, and
        a server that speaks the other protocol (TLS or plaintext) fails at once, saying so."""
        if self._connected.is_set():
            return
        ready = grpc.channel_ready_future(self._channel)
        deadline = time.monotonic() + self.connect_timeout
        try:
            while not ready.done():
                remaining = deadline - time.monotonic()
                try:
                    ready.result(timeout=max(0.0, min(PROBE_INTERVAL, remaining)))
                except grpc.FutureTimeoutError:
                    served = served_protocol(self.address, timeout=min(2.0, max(remaining, 0.1)))
                    if served not in (None, self._protocol):
                        raise AuditError(f"cannot connect to the orchestrator at {self.address}: "
                                         f"{_MISMATCH[served]}") from None
                    if remaining <= PROBE_INTERVAL:
                        raise AuditError(f"cannot reach the orchestrator at {self.address} within "
                                         f"{self.connect_timeout:.0f}s{self._last_failure()}") from None
        finally:
            ready.cancel()  # stops its connectivity polling thread
        self._connected.set()

    def _last_failure(self) -> str:
        """Why the channel is not ready (a refused connection, a failed TLS handshake), as
        gRPC saw it on one more attempt: ': <details>', or '' when that attempt succeeds."""
        try:
            health_pb2_grpc.HealthStub(self._channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as error:
            return f": {error.details()}"
        return ""

    def _stream(self, method, request) -> Iterator[orchestrator_pb2.AuditEvent]:
        self._connect()
        call = method(request)
        idle = _IdleDeadline(self.idle_timeout, call.cancel)
        task_id = ""
        try:
            for response in call:
                idle.reset()
                task_id = response.event.task_id or task_id
                yield response.event
        except grpc.RpcError as error:
            if idle.expired:
                watch = f"; it may still be running: privaudit watch {task_id}" if task_id else ""
                raise AuditError(f"no word from the orchestrator at {self.address} for {self.idle_timeout:g} s, "
                                 f"not even a heartbeat: the connection or the orchestrator is gone{watch}") from None
            raise self._error(error) from None
        finally:
            idle.stop()
            call.cancel()  # a consumer that stops early (or the deadline) releases the stream

    def _call(self, method, request):
        self._connect()
        try:
            return method(request, timeout=self.call_timeout)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def _error(self, error: grpc.RpcError) -> Exception:
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return TaskError(problems_from_status(error))
        return AuditError(f"orchestrator {self.address}: {error.code().name}: {error.details()}")


def _typed_report(data: bytes) -> AuditReport | None:
    """The JSON report as the typed model; None for a report of an older schema (an audit an
    older orchestrator stored), which only its text renders."""
    from pydantic import ValidationError

    from privaudit.services.reporter.report_model import AuditReport  # pydantic models: imported when needed

    try:
        return AuditReport.model_validate_json(data)
    except ValidationError:
        return None


class _IdleDeadline:
    """Calls `expire` once `seconds` pass without a reset()."""

    def __init__(self, seconds: float, expire: Callable[[], object]):
        self.seconds, self._expire = seconds, expire
        self.expired = False
        self._timer: threading.Timer | None = None
        self.reset()

    def reset(self) -> None:
        self.stop()
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        self.expired = True
        self._expire()
