"""The attack workers the orchestrator can place jobs on: who they are, whether they are
healthy, how many jobs each takes, and how many each is running.

Workers come from a static list, from a DNS name that resolves to many addresses
(a Kubernetes headless Service), or both. A background thread re-resolves the
name and probes every worker (the standard health service, then GetCapacity)
every `refresh_seconds`; a worker that fails a job's connection is marked
unhealthy at once and gets no work until a probe succeeds again.

A probe tells two kinds of trouble apart. A worker that answers but not SERVING
(its job launcher restarting, say, or refusing the orchestrator's token) is
alive: it gets no new jobs, and the jobs it runs end through their own calls. A
worker that gives no answer at all (unreachable, or silent past the probe's
timeout) `lost_after` probes in a row while running jobs is reported lost
(`on_lost`), so that its jobs can be moved even when its link is cut silently.
A worker that cannot be reached because it speaks TLS and the orchestrator
plaintext (or the reverse) is logged once, saying so.

A worker that answers NOT_SERVING before it has ever served (it is starting: its job launcher
imports Paddle) is probed every `join_seconds` rather than every `refresh_seconds`, so that it
takes jobs as soon as it can: a local cluster starts its orchestrator while its workers start,
and an audit submitted meanwhile waits in the queue for them, none of them lost.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from privaudit.services.common.channels import PLAINTEXT, ChannelSecurity, open_channel
from privaudit.services.common.tls import protocol_mismatch
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc

log = logging.getLogger(__name__)

WORKER_SERVICE = attack_worker_pb2.DESCRIPTOR.services_by_name["AttackWorkerService"].full_name
# The statuses of a call that reached no live server: nothing answered it, or not in time.
NO_ANSWER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass
class Worker:
    address: str
    channel: grpc.Channel
    stub: attack_worker_pb2_grpc.AttackWorkerServiceStub
    healthy: bool = False
    slots: int = 1
    gpu: bool = False
    in_flight: int = 0
    problem: str = "not probed yet"
    unanswered_probes: int = 0  # probes in a row it gave no answer to (answering NOT_SERVING is an answer)
    unanswered_because: str = ""  # why the last of those failed, as gRPC said
    protocol_mismatch: str = ""  # why it cannot be reached when it speaks TLS and we plaintext, or the reverse
    job_timeout_s: float = 0.0  # its job time limit, as GetCapacity advertises it (0: not advertised)
    served: bool = False  # it has been healthy since it was added
    starting: bool = False  # it answers NOT_SERVING and has not served yet

    @property
    def joining(self) -> bool:
        """Starting: probed every `join_seconds` until it serves."""
        return self.starting and not self.served

    @property
    def free(self) -> bool:
        return self.healthy and self.in_flight < self.slots


def resolve(name: str) -> set[str]:
    """`host:port` -> every `ip:port` the host resolves to (empty when it does not resolve)."""
    host, _, port = name.rpartition(":")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, ValueError) as error:
        log.warning("cannot resolve workers at %s: %s", name, error)
        return set()
    return {f"[{info[4][0]}]:{port}" if info[0] == socket.AF_INET6 else f"{info[4][0]}:{port}" for info in infos}


@dataclass
class WorkerPool:
    static: list[str]
    dns_name: str | None = None
    refresh_seconds: float = 2.0
    join_seconds: float = 0.1  # how often a starting worker is probed (see the module's docstring)
    probe_timeout: float = 2.0
    lost_after: int = 3
    security: ChannelSecurity = PLAINTEXT  # TLS and token for the calls to the workers
    on_change: Callable[[], None] = lambda: None
    on_lost: Callable[[Worker, str], None] = lambda worker, reason: None
    workers: dict[str, Worker] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Probes once, then keeps probing in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._refresh_loop, name="worker-pool", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(self.refresh_seconds + self.probe_timeout * 2)
        with self._lock:
            for worker in self.workers.values():
                worker.channel.close()

    def refresh(self) -> None:
        """Re-resolves the worker addresses and probes each worker."""
        wanted = set(self.static) | (resolve(self.dns_name) if self.dns_name else set())
        with self._lock:
            for address in wanted - self.workers.keys():
                channel = open_channel(address, security=self.security)
                stub = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel)
                self.workers[address] = Worker(address, channel, stub)
                log.info("worker added: %s", address)
            for address in [a for a, w in self.workers.items() if a not in wanted and not w.in_flight]:
                self.workers.pop(address).channel.close()
                log.info("worker removed: %s (no longer resolved)", address)
            probing = list(self.workers.values())
        for worker in probing:
            self._probe(worker)
        self.on_change()

    def pick(self, avoid: set[str]) -> Worker | None:
        """Takes a slot on the least-loaded healthy worker with one free, preferring workers
        not in `avoid` (those a job already failed on); None when no slot is free."""
        with self._lock:
            free = [w for w in self.workers.values() if w.free]
            fresh = [w for w in free if w.address not in avoid] or free
            if not fresh:
                return None
            worker = min(fresh, key=lambda w: (w.in_flight / w.slots, w.in_flight, w.address))
            worker.in_flight += 1
            return worker

    def release(self, worker: Worker, broken: str | None = None) -> None:
        """Gives the slot back; `broken` says why the worker failed the job's connection."""
        with self._lock:
            worker.in_flight -= 1
            if broken:
                worker.healthy, worker.problem = False, broken
        self.on_change()

    def describe(self) -> list[str]:
        with self._lock:
            return [f"{w.address} {'healthy' if w.healthy else 'unhealthy: ' + w.problem} "
                    f"{w.in_flight}/{w.slots}{' gpu' if w.gpu else ''}" for w in self.workers.values()]

    def _refresh_loop(self) -> None:
        due = time.monotonic() + self.refresh_seconds
        while not self._stop.wait(self._pause(due)):
            try:
                if time.monotonic() >= due:
                    due = time.monotonic() + self.refresh_seconds
                    self.refresh()
                else:
                    self._probe_joining()
            except Exception:  # the loop must outlive any one bad probe
                log.exception("refreshing the worker pool failed")

    def _pause(self, due: float) -> float:
        """Seconds until the next full refresh (`due`), or until the next probe of starting workers."""
        left = max(0.0, due - time.monotonic())
        with self._lock:
            joining = any(w.joining for w in self.workers.values())
        return min(left, self.join_seconds) if joining else left

    def _probe_joining(self) -> None:
        with self._lock:
            joining = [w for w in self.workers.values() if w.joining]
        for worker in joining:
            self._probe(worker)
        if any(w.healthy for w in joining):
            self.on_change()

    def _probe(self, worker: Worker) -> None:
        try:
            health = health_pb2_grpc.HealthStub(worker.channel).Check(
                health_pb2.HealthCheckRequest(service=WORKER_SERVICE), timeout=self.probe_timeout)
            if health.status != health_pb2.HealthCheckResponse.SERVING:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
                self._not_serving(worker, f"health is {status}")
                return
            capacity = worker.stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=self.probe_timeout)
        except grpc.RpcError as error:
            if error.code() in NO_ANSWER:
                self._unanswered(worker, error)
            else:
                self._not_serving(worker, f"{error.code().name}: {error.details()}")
            return
        with self._lock:
            if not worker.healthy:
                log.info("worker %s is healthy: %d slot(s)%s", worker.address, capacity.slots,
                         f", {capacity.device}" if capacity.device else "")
            worker.healthy, worker.problem, worker.served, worker.starting = True, "", True, False
            worker.unanswered_probes, worker.unanswered_because, worker.protocol_mismatch = 0, "", ""
            worker.slots, worker.gpu = max(1, capacity.slots), capacity.gpu
            worker.job_timeout_s = capacity.job_timeout_s

    def _not_serving(self, worker: Worker, problem: str) -> None:
        """The worker answered, but takes no jobs now: none go to it, and it is not lost."""
        with self._lock:
            worker.starting = not worker.served
            if problem != worker.problem:
                if worker.starting:
                    log.info("worker %s is starting (%s): it joins once it serves", worker.address, problem)
                else:
                    log.warning("worker %s answers but takes no new jobs: %s", worker.address, problem)
            worker.healthy, worker.problem = False, problem
            worker.unanswered_probes, worker.unanswered_because, worker.protocol_mismatch = 0, "", ""

    def _unanswered(self, worker: Worker, error: grpc.RpcError) -> None:
        """The worker gave no answer: lost once `lost_after` probes in a row went so while it
        runs jobs. The first time gRPC's reason changes (a worker restarted with TLS, say), the
        probe asks whether it speaks the other protocol, and says so once if it does."""
        because = f"{error.code().name}: {error.details()}"
        mismatch = worker.protocol_mismatch
        if error.code() == grpc.StatusCode.UNAVAILABLE and because != worker.unanswered_because:
            mismatch = protocol_mismatch(worker.address, self.security.tls is not None, self.probe_timeout,
                                         "the orchestrator", "--peer-tls") or ""
        problem = f"cannot reach it: {mismatch}" if mismatch else f"no answer: {because}"
        with self._lock:
            if problem != worker.problem:
                log.warning("worker %s: %s", worker.address, problem)
            worker.healthy, worker.problem = False, problem
            worker.unanswered_because, worker.protocol_mismatch = because, mismatch
            worker.unanswered_probes += 1
            lost = worker.unanswered_probes == self.lost_after and worker.in_flight > 0
        if lost:
            log.warning("worker %s lost: %d probes in a row went unanswered while it ran jobs", worker.address,
                        self.lost_after)
            self.on_lost(worker, f"worker {worker.address} stopped answering ({self.lost_after} health probes "
                                 f"unanswered; last: {problem})")
