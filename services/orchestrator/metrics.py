"""The orchestrator's Prometheus metrics, served on `--metrics-port` for scrapers and autoscalers.

What is there now (jobs waiting and placed, workers by health, audits by state) is read when
scraped, from what the scheduler, the pool and the store expose. Job durations are measured
by wrapping the progress and result sinks that the scheduler reports to: a job's clock starts
at its first progress that is not STAGE_QUEUED (so a retry, which reports STAGE_QUEUED first,
starts it again) and stops at its result, and the histogram is labelled with the attack, the
part (`whole`, `shadow` or `score`) and how it ended.

Names (all prefixed `privaudit_`): `jobs_waiting` (the queue depth autoscalers scale workers
on), `jobs_running`, `job_duration_seconds`, `workers{state}`, `worker_slots` (free and taken,
on healthy workers), `audits{state}`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from privaudit.services.orchestrator.scheduler import Job, Outcome, ProgressSink, ResultSink
from privaudit.services.orchestrator.store import TaskStore
from privaudit.services.orchestrator.worker_pool import WorkerPool
from privaudit.v1 import attack_worker_pb2, orchestrator_pb2, results_pb2

# Audits counted by state: the newest this many (a scrape reads their status rows).
AUDITS_COUNTED = 10_000
# Job durations from seconds (a small score part) to the default one-hour job limit and past it.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, float("inf"))
# A cancelled job's clock never sees a result: clocks this old are dropped, checked once this many run.
STALE_CLOCK_S = 7 * 86_400
_CLOCKS_BEFORE_PRUNING = 1024
_AUDIT_STATES = [value.name for value in orchestrator_pb2.AuditState.DESCRIPTOR.values if value.number]


def part_of(job: Job) -> str:
    """`shadow`, `score` or `whole`: which part of its attack a job runs."""
    if isinstance(job.part, attack_worker_pb2.ShadowPart):
        return "shadow"
    return "whole" if job.part is None else "score"


def ending_of(outcome: Outcome) -> str:
    """How a job ended, for the duration's `status` label: `succeeded`, `failed`, or for a score
    part that could not find its shadow models' outputs, `shadows_missing`."""
    if isinstance(outcome, attack_worker_pb2.ShadowOutput):
        return "succeeded"
    if isinstance(outcome, results_pb2.AttackResult):
        return results_pb2.AttackStatus.Name(outcome.status).removeprefix("ATTACK_STATUS_").lower()
    return "shadows_missing"


class OrchestratorMetrics(Collector):
    """The metrics of one orchestrator, in a registry of their own. `waiting` gives the jobs
    waiting for a worker (the scheduler's queue depth); it is set once the scheduler exists."""

    def __init__(self, pool: WorkerPool, store: TaskStore):
        self.registry = CollectorRegistry(auto_describe=True)
        self.waiting: Callable[[], int] = lambda: 0
        self._pool = pool
        self._store = store
        self._started: dict[tuple[str, int, str, int], float] = {}  # a job's key -> when its attempt started
        self._lock = threading.Lock()
        self._durations = Histogram(
            "privaudit_job_duration_seconds", "Wall time of a job's last attempt, from its first progress to its "
                                              "result, by attack, part and how it ended",
            ["attack", "part", "status"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.registry.register(self)

    def progress_sink(self, sink: ProgressSink) -> ProgressSink:
        """`sink`, also starting a job's clock at the first progress of each attempt."""
        def measured(job: Job, progress: results_pb2.JobProgress) -> None:
            key = _key(job)
            with self._lock:
                if progress.stage == results_pb2.STAGE_QUEUED:
                    self._started.pop(key, None)
                else:
                    now = time.monotonic()
                    self._started.setdefault(key, now)
                    if len(self._started) > _CLOCKS_BEFORE_PRUNING:
                        self._started = {k: t for k, t in self._started.items() if now - t < STALE_CLOCK_S}
            sink(job, progress)
        return measured

    def result_sink(self, sink: ResultSink) -> ResultSink:
        """`sink`, also observing the job's duration (when its clock ran) by its result."""
        def measured(job: Job, outcome: Outcome) -> None:
            with self._lock:
                started = self._started.pop(_key(job), None)
            if started is not None:
                self._durations.labels(job.attack_name, part_of(job), ending_of(outcome)).observe(
                    time.monotonic() - started)
            sink(job, outcome)
        return measured

    def collect(self) -> Iterator[GaugeMetricFamily]:
        workers = list(self._pool.workers.values())
        yield GaugeMetricFamily("privaudit_jobs_waiting", "Jobs waiting for a free worker slot (the queue depth)",
                                value=self.waiting())
        yield GaugeMetricFamily("privaudit_jobs_running", "Jobs placed on a worker and not yet answered",
                                value=sum(worker.in_flight for worker in workers))
        states = GaugeMetricFamily("privaudit_workers", "Workers known to the orchestrator, by health: healthy, "
                                   "not_serving (answers but takes no jobs) or unreachable", labels=["state"])
        for state in ("healthy", "not_serving", "unreachable"):
            states.add_metric([state], sum(_health(worker) == state for worker in workers))
        yield states
        slots = GaugeMetricFamily("privaudit_worker_slots", "Job slots of healthy workers, free or taken",
                                  labels=["use"])
        healthy = [worker for worker in workers if worker.healthy]
        taken = sum(min(worker.in_flight, worker.slots) for worker in healthy)
        slots.add_metric(["taken"], taken)
        slots.add_metric(["free"], sum(worker.slots for worker in healthy) - taken)
        yield slots
        audits = GaugeMetricFamily("privaudit_audits", f"Audits by state (of the newest {AUDITS_COUNTED:,})",
                                   labels=["state"])
        counts = dict.fromkeys(_AUDIT_STATES, 0)
        for status in self._store.statuses(AUDITS_COUNTED):
            name = orchestrator_pb2.AuditState.Name(status.state)
            if name in counts:
                counts[name] += 1
        for name, count in counts.items():
            audits.add_metric([name.removeprefix("AUDIT_STATE_").lower()], count)
        yield audits

    def serve(self, port: int, address: str = "0.0.0.0") -> WSGIServer:
        """Serves the metrics over HTTP at `address:port` (`/metrics`) on a daemon thread."""
        server, _ = start_http_server(port, address, registry=self.registry)
        return server


def _key(job: Job) -> tuple[str, int, str, int]:
    part = part_of(job)
    return job.task_id, job.attack_index, part, job.part.shadow_index if part == "shadow" else -1


def _health(worker) -> str:
    if worker.healthy:
        return "healthy"
    return "unreachable" if worker.unanswered_probes else "not_serving"
