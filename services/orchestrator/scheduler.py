"""The job queue: bounded, fair between tasks, placing each job on a free worker and
retrying it elsewhere when its failure says a retry can help.

Jobs wait in one queue per task; the dispatcher takes tasks in turn (round
robin), so a task with many jobs does not starve the others. Whether a job ends
or runs again is the failure's classification (`privaudit.services.common.errors`), never
a list of codes here: a result, even a failed one, is final unless its error is
`retryable` (the kernel's out-of-memory killer, say); an RPC that ends without a
result (the worker died, was lost, or passed its deadline) is classified by its
status. A task fault (a job past its worker's own time limit, too) or a bug of
ours fails the attack at once, on one worker only. A retryable failure sends
the job back to the front of its task's queue, to a worker it has not tried
when one is free, up to `max_attempts` in all; every retry says (in progress
messages starting `retrying:`) why, which worker it runs on and whether that is
the one that failed.

Shadow parts stream their stored entries' bytes to the orchestrator and score jobs get them
uploaded first, when the scheduler relays entries (`entry_relay`: for workers that share no
cache folder; workers that do stream nothing and need no upload).

An attempt's deadline is its worker's own job limit, which the worker advertises
through GetCapacity, plus a margin (`JobSettings.attempt_deadline`): a job that
runs too long is failed by the worker, as the task's fault with the flag and
value that limited it, before the orchestrator would give up on the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc

from privaudit.services.common.errors import (
    INFRASTRUCTURE,
    DeadlineExceeded,
    Failure,
    Overloaded,
    Unavailable,
    from_attack_error,
    from_rpc_error,
)
from privaudit.services.orchestrator.entry_relay import EntryRelay
from privaudit.services.orchestrator.worker_pool import Worker, WorkerPool
from privaudit.v1 import attack_worker_pb2, results_pb2, task_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSettings:
    """`assumed_job_limit`: the job time limit (s) of a worker that does not advertise its own
    (one older than GetCapacity's `job_timeout_s`). An attempt may run its worker's job limit
    plus `deadline_margin` seconds plus `deadline_margin_fraction` of the limit (the child's
    start, the kill's reaping, a large result's transfer) before the orchestrator gives up."""

    max_attempts: int = 3
    assumed_job_limit: float = 3600.0
    queue_limit: int = 1000  # jobs waiting for a worker, over all tasks
    deadline_margin: float = 60.0
    deadline_margin_fraction: float = 0.1

    def job_limit(self, worker: Worker) -> float:
        """The worker's job time limit, as it advertises it (or as assumed)."""
        return worker.job_timeout_s or self.assumed_job_limit

    def attempt_deadline(self, worker: Worker) -> float:
        """Seconds to wait for a job's answer from `worker`."""
        limit = self.job_limit(worker)
        return limit + self.deadline_margin + self.deadline_margin_fraction * limit


@dataclass
class Job:
    task_id: str
    attack_index: int
    attack_name: str
    spec: task_pb2.AttackSpec
    seed: int
    part: attack_worker_pb2.ShadowPart | attack_worker_pb2.ScorePart | None = None  # None: the whole attack
    attempts: int = 0
    tried: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        """E.g. `task=ab12 attack=1 LIRA shadow=3`, for logs."""
        part = (f" shadow={self.part.shadow_index}" if isinstance(self.part, attack_worker_pb2.ShadowPart)
                else " score" if self.part is not None else "")
        return f"task={self.task_id} attack={self.attack_index} {self.attack_name}{part}"

    def request(self) -> attack_worker_pb2.RunAttackRequest:
        request = attack_worker_pb2.RunAttackRequest(task_id=self.task_id, attack_index=self.attack_index,
                                                     attack=self.spec, seed=self.seed)
        if isinstance(self.part, attack_worker_pb2.ShadowPart):
            request.shadow.CopyFrom(self.part)
        elif self.part is not None:
            request.score.CopyFrom(self.part)
        return request


@dataclass
class Attempt:
    """A job running on a worker; `abandoned` says why it was given up, when it was."""

    job: Job
    worker: Worker
    abandoned: Failure | None = None


class QueueFull(Overloaded):
    """The queue cannot take a task's jobs now."""


# A job's answer: its result, for a shadow part the shadow model's outputs, or for a score part
# the shadow outputs it could not find.
Outcome = results_pb2.AttackResult | attack_worker_pb2.ShadowOutput | attack_worker_pb2.ShadowsMissing
ProgressSink = Callable[[Job, results_pb2.JobProgress], None]
ResultSink = Callable[[Job, Outcome], None]


class Scheduler:
    """Runs queued jobs on the pool. Their progress and results go to `on_progress` and
    `on_result` (the audit runner's); results are final (retries are internal). `entries`
    relays shadow entries between workers (None: shadow outputs come inline or by reference to
    a shared folder, as the workers decide)."""

    def __init__(self, pool: WorkerPool, settings: JobSettings, on_progress: ProgressSink, on_result: ResultSink,
                 entries: EntryRelay | None = None):
        self.pool = pool
        self.entries = entries
        self.settings = settings
        self.on_progress = on_progress
        self.on_result = on_result
        self._changed = threading.Condition()
        self._waiting: OrderedDict[str, deque[Job]] = OrderedDict()  # task id -> its queue, in turn order
        self._running: dict[grpc.Future, Attempt] = {}  # each running RunAttack call and its attempt
        self._cancelled: set[str] = set()
        self._stopping = False
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="dispatcher", daemon=True)
        pool.on_change = self.wake
        pool.on_lost = self.abandon

    def start(self) -> None:
        self._dispatcher.start()

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    @property
    def waiting(self) -> int:
        with self._changed:
            return sum(len(queue) for queue in self._waiting.values())

    def check_room(self, jobs: int) -> None:
        """Raises QueueFull when `jobs` more would not fit."""
        waiting = self.waiting
        if waiting + jobs > self.settings.queue_limit:
            raise QueueFull(f"the job queue holds {waiting} of {self.settings.queue_limit} jobs and this task adds "
                            f"{jobs}; try again when running audits have finished")

    def submit(self, jobs: list[Job]) -> None:
        """Queues jobs (callers check room first; re-queued jobs after a restart skip the bound)."""
        with self._changed:
            for job in jobs:
                self._waiting.setdefault(job.task_id, deque()).append(job)
            self._changed.notify_all()

    def cancel(self, task_id: str) -> None:
        """Drops the task's waiting jobs and cancels its running calls; no result follows for them."""
        with self._changed:
            self._cancelled.add(task_id)
            self._waiting.pop(task_id, None)
            calls = [call for call, attempt in self._running.items() if attempt.job.task_id == task_id]
        for call in calls:
            call.cancel()

    def drop(self, task_id: str, attack_index: int) -> None:
        """Drops the waiting jobs of one attack (e.g. its other shadow models once one failed)."""
        with self._changed:
            queue = self._waiting.get(task_id)
            if queue:
                kept = deque(job for job in queue if job.attack_index != attack_index)
                if kept:
                    self._waiting[task_id] = kept
                else:
                    del self._waiting[task_id]

    def abandon(self, worker: Worker, reason: str) -> None:
        """Gives up on the jobs running on a worker that stopped answering probes (its link may
        be cut, so their calls might otherwise hang until keepalive or the deadline): they are
        cancelled here and retried elsewhere."""
        with self._changed:
            running = [(call, attempt) for call, attempt in self._running.items() if attempt.worker is worker]
            for _, attempt in running:
                attempt.abandoned = Unavailable(reason)
        for call, _ in running:
            call.cancel()

    def stop(self) -> None:
        """Stops dispatching and cancels running calls; their jobs stay unfinished (and so are
        queued again when a new orchestrator starts on the same state)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            calls = list(self._running)
        for call in calls:
            call.cancel()

    # ---------------------------------------------------------------- dispatching

    def _dispatch_loop(self) -> None:
        while True:
            with self._changed:
                placed = self._place_next()
                if self._stopping:
                    return
                if placed is None:
                    self._changed.wait(1.0)
                    continue
            job, worker = placed
            threading.Thread(target=self._attempt, args=(job, worker), daemon=True,
                             name=f"job-{job.task_id}-{job.attack_index}").start()

    def _place_next(self) -> tuple[Job, Worker] | None:
        """The next task in turn whose first job has a free worker (called with the lock held)."""
        for task_id in list(self._waiting):
            queue = self._waiting[task_id]
            worker = self.pool.pick(avoid=queue[0].tried)
            if worker is None:
                return None  # no free slot anywhere that suits; nothing else will fit either
            job = queue.popleft()
            self._waiting.pop(task_id)
            if queue:
                self._waiting[task_id] = queue  # back of the line: the next task goes first
            return job, worker
        return None

    def _attempt(self, job: Job, worker: Worker) -> None:
        again_here = worker.address in job.tried
        job.attempts += 1
        job.tried.add(worker.address)
        if job.attempts > 1:
            where = ("the worker of an earlier attempt: no other was free" if again_here
                     else "a worker it has not run on")
            self.on_progress(job, results_pb2.JobProgress(
                attack_index=job.attack_index, stage=results_pb2.STAGE_QUEUED,
                message=f"retrying: attempt {job.attempts} of {self.settings.max_attempts} on worker {worker.address}, "
                        f"{where}"))
        started = time.monotonic()
        deadline = self.settings.attempt_deadline(worker)
        log.info("job start %s worker=%s attempt=%d deadline=%.0fs", job.label, worker.address, job.attempts, deadline)
        attempt = Attempt(job, worker)
        try:
            self._upload_entries(attempt, deadline)
        except (grpc.RpcError, grpc.FutureCancelledError) as error:
            self._upload_failed(attempt, error, deadline)
            return
        request = job.request()
        receiving = None
        if self.entries is not None and isinstance(job.part, attack_worker_pb2.ShadowPart):
            request.shadow.stream_entry = True
            receiving = self.entries.receiving(job.task_id, worker.address)
        call = worker.stub.RunAttack(request, timeout=deadline)
        with self._changed:
            self._running[call] = attempt
            if job.task_id in self._cancelled or self._stopping:
                call.cancel()
        outcome: Outcome | None = None
        broken: Failure | None = None  # the call ended without an answer
        relay: Failure | None = None  # the answer's entry did not come as described
        try:
            for response in call:
                event = response.WhichOneof("event")
                if event == "progress":
                    self.on_progress(job, response.progress)
                    continue
                if event == "entry_chunk" and receiving is not None:
                    receiving.add(response.entry_chunk)
                    continue
                if event is None or event == "entry_chunk":  # not an answer this orchestrator can take
                    continue
                outcome = getattr(response, event)
                break
            else:
                broken = Unavailable(f"worker {worker.address} ended the job without a result")
            if receiving is not None and isinstance(outcome, attack_worker_pb2.ShadowOutput):
                receiving.finish(outcome)
        except grpc.RpcError as error:
            broken = attempt.abandoned or self._rpc_failure(error, worker, deadline)
        except Failure as failure:  # from the relay: the part runs again
            relay = failure
            call.cancel()
        finally:
            if receiving is not None:
                receiving.discard()
            with self._changed:
                del self._running[call]
                cancelled = job.task_id in self._cancelled or self._stopping
            # Only a fault of the infrastructure says the worker itself is in trouble.
            trouble = broken is not None and broken.fault == INFRASTRUCTURE and not cancelled
            self.pool.release(worker, broken.message if trouble else None)
        if cancelled:
            log.info("job stopped %s: cancelled", job.label)
            return
        if self.entries is not None and isinstance(outcome, attack_worker_pb2.ShadowsMissing):
            self.entries.lost_by(job.task_id, worker.address)
        failure = broken or relay or _retryable_failure(outcome)
        if failure is None:
            status = (results_pb2.AttackStatus.Name(outcome.status) if isinstance(outcome, results_pb2.AttackResult)
                      else "SHADOW_OUTPUT" if isinstance(outcome, attack_worker_pb2.ShadowOutput)
                      else f"SHADOWS_MISSING {list(outcome.shadow_index)}")
            log.info("job finish %s worker=%s status=%s seconds=%.1f", job.label, worker.address, status,
                     time.monotonic() - started)
            self.on_result(job, outcome)
            return
        self._retry_or_fail(job, worker, failure)

    def _upload_entries(self, attempt: Attempt, deadline: float) -> None:
        """Before a score job: uploads the relayed entries it refers to that its worker lacks, in
        a call that a cancellation or a lost worker cancels as it does the job's."""
        job, worker = attempt.job, attempt.worker
        if self.entries is None or not isinstance(job.part, attack_worker_pb2.ScorePart):
            return

        def put(chunks: Iterator[attack_worker_pb2.PutEntriesRequest]) -> attack_worker_pb2.PutEntriesResponse:
            call = worker.stub.PutEntries.future(chunks, timeout=deadline)
            with self._changed:
                self._running[call] = attempt
                if job.task_id in self._cancelled or self._stopping:
                    call.cancel()
            try:
                return call.result()
            finally:
                with self._changed:
                    del self._running[call]

        sent = self.entries.upload(job.task_id, job.part, worker.address, put)
        if sent:
            log.info("job entries %s worker=%s: %d bytes of shadow entries uploaded", job.label, worker.address, sent)

    def _upload_failed(self, attempt: Attempt, error: Exception, deadline: float) -> None:
        """A score job's upload ended without storing its entries: retried as the job would be."""
        job, worker = attempt.job, attempt.worker
        failure = attempt.abandoned or (self._rpc_failure(error, worker, deadline) if isinstance(error, grpc.RpcError)
                                        else Unavailable(f"the upload of shadow entries to worker {worker.address} "
                                                         "was cancelled"))
        with self._changed:
            cancelled = job.task_id in self._cancelled or self._stopping
        self.pool.release(worker, failure.message if failure.fault == INFRASTRUCTURE and not cancelled else None)
        if cancelled:
            log.info("job stopped %s: cancelled while uploading shadow entries", job.label)
            return
        self._retry_or_fail(job, worker, failure)

    def _rpc_failure(self, error: grpc.RpcError, worker: Worker, deadline: float) -> Failure:
        """What a RunAttack call that raised means. Past its deadline, the worker was silent for
        longer than its own job limit (which would have failed the job) and a margin: stuck."""
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(
                f"worker {worker.address} gave no answer within {deadline:.0f} s, its job time limit of "
                f"{self.settings.job_limit(worker):g} s and a margin: the worker or its link is stuck")
        return from_rpc_error(error, f"worker {worker.address}: ")

    def _retry_or_fail(self, job: Job, worker: Worker, failure: Failure) -> None:
        """Ends the job with `failure`, or queues it for another attempt when it is retryable."""
        log.warning("job attempt %d/%d failed %s worker=%s (%s): %s", job.attempts, self.settings.max_attempts,
                    job.label, worker.address, failure.describe(), failure.message)
        if not failure.retryable:
            self.on_result(job, failed_result(job, failure))
            return
        if job.attempts >= self.settings.max_attempts:
            tried = ", ".join(sorted(job.tried))
            self.on_result(job, failed_result(job, Failure(
                f"gave up after {job.attempts} attempts (on {tried}); last: {failure.message}", failure.field,
                code=failure.code, fault=failure.fault, retryable=True)))
            return
        self.on_progress(job, results_pb2.JobProgress(
            attack_index=job.attack_index, stage=results_pb2.STAGE_QUEUED,
            message=f"retrying: attempt {job.attempts} of {self.settings.max_attempts} failed on worker "
                    f"{worker.address} ({failure.describe()}): {failure.message}"))
        with self._changed:
            if job.task_id not in self._cancelled:
                self._waiting.setdefault(job.task_id, deque()).appendleft(job)
                self._waiting.move_to_end(job.task_id, last=False)
            self._changed.notify_all()


def _retryable_failure(outcome: Outcome | None) -> Failure | None:
    """The failure of a failed result that another attempt may fix; None for a final outcome."""
    if not isinstance(outcome, results_pb2.AttackResult) or outcome.status != results_pb2.ATTACK_STATUS_FAILED:
        return None
    failure = from_attack_error(outcome.error)
    return failure if failure.retryable else None


def failed_result(job: Job, failure: Failure) -> results_pb2.AttackResult:
    return results_pb2.AttackResult(attack_index=job.attack_index, attack_name=job.attack_name,
                                    status=results_pb2.ATTACK_STATUS_FAILED, error=failure.attack_error())
