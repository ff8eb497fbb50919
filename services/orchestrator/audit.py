"""Audits from acceptance to the `done` event: jobs through the scheduler, then the report.

Every audit's state lives in its event stream (see store.py). The runner keeps
in memory only what its live audits need: their streams, which attacks are still
out and which shadow models are stored. An audit's lock orders its events and
guards those decisions; nothing under it waits for the disk: writes are queued
under the lock and waited for after it. On start the runner picks up the audits
an earlier orchestrator left unfinished: attacks without a result are queued
again, finished ones are kept.

An attack trained on many shadow models (LIRA, RMIA) runs as one job per shadow
model, spread over the workers, then a score job that receives all their
outputs: references to entries of the workers' cache folders (shared, or relayed
through the orchestrator's entries folder by the scheduler, which this runner
empties of an audit's entries when it ends), or the outputs inline.
Finished shadow models are stored, so a restart trains only the missing ones. A
score job that does not find referenced outputs as described answers which
shadow models are missing: they are forgotten and trained again, then it scores
again; after MAX_MISSING_ROUNDS such rounds the attack fails, since the workers
then do not share their cache folder.

When the reporter cannot be reached, the report is asked for again with growing
pauses (up to REPORT_RETRY_MAX_PAUSE) for `report_wait` seconds: the stream says
so in a notice at once, and the report follows as soon as the reporter is back.
Only after `report_wait` does the audit end with an error naming the reporter.
The reporter renders the report in the format asked for and in JSON (the client's typed report),
with the audit's provenance, compared with the baseline report the audit was submitted with.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from privaudit.services.common import task_spec
from privaudit.services.common.errors import INFRASTRUCTURE, Failure, from_rpc_error
from privaudit.services.orchestrator.event_log import EventLog
from privaudit.services.orchestrator.scheduler import Job, Outcome, ProgressSink, ResultSink, Scheduler, failed_result
from privaudit.services.orchestrator.store import StoredTask, TaskStore
from privaudit.v1 import (
    attack_worker_pb2,
    orchestrator_pb2,
    report_pb2,
    reporter_pb2,
    reporter_pb2_grpc,
    results_pb2,
    task_pb2,
)

log = logging.getLogger(__name__)

REPORT_RETRY_FIRST_PAUSE = 0.5  # seconds; doubled after each failed try
REPORT_RETRY_MAX_PAUSE = 15.0
MAX_MISSING_ROUNDS = 2  # times an attack's shadow models are trained again for a score job that missed them

# Makes the runner's scheduler, given where the jobs' progress and results go.
SchedulerFactory = Callable[[ProgressSink, ResultSink], Scheduler]


class AuditNotFound(LookupError):
    pass


class _NoReport(Exception):
    """The reporter did not build the report; the message says why, for the `done` event."""


@dataclass
class LiveAudit:
    """A running audit. Its lock guards the fields below and the order of its events: holders
    decide and queue writes under it, and wait for them after releasing it."""

    task_id: str
    task: task_pb2.Task
    report_format: int
    events: EventLog
    outstanding: set[int]  # attacks without a result
    shadows: dict[int, set[int]]  # shadow-model attack -> its shadow models stored or being stored
    baseline_report_json: str = ""  # the report to compare the audit's with; empty: none
    missing_rounds: dict[int, int] = field(default_factory=dict)  # attack -> shadow models retrained for a score
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def open(self) -> bool:
        """Still taking events: neither cancelled nor done."""
        return not self.cancelled and not self.events.finished


class AuditRunner:
    def __init__(self, store: TaskStore, make_scheduler: SchedulerFactory,
                 reporter: reporter_pb2_grpc.ReporterServiceStub, report_timeout: float = 300.0,
                 report_wait: float = 600.0, reporter_address: str = "the reporter"):
        self.store = store
        self.scheduler = make_scheduler(self._on_progress, self._on_result)
        self.reporter = reporter
        self.report_timeout = report_timeout  # one BuildReport call
        self.report_wait = report_wait  # how long an unreachable reporter is waited for
        self.reporter_address = reporter_address
        self._live: dict[str, LiveAudit] = {}  # an audit leaves once its `done` is stored
        self._admission = threading.Lock()  # one task at a time checks the queue's room and enters it

    # ---------------------------------------------------------------- lifecycle

    def start(self, spec: task_spec.TaskSpec, report_format: int, baseline_report_json: str = "") -> LiveAudit:
        """Accepts a validated task (and the report to compare its report with): stores it, streams
        `accepted`, queues its jobs. Raises QueueFull when the queue has no room for its attacks."""
        task = task_spec.to_proto(spec)
        task_id = uuid.uuid4().hex[:12]
        attacks = set(range(len(task.attacks)))
        jobs = self._jobs(task_id, task, attacks, shadows={})
        names = [attack.name for attack in spec.attacks]
        audit = LiveAudit(task_id, task, report_format, EventLog(self.store, task_id), attacks, shadows={},
                          baseline_report_json=baseline_report_json)
        with self._admission:
            self.scheduler.check_room(len(jobs))
            stored = audit.events.queue_task(
                task, report_format,
                [{"accepted": orchestrator_pb2.AuditAccepted(attack_names=names, seed=task.seed)}]
                + [{"progress": results_pb2.JobProgress(attack_index=i, stage=results_pb2.STAGE_QUEUED)}
                   for i in range(len(names))], baseline_report_json)
            self._live[task_id] = audit
            self.scheduler.submit(jobs)
        try:
            stored.wait()
        except Exception:
            self._live.pop(task_id, None)
            self.scheduler.cancel(task_id)
            raise
        log.info("audit accepted task=%s attacks=%s seed=%d", task_id, ",".join(names), task.seed)
        return audit

    def recover(self) -> None:
        """Resumes the audits a previous orchestrator left unfinished."""
        unfinished = self.store.unfinished()
        if self.scheduler.entries is not None:
            self.scheduler.entries.keep_tasks({stored.task_id for stored in unfinished})
        for stored in unfinished:
            self._resume(stored)

    def cancel(self, task_id: str) -> orchestrator_pb2.AuditStatus:
        audit = self._live.get(task_id)
        if audit is not None:
            with audit.lock:
                stored = None
                if audit.open:
                    audit.cancelled = True
                    stored = audit.events.queue([{"done": _done(cancelled=True)}])
            if stored is not None:
                self.scheduler.cancel(task_id)
                stored.wait()
                self._ended(task_id)
                log.info("audit cancelled task=%s", task_id)
        return self.status(task_id)

    def events(self, task_id: str) -> EventLog:
        """The stream of a live or finished audit."""
        audit = self._live.get(task_id)
        if audit is not None:
            return audit.events
        if self.store.status(task_id, with_results=False) is None:
            raise AuditNotFound(task_id)
        return EventLog(self.store, task_id)

    def status(self, task_id: str, with_results: bool = True) -> orchestrator_pb2.AuditStatus:
        status = self.store.status(task_id, with_results)
        if status is None:
            raise AuditNotFound(task_id)
        return status

    def list(self, limit: int) -> list[orchestrator_pb2.AuditStatus]:
        return self.store.statuses(limit)

    # ---------------------------------------------------------------- internals

    def _jobs(self, task_id: str, task: task_pb2.Task, attacks: set[int], shadows: dict[int, set[int]]) -> list[Job]:
        """The jobs still to run for these attacks: one per attack, or for a shadow-model attack
        one per shadow model not in `shadows`, or once all are, its score job (with the stored
        shadow models)."""
        jobs = []
        for index in sorted(attacks):
            spec = task.attacks[index]
            args = task_spec.attack_from_proto(spec)
            seed = task.seed if getattr(args, "seed", None) is None else args.seed
            job = Job(task_id, index, args.name, spec, seed)
            if not getattr(args, "shadow_parts", False):
                jobs.append(job)
                continue
            missing = sorted(set(range(args.num_shadow)) - shadows.get(index, set()))
            jobs += ([replace(job, part=attack_worker_pb2.ShadowPart(shadow_index=k)) for k in missing]
                     or [replace(job, part=attack_worker_pb2.ScorePart(shadows=self.store.shadows(task_id, index)))])
        return jobs

    def _resume(self, stored: StoredTask) -> None:
        finished = {result.attack_index for result in self.store.results(stored.task_id)}
        outstanding = set(range(len(stored.task.attacks))) - finished
        shadows = self.store.shadow_indices(stored.task_id)
        audit = LiveAudit(stored.task_id, stored.task, stored.report_format, EventLog(self.store, stored.task_id),
                          outstanding, shadows, stored.baseline_report_json)
        self._live[audit.task_id] = audit
        log.info("audit resumed task=%s: %d attack(s) finished, %d queued again", stored.task_id,
                 len(finished), len(outstanding))
        if not outstanding:
            self._report_in_background(audit)
            return
        audit.events.extend([{"progress": results_pb2.JobProgress(
            attack_index=i, stage=results_pb2.STAGE_QUEUED,
            message="queued again after an orchestrator restart")} for i in sorted(outstanding)])
        self.scheduler.submit(self._jobs(audit.task_id, audit.task, outstanding, shadows))

    def _ended(self, task_id: str) -> None:
        """An audit's `done` is stored: it leaves the live audits, its relayed entries go."""
        self._live.pop(task_id, None)
        if self.scheduler.entries is not None:
            self.scheduler.entries.forget_task(task_id)

    def _on_progress(self, job: Job, progress: results_pb2.JobProgress) -> None:
        audit = self._live.get(job.task_id)
        if audit is None:
            return
        with audit.lock:
            if not audit.open:
                return
            stored = audit.events.queue([{"progress": progress}])
        stored.wait()

    def _on_result(self, job: Job, outcome: Outcome) -> None:
        audit = self._live.get(job.task_id)
        if audit is None:
            return
        if isinstance(outcome, attack_worker_pb2.ShadowOutput):
            self._on_shadow(audit, job, outcome)
            return
        if isinstance(outcome, attack_worker_pb2.ShadowsMissing):
            self._on_missing(audit, job, outcome)
            return
        with audit.lock:
            if not audit.open or job.attack_index not in audit.outstanding:
                return  # e.g. a shadow model failing after its attack failed
            if isinstance(job.part, attack_worker_pb2.ShadowPart):
                # One shadow model failed: so does the attack; its other shadow jobs are moot.
                self.scheduler.drop(job.task_id, job.attack_index)
                outcome.error.message = f"shadow model {job.part.shadow_index}: {outcome.error.message}"
            stored = audit.events.queue([{"attack_result": outcome}])
            audit.outstanding.discard(job.attack_index)
            complete = not audit.outstanding
        stored.wait()
        if complete:
            self._report_in_background(audit)

    def _on_shadow(self, audit: LiveAudit, job: Job, output: attack_worker_pb2.ShadowOutput) -> None:
        """Stores a shadow model; the one that completes its attack's set queues the score job,
        once every shadow model is stored (the store writes in the order writes were queued)."""
        with audit.lock:
            if not audit.open or job.attack_index not in audit.outstanding:
                return
            known = audit.shadows.setdefault(job.attack_index, set())
            last = output.shadow_index not in known and len(known) + 1 == task_spec.attack_from_proto(
                job.spec).num_shadow
            known.add(output.shadow_index)
            saved = self.store.save_shadow(job.task_id, job.attack_index, output)
        try:
            saved.wait()
        except Exception:
            with audit.lock:
                known.discard(output.shadow_index)  # trained again after a restart
            raise
        if last:
            score = self._jobs(audit.task_id, audit.task, {job.attack_index}, audit.shadows)
            with audit.lock:
                if audit.open and job.attack_index in audit.outstanding:
                    self.scheduler.submit(score)

    def _on_missing(self, audit: LiveAudit, job: Job, missing: attack_worker_pb2.ShadowsMissing) -> None:
        """A score job did not find some shadow models' outputs: they are forgotten and their
        shadow parts queued again (the last to be stored queues the score job again), or, when
        that was done MAX_MISSING_ROUNDS times for the attack already, the attack fails."""
        num_shadow = task_spec.attack_from_proto(job.spec).num_shadow
        indices = sorted({index for index in missing.shadow_index if index < num_shadow})
        retrain, complete = False, False
        with audit.lock:
            if not audit.open or job.attack_index not in audit.outstanding:
                return
            rounds = audit.missing_rounds.get(job.attack_index, 0)
            if rounds >= MAX_MISSING_ROUNDS or not indices:
                failure = Failure(
                    f"the score job did not find the outputs of shadow models {_listed(indices)} in its worker's "
                    f"cache folder ({missing.reason}) after they were trained again {rounds} times: the workers "
                    "seem not to share a cache folder. Give every worker the same --cache-dir "
                    "(PRIVAUDIT_CACHE_DIR) with --cache-shared, or turn --cache-shared off on every worker",
                    fault=INFRASTRUCTURE, retryable=False) if indices else Failure(
                    f"the score job missed shadow models {list(missing.shadow_index)}, none of the attack's "
                    f"{num_shadow}: {missing.reason}")
                result = failed_result(job, failure)
                stored = audit.events.queue([{"attack_result": result}])
                audit.outstanding.discard(job.attack_index)
                complete = not audit.outstanding
            else:
                retrain = True
                audit.missing_rounds[job.attack_index] = rounds + 1
                audit.shadows.get(job.attack_index, set()).difference_update(indices)
                forgotten = self.store.forget_shadows(job.task_id, job.attack_index, indices)
                stored = audit.events.queue([{"progress": results_pb2.JobProgress(
                    attack_index=job.attack_index, stage=results_pb2.STAGE_QUEUED,
                    message=f"training shadow models {_listed(indices)} again (round {rounds + 1} of at most "
                            f"{MAX_MISSING_ROUNDS}): the score job did not find their outputs as stored: "
                            f"{missing.reason}")}])
        stored.wait()
        if complete:
            self._report_in_background(audit)
        if not retrain:
            return
        forgotten.wait()
        log.warning("task=%s attack=%d: shadow models %s missing for the score job (%s); training them again",
                    job.task_id, job.attack_index, _listed(indices), missing.reason)
        with audit.lock:
            if audit.open and job.attack_index in audit.outstanding:
                self.scheduler.submit([replace(job, part=attack_worker_pb2.ShadowPart(shadow_index=k), attempts=0,
                                               tried=set()) for k in indices])

    def _report_in_background(self, audit: LiveAudit) -> None:
        threading.Thread(target=self._report, args=(audit,), name=f"report-{audit.task_id}", daemon=True).start()

    def _report(self, audit: LiveAudit) -> None:
        """Has the reporter rate and render the results, then ends the stream: summary, every
        chunk and `done` in one transaction, so a restart never sees half a report."""
        results = sorted(self.store.results(audit.task_id), key=lambda r: r.attack_index)
        request = reporter_pb2.BuildReportRequest(
            task_id=audit.task_id, results=results, format=audit.report_format,
            also_formats=[report_pb2.REPORT_FORMAT_JSON], baseline_report_json=audit.baseline_report_json,
            provenance=report_pb2.ReportProvenance(seed=audit.task.seed, task_digest=task_digest(audit.task),
                                                   generated_at=_now()))
        done = _done(results)
        try:
            parts = self._report_parts(audit, request)
        except _NoReport as failure:
            parts, done.error = [], f"the report could not be built: {failure}"
            log.error("audit task=%s: %s", audit.task_id, done.error)
        for part in parts:
            if "report_summary" in part:
                done.overall_risk = part["report_summary"].overall_risk
        with audit.lock:
            if not audit.open:
                return
            stored = audit.events.queue([*parts, {"done": done}])
        stored.wait()
        self._ended(audit.task_id)
        log.info("audit done task=%s succeeded=%d failed=%d risk=%s", audit.task_id, done.succeeded_attacks,
                 done.failed_attacks, report_pb2.RiskLevel.Name(done.overall_risk))

    def _report_parts(self, audit: LiveAudit, request: reporter_pb2.BuildReportRequest) -> list[dict]:
        """The report's events, from BuildReport tried again while its failure is retryable (the
        reporter is away, its stream broke, its answer took too long): for up to `report_wait`
        seconds, a notice on the stream when it first fails. _NoReport when it fails otherwise
        (the reporter refused or broke), or when the wait is over."""
        pause, gave_notice = REPORT_RETRY_FIRST_PAUSE, False
        started = time.monotonic()
        while True:
            try:
                return [{"report_summary": part.summary} if part.HasField("summary") else {"report_chunk": part.chunk}
                        for part in self.reporter.BuildReport(request, timeout=self.report_timeout)]
            except grpc.RpcError as error:
                failure = from_rpc_error(error, "reporter ")
                if not failure.retryable:
                    raise _NoReport(failure.message) from None
                waited = time.monotonic() - started
                if waited + pause > self.report_wait:
                    raise _NoReport(f"{failure.message}; {self.reporter_address} still unavailable after "
                                    f"{waited:.0f} s of retries (the orchestrator waits up to {self.report_wait:g} s)"
                                    ) from None
                if audit.cancelled:
                    raise _NoReport("the audit was cancelled while the reporter was unavailable") from None
                if not gave_notice:
                    self._notice(audit, f"waiting for the reporter at {self.reporter_address}: unavailable since "
                                        f"{time.strftime('%H:%M:%S UTC', time.gmtime())} ({error.details()}); "
                                        f"retrying for up to {self.report_wait:g} s, the report follows as soon "
                                        "as it answers")
                    gave_notice = True
                time.sleep(pause)
                pause = min(2 * pause, REPORT_RETRY_MAX_PAUSE)

    def _notice(self, audit: LiveAudit, message: str) -> None:
        """Tells the audit's stream (and the log) what the audit is waiting on."""
        log.warning("audit task=%s: %s", audit.task_id, message)
        with audit.lock:
            if not audit.open:
                return
            stored = audit.events.queue([{"notice": orchestrator_pb2.AuditNotice(message=message)}])
        stored.wait()


def task_digest(task: task_pb2.Task) -> str:
    """SHA-256 (hex) of the task as run (defaults filled in, seed included), serialised deterministically."""
    return hashlib.sha256(task.SerializeToString(deterministic=True)).hexdigest()


def _now() -> Timestamp:
    now = Timestamp()
    now.GetCurrentTime()
    return now


def _done(results: Sequence[results_pb2.AttackResult] = (), cancelled: bool = False) -> orchestrator_pb2.AuditDone:
    return orchestrator_pb2.AuditDone(
        succeeded_attacks=sum(r.status == results_pb2.ATTACK_STATUS_SUCCEEDED for r in results),
        failed_attacks=sum(r.status == results_pb2.ATTACK_STATUS_FAILED for r in results),
        cancelled=cancelled,
    )


def _listed(indices: list[int]) -> str:
    """E.g. `1, 4 and 7`."""
    words = [str(index) for index in indices]
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)
