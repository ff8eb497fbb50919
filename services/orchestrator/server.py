"""The OrchestratorService servicer: validates tasks, streams audits, answers about them.

Failures are raised as the typed exceptions of `privaudit.services.common.errors` (a TaskError, a
QueueFull, NotFound, OutOfRange); the server's interceptor turns them into statuses.
"""

from __future__ import annotations

import json

import grpc

from privaudit.services.common import task_spec
from privaudit.services.common.errors import NotFound, OutOfRange, TaskError
from privaudit.services.orchestrator.audit import AuditNotFound, AuditRunner
from privaudit.services.orchestrator.limits import TaskLimits
from privaudit.v1 import orchestrator_pb2, orchestrator_pb2_grpc

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
DEFAULT_PAGE_SIZE = 100
# The major version of the JSON report schema a baseline report must follow (the reporter checks the rest).
BASELINE_SCHEMA_MAJOR = "3"


def parse_task(request: orchestrator_pb2.SubmitAuditRequest, limits: TaskLimits) -> task_spec.TaskSpec:
    """The request's task, validated and within `limits`, whether it came as YAML or typed."""
    seed = request.seed if request.HasField("seed") else None
    source = request.WhichOneof("task_source")
    limits.check_size(request)
    if source == "task_yaml":
        spec = task_spec.parse_yaml(request.task_yaml, seed)
    elif source == "task":
        spec = task_spec.from_proto(request.task, seed)
    else:
        raise TaskError.at("task_source", "set either task_yaml (the task file's text) or task (a typed Task)")
    limits.check(spec)
    return spec


def check_baseline(text: str) -> None:
    """Refuses, before anything runs, a baseline that is not a JSON report of the schema the reporter
    compares with (its fields are the reporter's to check: this service does not load its model)."""
    if not text:
        return
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise TaskError.at("baseline_report_json", f"not JSON ({exc}); give a report that `privaudit run "
                                                   "--format json` wrote") from None
    version = document.get("schema_version") if isinstance(document, dict) else None
    if not isinstance(version, str) or version.partition(".")[0] != BASELINE_SCHEMA_MAJOR:
        raise TaskError.at("baseline_report_json", f"a JSON report of schema {BASELINE_SCHEMA_MAJOR}.x is needed, "
                                                   f"this one has schema_version {version!r}; run the baseline "
                                                   "audit again with this privaudit")


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, runner: AuditRunner, limits: TaskLimits):
        self.runner = runner
        self.limits = limits

    def SubmitAudit(self, request, context: grpc.ServicerContext):
        spec = parse_task(request, self.limits)
        check_baseline(request.baseline_report_json)
        audit = self.runner.start(spec, request.report_format, request.baseline_report_json)
        for event in audit.events.follow(0, keep_going=context.is_active):
            yield orchestrator_pb2.SubmitAuditResponse(event=event)

    def WatchAudit(self, request, context: grpc.ServicerContext):
        events = self._known(request.task_id, self.runner.events)
        if request.from_sequence > len(events):
            raise OutOfRange(f"from_sequence: audit {request.task_id} has {len(events)} events so far; ask for 0 "
                             f"to {len(events)}", "from_sequence")
        for event in events.follow(request.from_sequence, keep_going=context.is_active):
            yield orchestrator_pb2.WatchAuditResponse(event=event)

    def GetAudit(self, request, context: grpc.ServicerContext):
        return orchestrator_pb2.GetAuditResponse(audit=self._known(request.task_id, self.runner.status))

    def ListAudits(self, request, context: grpc.ServicerContext):
        return orchestrator_pb2.ListAuditsResponse(audits=self.runner.list(request.page_size or DEFAULT_PAGE_SIZE))

    def CancelAudit(self, request, context: grpc.ServicerContext):
        return orchestrator_pb2.CancelAuditResponse(audit=self._known(request.task_id, self.runner.cancel))

    def ListAttacks(self, request, context: grpc.ServicerContext):
        return orchestrator_pb2.ListAttacksResponse(attacks=[
            orchestrator_pb2.AttackDescription(
                name=attack["name"], description=attack["description"],
                arguments=[orchestrator_pb2.ArgumentDescription(
                    name=a["name"], type=a["type"], required=a["required"], default_value=a["default"],
                    description=a["description"]) for a in attack["arguments"]])
            for attack in task_spec.describe_attacks()])

    @staticmethod
    def _known(task_id: str, lookup):
        """lookup(task_id), or NotFound naming the id (quoted and cut: an id of any length or
        character still gets an answer that fits a status)."""
        try:
            if not task_spec.TASK_ID.fullmatch(task_id):
                raise AuditNotFound(task_id)
            return lookup(task_id)
        except AuditNotFound:
            raise NotFound(f"task_id: no audit {task_spec.quoted(task_id)} on this orchestrator; `privaudit list` "
                           "shows the known ones", "task_id") from None
