"""The Python API: submit an audit to an orchestrator and read what comes back.

    from client import AuditClient
    with AuditClient("localhost:50051") as auditor:
        outcome = auditor.run(Path("example/tasks/mem_inf.yaml"))
    print(outcome.report)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from privaudit.v1 import orchestrator_pb2, orchestrator_pb2_grpc, report_pb2, results_pb2, task_pb2
from services.common.channels import open_channel
from services.common.errors import TaskError, problems_from_status

FORMATS = {"text": report_pb2.REPORT_FORMAT_TEXT, "json": report_pb2.REPORT_FORMAT_JSON}


class AuditError(RuntimeError):
    """The audit could not be run or finished (not a fault of the task)."""


@dataclass
class AuditOutcome:
    """Everything an audit's stream carried, gathered."""

    task_id: str = ""
    attack_names: list[str] = field(default_factory=list)
    results: list[results_pb2.AttackResult] = field(default_factory=list)
    summary: report_pb2.ReportSummary | None = None
    report: str = ""
    done: orchestrator_pb2.AuditDone | None = None


class AuditClient:
    def __init__(self, address: str, connect_timeout: float = 30.0):
        self.address = address
        self.connect_timeout = connect_timeout
        self._channel = open_channel(address)
        self._stub = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel)

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def submit(self, task: str | Path | task_pb2.Task, report_format: str = "text",
               seed: int | None = None) -> Iterator[orchestrator_pb2.AuditEvent]:
        """Submits the task (YAML text, a YAML file's path, or a typed Task) and yields its events.

        Raises TaskError (with the offending fields) when the orchestrator refuses the task,
        AuditError when it cannot be reached or the stream breaks."""
        request = orchestrator_pb2.SubmitAuditRequest(report_format=FORMATS[report_format], seed=seed)
        if isinstance(task, task_pb2.Task):
            request.task.CopyFrom(task)
        else:
            request.task_yaml = task.read_text() if isinstance(task, Path) else task
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.connect_timeout)
        except grpc.FutureTimeoutError:
            raise AuditError(f"cannot reach the orchestrator at {self.address} "
                             f"within {self.connect_timeout:.0f}s") from None
        try:
            for response in self._stub.SubmitAudit(request):
                yield response.event
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise TaskError(problems_from_status(error)) from None
            raise AuditError(f"orchestrator {self.address}: {error.code().name}: {error.details()}") from None

    def run(self, task: str | Path | task_pb2.Task, report_format: str = "text", seed: int | None = None,
            on_event: Callable[[orchestrator_pb2.AuditEvent], None] | None = None) -> AuditOutcome:
        """Runs the audit to the end and returns what it produced."""
        outcome = AuditOutcome()
        report = bytearray()
        for event in self.submit(task, report_format, seed):
            if on_event:
                on_event(event)
            kind = event.WhichOneof("kind")
            if kind == "accepted":
                outcome.task_id = event.task_id
                outcome.attack_names = list(event.accepted.attack_names)
            elif kind == "attack_result":
                outcome.results.append(event.attack_result)
            elif kind == "report_summary":
                outcome.summary = event.report_summary
            elif kind == "report_chunk":
                report += event.report_chunk.data
            elif kind == "done":
                outcome.done = event.done
        if outcome.done is None:
            raise AuditError(f"the orchestrator at {self.address} ended the audit's stream before it was done")
        outcome.results.sort(key=lambda result: result.attack_index)
        outcome.report = report.decode()
        return outcome
