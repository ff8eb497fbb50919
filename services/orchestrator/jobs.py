"""Running one attack job on the worker pool, retrying it elsewhere when a worker fails.

A job whose worker answered with a result is done, even a failed result: that
failure is in the task (a bad model file, say) and would happen again. A job
whose worker vanished (killed, unreachable, out of time) is retried on another
worker, up to `max_attempts` in all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import grpc

from privaudit.v1 import attack_worker_pb2, results_pb2, task_pb2
from services.orchestrator.event_log import EventLog
from services.orchestrator.worker_pool import WorkerPool

log = logging.getLogger(__name__)

# Codes meaning "the job did not run to an answer on that worker", not "the job is wrong".
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


@dataclass(frozen=True)
class JobSettings:
    max_attempts: int = 3
    attempt_timeout: float = 3600.0  # seconds one worker may take for one job


@dataclass(frozen=True)
class Job:
    task_id: str
    attack_index: int
    attack_name: str
    spec: task_pb2.AttackSpec
    seed: int


def run_job(job: Job, pool: WorkerPool, events: EventLog, settings: JobSettings) -> results_pb2.AttackResult:
    """Runs the job to a result, forwarding the worker's progress into `events`."""
    request = attack_worker_pb2.RunAttackRequest(
        task_id=job.task_id, attack_index=job.attack_index, attack=job.spec, seed=job.seed
    )
    tried: set[str] = set()
    failure = "no attempt was made"
    for attempt in range(1, settings.max_attempts + 1):
        with pool.lease(avoid=tried) as worker:
            tried.add(worker.address)
            started = time.monotonic()
            log.info("job start task=%s attack=%d %s worker=%s attempt=%d", job.task_id, job.attack_index,
                     job.attack_name, worker.address, attempt)
            try:
                for response in worker.stub.RunAttack(request, timeout=settings.attempt_timeout):
                    if response.HasField("result"):
                        log.info("job finish task=%s attack=%d %s worker=%s status=%s seconds=%.1f",
                                 job.task_id, job.attack_index, job.attack_name, worker.address,
                                 results_pb2.AttackStatus.Name(response.result.status),
                                 time.monotonic() - started)
                        return response.result
                    events.append(progress=response.progress)
                failure = f"worker {worker.address} ended the job without a result"
            except grpc.RpcError as error:
                failure = f"worker {worker.address}: {error.code().name}: {error.details()}"
                if error.code() not in RETRYABLE:
                    log.warning("job failed task=%s attack=%d: %s", job.task_id, job.attack_index, failure)
                    return failed_result(job, error.code().name, failure)
        log.warning("job attempt %d/%d failed task=%s attack=%d: %s", attempt, settings.max_attempts,
                    job.task_id, job.attack_index, failure)
        if attempt < settings.max_attempts:
            events.append(progress=results_pb2.JobProgress(
                attack_index=job.attack_index, stage=results_pb2.STAGE_QUEUED,
                message=f"retrying on another worker after: {failure}"))
    return failed_result(job, "UNAVAILABLE", f"gave up after {settings.max_attempts} attempts; last: {failure}")


def failed_result(job: Job, code: str, message: str) -> results_pb2.AttackResult:
    return results_pb2.AttackResult(
        attack_index=job.attack_index,
        attack_name=job.attack_name,
        status=results_pb2.ATTACK_STATUS_FAILED,
        error=results_pb2.AttackError(code=code, message=message),
    )
