"""The OrchestratorService servicer: validates tasks and streams audits."""

from __future__ import annotations

import grpc

from privaudit.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from services.common import task_spec
from services.common.errors import TaskError
from services.orchestrator.audit import AuditRunner

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


def parse_task(request: orchestrator_pb2.SubmitAuditRequest) -> task_spec.TaskSpec:
    """The request's task, validated, whether it came as YAML or typed."""
    seed = request.seed if request.HasField("seed") else None
    source = request.WhichOneof("task_source")
    if source == "task_yaml":
        return task_spec.parse_yaml(request.task_yaml, seed)
    if source == "task":
        return task_spec.from_proto(request.task, seed)
    raise TaskError.at("task_source", "set either task_yaml (the task file's text) or task (a typed Task)")


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, runner: AuditRunner):
        self.runner = runner

    def SubmitAudit(self, request, context: grpc.ServicerContext):
        try:
            spec = parse_task(request)
        except TaskError as error:
            context.abort_with_status(error.to_status())
        audit = self.runner.start(spec, request.report_format)
        for event in audit.events.follow(0, keep_going=context.is_active):
            yield orchestrator_pb2.SubmitAuditResponse(event=event)
