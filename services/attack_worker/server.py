"""The AttackWorkerService: runs each RunAttack job in a child process and streams its events.

Each job runs in a child process under the worker's memory and time limits
(`job_process`), watched by a thread of this one, so user code cannot take the
worker down; GetCapacity advertises those limits, so that the orchestrator waits
for a job's own time limit to fail it rather than giving up first. A job that
ends without a result raises its Failure, which the server's interceptor turns
into the RPC's status. A worker runs up to `settings.slots` jobs at once (`--slots`), and
advertises that number: each job is a process of its own, forked from a launcher that has
run no Paddle op, so jobs share no random generator, device state or memory (each has its
own `--threads` and `--job-memory-mb`), and the caches on disk are safe for concurrent writers
(see `npz_store`). A job that arrives while every slot is taken reports STAGE_QUEUED and waits
its turn. Cancelling the RPC cancels the job, waiting or running.

The servicer keeps the job launcher running (`launcher.LauncherKeeper`): it checks it before
each job and after every job, before the caller has the job's answer, and reports the
worker's service NOT_SERVING on the health service while it restarts a dead one (`serve` wires
the two; a job waiting for the restart reports STAGE_QUEUED). The overall health ("") is left
SERVING: the process is alive, and probes of it must not restart it.

Stopping drains (`drain`, on SIGTERM): the service goes NOT_SERVING for good, GetCapacity and
new RunAttack calls are refused UNAVAILABLE and queued jobs sent back the same way (retryable:
the orchestrator places them on another worker), running jobs may finish within the grace
period, and those still running then are cancelled and end UNAVAILABLE, so they run again
elsewhere.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import grpc
from grpc_health.v1 import health, health_pb2

from privaudit.services.attack_worker import launcher
from privaudit.services.attack_worker.entry_exchange import entry_chunks, put_entries
from privaudit.services.attack_worker.job_basics import JobCancelled, attack_name
from privaudit.services.attack_worker.job_process import run_in_child
from privaudit.services.attack_worker.launcher import LauncherKeeper
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.errors import Failure, ServiceBug, Unavailable
from privaudit.services.common.server import DEFAULT_OPTIONS, ServerOptions, Service, start_server
from privaudit.services.common.task_spec import check_task_id
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc, results_pb2

log = logging.getLogger(__name__)

SERVICE_NAME = attack_worker_pb2.DESCRIPTOR.services_by_name["AttackWorkerService"].full_name
# How often a queued job checks whether its RPC was cancelled.
_QUEUE_POLL_S = 0.2


class WorkerStopping(Unavailable):
    """This worker is draining: the job was refused, sent back or cancelled, to run elsewhere."""


@dataclass(frozen=True)
class _JobEnded:
    """Last item of a job's event queue; `failure` is set when the job broke without a result."""

    failure: Failure | None = None


