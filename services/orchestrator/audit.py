"""One audit from acceptance to the `done` event: jobs in parallel, then the report."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import grpc

from privaudit.v1 import orchestrator_pb2, report_pb2, reporter_pb2, reporter_pb2_grpc, results_pb2
from services.common import task_spec
from services.orchestrator.event_log import EventLog
from services.orchestrator.jobs import Job, JobSettings, run_job
from services.orchestrator.worker_pool import WorkerPool

log = logging.getLogger(__name__)


@dataclass
class Audit:
    task_id: str
    spec: task_spec.TaskSpec
    report_format: int
    events: EventLog
    results: list[results_pb2.AttackResult] = field(default_factory=list)


@dataclass
class AuditRunner:
    """Starts audits and keeps the most recent ones so their streams can be read."""

    pool: WorkerPool
    reporter: reporter_pb2_grpc.ReporterServiceStub
    settings: JobSettings
    report_timeout: float = 300.0
    keep_finished: int = 100
    _audits: OrderedDict[str, Audit] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, spec: task_spec.TaskSpec, report_format: int) -> Audit:
        task_id = uuid.uuid4().hex[:12]
        audit = Audit(task_id, spec, report_format, EventLog(task_id))
        names = [attack.name for attack in spec.attacks]
        audit.events.append(accepted=orchestrator_pb2.AuditAccepted(attack_names=names, seed=spec.seed))
        for index in range(len(names)):
            audit.events.append(progress=results_pb2.JobProgress(attack_index=index, stage=results_pb2.STAGE_QUEUED))
        with self._lock:
            self._audits[task_id] = audit
            self._forget_old()
        threading.Thread(target=self._run, args=(audit,), name=f"audit-{task_id}", daemon=True).start()
        log.info("audit accepted task=%s attacks=%s seed=%d", task_id, ",".join(names), spec.seed)
        return audit

    def _forget_old(self) -> None:
        finished = [tid for tid, a in self._audits.items() if a.events.finished]
        for task_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._audits[task_id]

    def _run(self, audit: Audit) -> None:
        jobs = [
            Job(audit.task_id, index, attack.name, task_spec.attack_to_proto(attack), audit.spec.seed)
            for index, attack in enumerate(audit.spec.attacks)
        ]
        results: dict[int, results_pb2.AttackResult] = {}
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix=f"jobs-{audit.task_id}") as executor:
            running = [executor.submit(run_job, job, self.pool, audit.events, self.settings) for job in jobs]
            for finished in as_completed(running):
                result = finished.result()
                results[result.attack_index] = result
                audit.events.append(attack_result=result)
        audit.results = [results[index] for index in range(len(jobs))]
        done = orchestrator_pb2.AuditDone(
            succeeded_attacks=sum(r.status == results_pb2.ATTACK_STATUS_SUCCEEDED for r in audit.results),
            failed_attacks=sum(r.status == results_pb2.ATTACK_STATUS_FAILED for r in audit.results),
        )
        try:
            self._report(audit, done)
        except grpc.RpcError as error:
            done.error = f"the report could not be built: reporter {error.code().name}: {error.details()}"
            log.error("audit task=%s: %s", audit.task_id, done.error)
        audit.events.append(done=done)
        log.info("audit done task=%s succeeded=%d failed=%d risk=%s", audit.task_id, done.succeeded_attacks,
                 done.failed_attacks, report_pb2.RiskLevel.Name(done.overall_risk))

    def _report(self, audit: Audit, done: orchestrator_pb2.AuditDone) -> None:
        request = reporter_pb2.BuildReportRequest(
            task_id=audit.task_id, results=audit.results, format=audit.report_format
        )
        for part in self.reporter.BuildReport(request, timeout=self.report_timeout):
            if part.HasField("summary"):
                done.overall_risk = part.summary.overall_risk
                audit.events.append(report_summary=part.summary)
            else:
                audit.events.append(report_chunk=part.chunk)