class AttackWorkerServicer(attack_worker_pb2_grpc.AttackWorkerServiceServicer):
    def __init__(self, settings: WorkerSettings):
        """The service is NOT_SERVING, and jobs wait, until `become_ready` (`start` calls it) has
        seen the job launcher fork a process and resolved `settings.device` through it."""
        self._settings = settings
        self._ready = threading.Event()
        self._slots = threading.BoundedSemaphore(settings.slots)
        self._jobs_changed = threading.Condition()
        self._cancels: set[threading.Event] = set()  # each job held (running or waiting for a slot): its cancel
        self._draining = threading.Event()
        self._drain_grace_s = 0.0
        self._grace_passed = threading.Event()  # the jobs still running were cancelled by the drain
        self._health: health.HealthServicer | None = None
        self._launcher = LauncherKeeper(self._report_serving)

    def report_health_to(self, health_servicer: health.HealthServicer) -> None:
        """Reports this service's health through `health_servicer` from now on."""
        self._health = health_servicer
        self._report_serving(not self._launcher.restarting)

    def become_ready(self) -> None:
        """Waits for the job launcher to fork jobs (`launcher.ready`, which also names the jobs'
        device: this process never imports Paddle), then reports SERVING. Raises UnusableDevice
        when `--device` names a GPU that Paddle cannot use."""
        self._settings = replace(self._settings, device=launcher.ready(self._settings.device))
        self._ready.set()
        log.info("the job launcher forks jobs; they run on %s", self._settings.device)
        self._report_serving(not self._launcher.restarting)

    def _report_serving(self, serving: bool) -> None:
        if self._health is not None:
            self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING
                             if serving and self._ready.is_set() and not self._draining.is_set()
                             else health_pb2.HealthCheckResponse.NOT_SERVING)

    def drain(self, grace_s: float, settle_s: float = 30.0) -> None:
        """Stops taking jobs, lets the running ones finish for up to `grace_s` seconds, then
        cancels the rest (each ends UNAVAILABLE, to run elsewhere) and waits up to `settle_s`
        more for their answers to be on their way."""
        with self._jobs_changed:
            self._drain_grace_s = grace_s
            self._draining.set()
            running = len(self._cancels)
        self._report_serving(False)
        log.info("draining: no new jobs; %d running or queued get up to %g s to finish", running, grace_s)
        if not self._wait_for_jobs(grace_s):
            with self._jobs_changed:
                left = list(self._cancels)
            log.warning("draining: %d job(s) still running after %g s are cancelled, to run on another worker",
                        len(left), grace_s)
            self._grace_passed.set()
            for cancel in left:
                cancel.set()
            self._wait_for_jobs(settle_s)
        log.info("drained")

    def _wait_for_jobs(self, timeout_s: float) -> bool:
        """Whether every held job ended within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._jobs_changed:
            while self._cancels:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._jobs_changed.wait(min(left, 1.0))
        return True

    def _refuse_if_draining(self) -> None:
        if self._draining.is_set():
            raise WorkerStopping("this worker is stopping (draining before it ends) and takes no new jobs; "
                                 "another worker will run them")

    def GetCapacity(self, request: attack_worker_pb2.GetCapacityRequest,
                    context: grpc.ServicerContext) -> attack_worker_pb2.GetCapacityResponse:
        self._refuse_if_draining()
        if not self._ready.is_set():
            raise Unavailable("this worker is starting: its job launcher does not fork jobs yet")
        device = self._settings.device or ""
        with self._jobs_changed:
            running = len(self._cancels)
        limits = self._settings.limits
        return attack_worker_pb2.GetCapacityResponse(slots=self._settings.slots, running=running,
                                                     gpu=device.startswith("gpu"), device=device,
                                                     job_timeout_s=limits.timeout_s,
                                                     job_memory_mb=limits.memory_mb)

    def RunAttack(self, request: attack_worker_pb2.RunAttackRequest,
                  context: grpc.ServicerContext) -> Iterator[attack_worker_pb2.RunAttackResponse]:
        check_task_id(request.task_id)  # it names the job's thread, process and log lines
        events: queue.Queue[attack_worker_pb2.RunAttackResponse | _JobEnded] = queue.Queue()
        cancelled = threading.Event()
        with self._jobs_changed:  # held from here, so that a drain starting now waits for it
            self._refuse_if_draining()
            self._cancels.add(cancelled)
        context.add_callback(cancelled.set)
        threading.Thread(target=self._run, args=(request, events, cancelled), daemon=True,
                         name=f"job-{request.task_id}-{request.attack_index}").start()
        while not isinstance(event := events.get(), _JobEnded):
            if event.HasField("shadow"):  # its entry's bytes first, when the caller takes them
                yield from entry_chunks(request, event.shadow, self._settings)
            yield event
        if event.failure:
            raise event.failure

    def PutEntries(self, requests: Iterator[attack_worker_pb2.PutEntriesRequest],
                   context: grpc.ServicerContext) -> attack_worker_pb2.PutEntriesResponse:
        """Stores uploaded shadow-cache entries for the score jobs that follow (`entry_exchange`)."""
        self._refuse_if_draining()
        return put_entries(requests, self._settings)

    def _run(self, request: attack_worker_pb2.RunAttackRequest,
             events: queue.Queue[attack_worker_pb2.RunAttackResponse | _JobEnded],
             cancelled: threading.Event) -> None:
        """Runs the job, putting its progress, its result and then _JobEnded into `events`."""

        def emit(progress: results_pb2.JobProgress) -> None:
            events.put(attack_worker_pb2.RunAttackResponse(progress=progress))

        job = f"task {request.task_id} attack {request.attack_index} {attack_name(request.attack) or '(none)'}"
        ended, outcome, start = _JobEnded(), grpc.StatusCode.CANCELLED.name, time.perf_counter()
        answer: attack_worker_pb2.RunAttackResponse | None = None
        try:
            with self._turn(request.attack_index, emit, cancelled):
                self._wait_started(request.attack_index, emit, cancelled)
                self._launcher.wait_ready(cancelled, lambda: emit(results_pb2.JobProgress(
                    attack_index=request.attack_index, stage=results_pb2.STAGE_QUEUED,
                    message="waiting for this worker's job launcher to restart")))
                start = time.perf_counter()
                log.info("job start: %s", job)
                result = run_in_child(request, self._settings, emit, cancelled)
            if isinstance(result, attack_worker_pb2.ShadowOutput):
                answer = attack_worker_pb2.RunAttackResponse(shadow=result)
                outcome = f"SUCCEEDED (shadow {result.shadow_index})"
            elif isinstance(result, attack_worker_pb2.ShadowsMissing):
                answer = attack_worker_pb2.RunAttackResponse(shadows_missing=result)
                outcome = f"SHADOWS MISSING ({len(result.shadow_index)})"
            else:
                answer = attack_worker_pb2.RunAttackResponse(result=result)
                outcome = results_pb2.AttackStatus.Name(result.status).removeprefix("ATTACK_STATUS_")
        except JobCancelled:
            if self._grace_passed.is_set():
                grace = self._drain_grace_s
                ended, outcome = _JobEnded(WorkerStopping(
                    f"this worker stopped before the job finished: it lets running jobs finish for {grace:g} s "
                    f"(--drain-grace-s) when told to stop, and this one ran longer; it runs again on another "
                    "worker")), "SENT BACK (the worker stopped)"
        except WorkerStopping as error:
            ended, outcome = _JobEnded(error), "SENT BACK (the worker is stopping)"
        except Exception as error:
            log.exception("job broke without a result: %s", job)
            failure = error if isinstance(error, Failure) else \
                ServiceBug(f"the attack worker broke while running {job}; see its log")
            ended, outcome = _JobEnded(failure), "ERROR"
        finally:
            self._launcher.notice()  # a launcher that died with the job: NOT_SERVING before the answer
            with self._jobs_changed:
                self._cancels.discard(cancelled)
                self._jobs_changed.notify_all()
            # Logged before the caller can have the answer, so that the log is complete once it has.
            log.info("job end: %s %s in %.1fs", job, outcome, time.perf_counter() - start)
            if answer is not None:
                events.put(answer)
            events.put(ended)

    def _wait_started(self, attack_index: int, emit: Callable[[results_pb2.JobProgress], None],
                      cancelled: threading.Event) -> None:
        """Returns once the worker is ready (`become_ready`), reporting STAGE_QUEUED while it is not."""
        if self._ready.is_set():
            return
        emit(results_pb2.JobProgress(attack_index=attack_index, stage=results_pb2.STAGE_QUEUED,
                                     message="waiting for this worker's job launcher to start"))
        while not self._ready.wait(_QUEUE_POLL_S):
            if cancelled.is_set():
                raise JobCancelled("cancelled while the worker started")
            self._refuse_if_draining()

    @contextmanager
    def _turn(self, attack_index: int, emit: Callable[[results_pb2.JobProgress], None],
              cancelled: threading.Event) -> Iterator[None]:
        """Holds one of the worker's job slots, reporting STAGE_QUEUED while waiting for one."""
        if not self._slots.acquire(blocking=False):
            slots = self._settings.slots
            emit(results_pb2.JobProgress(attack_index=attack_index, stage=results_pb2.STAGE_QUEUED,
                                         message=f"waiting for a slot of this worker: its {slots} running "
                                                 f"job{'s' if slots > 1 else ''} must finish first"))
            while not self._slots.acquire(timeout=_QUEUE_POLL_S):
                if cancelled.is_set():
                    raise JobCancelled("cancelled while queued")
                self._refuse_if_draining()
        try:
            yield
        finally:
            self._slots.release()


def register(server: grpc.Server, settings: WorkerSettings) -> AttackWorkerServicer:
    """Adds an AttackWorkerServicer running jobs with `settings` to `server`, and returns it. It
    runs no job until its `become_ready` has returned (`start` calls it): jobs wait till then."""
    servicer = AttackWorkerServicer(settings)
    attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(servicer, server)
    return servicer


def serve(settings: WorkerSettings, listen: str, options: ServerOptions = DEFAULT_OPTIONS) -> Service:
    """Starts serving AttackWorkerService with `settings` on `listen`, its health reporting
    whether the job launcher runs."""
    return start(settings, listen, options)[0]


def start(settings: WorkerSettings, listen: str, options: ServerOptions = DEFAULT_OPTIONS,
          wait_ready: bool = True) -> tuple[Service, AttackWorkerServicer]:
    """`serve`, also giving the servicer (to drain it before the service stops). With `wait_ready`
    it returns SERVING (`become_ready`; UnusableDevice stops it); without, at once, bound and
    NOT_SERVING, and the caller calls `become_ready`: a worker process makes its address known
    meanwhile, while its job launcher imports Paddle."""
    servicers: list[AttackWorkerServicer] = []
    service = start_server(lambda server: servicers.append(register(server, settings)), [SERVICE_NAME], listen,
                           options=options)
    servicer = servicers[0]
    servicer.report_health_to(service.health)
    if wait_ready:
        try:
            servicer.become_ready()
        except BaseException:
            service.stop(grace=0)
            raise
    return service, servicer
