"""An audit cluster of real service processes on loopback.

`privaudit run` without `--orchestrator` starts one for the length of one audit:
the reporter, N attack workers and the orchestrator, each a
`python -m services.<name>` process bound to an ephemeral port on 127.0.0.1
(with `host_reporter`, what `privaudit run` uses, the orchestrator serves the reporter from its own process),
all ended when the client stops or dies. They start at once: a worker binds (and
writes its address) at once and serves once its job launcher has imported Paddle,
and the orchestrator starts as soon as the others are bound. With
`wait_for_workers=False` (what `privaudit run` uses) `start` returns once the
orchestrator can queue an audit, and the workers join its pool as they serve; a
service that exits before it serves stops the cluster, and leaving the `with`
block raises its ClusterError. `privaudit cluster up` starts one that
outlives the command (`detached`), keeps its state, logs and `cluster.json`
in a state folder, and `privaudit cluster down` ends it. The workers share one
cache folder in the state folder (`cache`), so a task's attacks share the target's
outputs whichever worker runs them, LIRA/RMIA shadow models go to the score job by
reference (`--cache-shared`), and a kept cluster reuses shadow models. The
workers' job limits (`job_timeout_s`, `job_memory_mb`) are the workers' defaults
unless set. The client never
imports Paddle; the workers do, in their own processes. Being on loopback only,
its services serve plaintext to any caller: the environment variables that would
turn on TLS or tokens (`SERVER_SECURITY_ENV`) are not passed to them.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from privaudit.services.common.channels import open_channel
from privaudit.services.common.config import SERVER_SECURITY_ENV
from privaudit.v1 import attack_worker_pb2, orchestrator_pb2, reporter_pb2

_PR_SET_PDEATHSIG = 1
CLUSTER_FILE = "cluster.json"
# The gRPC service each kind of process serves, whose health says it takes calls.
SERVICE_NAMES = {module: pb2.DESCRIPTOR.services_by_name[name].full_name for module, pb2, name in (
    ("privaudit.services.reporter", reporter_pb2, "ReporterService"),
    ("privaudit.services.attack_worker", attack_worker_pb2, "AttackWorkerService"),
    ("privaudit.services.orchestrator", orchestrator_pb2, "OrchestratorService"))}
# How often a starting service's health is asked while waiting for it to serve.
_SERVING_POLL_S = 0.05


class ClusterError(RuntimeError):
    """A service of the local cluster did not start, or the cluster is not there."""


@dataclass
class ServiceProcess:
    name: str
    command: list[str]
    ready_file: Path
    log_file: Path
    service_name: str = ""  # the gRPC service whose health says it serves
    process: subprocess.Popen | None = None
    address: str = ""
    # time.monotonic() when it was spawned, bound (its address known) and serving (0: not yet)
    spawned_at: float = 0.0
    bound_at: float = 0.0
    serving_at: float = 0.0

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def record(self) -> dict:
        return {"address": self.address, "pid": self.process.pid if self.process else None}


def _exit_with_parent() -> None:
    """In the child: get SIGTERM when the client dies, so no service outlives it (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _service_environment() -> dict[str, str]:
    """This process's environment without the variables that would secure a service."""
    return {name: value for name, value in os.environ.items() if name not in SERVER_SECURITY_ENV}


@dataclass
class LocalCluster:
    """`with LocalCluster(workers=2) as cluster:` -> `cluster.address` is the orchestrator's."""

    workers: int = 2
    slots: int = 1  # jobs each worker runs at once (its --slots); the cores are split among all of them
    storage_root: Path = field(default_factory=Path.cwd)
    state_dir: Path | None = None  # None: a temporary folder, removed on stop
    detached: bool = False  # True: processes outlive this one (`privaudit cluster up`)
    log_level: str = "INFO"
    start_timeout: float = 120.0
    job_timeout_s: float | None = None  # each worker's --job-timeout-s (None: the worker's default)
    job_memory_mb: int | None = None  # each worker's --job-memory-mb (None: the worker's default)
    worker_flags: list[str] = field(default_factory=list)  # further flags for every worker
    # False: `start` returns once the orchestrator serves, the workers join as they serve (not detached)
    wait_for_workers: bool = True
    # True: the orchestrator serves the reporter from its own process (--host-reporter), one interpreter
    # less (what `privaudit run` does: issue 17's memory); False: the reporter is a process of its own.
    host_reporter: bool = False
    # Told what the cluster is doing while it starts (`finished`: every service serves, or one failed).
    on_step: Callable[[str, bool], None] | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    address: str = ""
    _temporary: bool = False
    _failure: ClusterError | None = None  # why a service that was starting ended (wait_for_workers=False)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.slots < 1:
            raise ValueError("a local cluster needs at least one worker, with at least one slot")
        self.storage_root = Path(self.storage_root).resolve()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the cluster, then raises the ClusterError of a service that failed to start
        while the cluster was in use (wait_for_workers=False)."""
        self.stop()
        if self._failure is not None:
            raise self._failure

    def start(self) -> None:
        if self.state_dir is None:
            self.state_dir, self._temporary = Path(tempfile.mkdtemp(prefix="privaudit-cluster-")), True
        self.state_dir = self.state_dir.resolve()
        self._stopping.clear()
        self._failure = None
        for folder in ("run", "logs", "orchestrator", "cache"):
            (self.state_dir / folder).mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            starting = ("" if self.host_reporter else "the reporter and ") + f"{self.workers} worker(s)"
            self._step(f"starting {starting}; each worker imports Paddle")
            reporters = [] if self.host_reporter else [self._spawn("reporter", "privaudit.services.reporter")]
            # The jobs split the machine's cores so they do not fight over them.
            threads = str(max(1, (os.cpu_count() or 1) // (self.workers * self.slots)))
            workers = [self._spawn(f"worker-{i}", "privaudit.services.attack_worker",
                                   "--storage-root", str(self.storage_root),
                                   "--threads", threads, "--slots", str(self.slots),
                                   "--cache-dir", str(self.state_dir / "cache"), "--cache-shared",
                                   *self._job_limit_flags(), *self.worker_flags) for i in range(self.workers)]
            self._wait_bound([*reporters, *workers])  # files only: this process forks the orchestrator next
            self._step("starting the orchestrator" + (" (it serves the reporter too)" if self.host_reporter else ""))
            reporter_flags = [f"--reporter={r.address}" for r in reporters] or ["--host-reporter"]
            orchestrator = self._spawn(
                "orchestrator", "privaudit.services.orchestrator", "--workers", ",".join(w.address for w in workers),
                *reporter_flags, "--state-dir", str(self.state_dir / "orchestrator"))
            self._wait_bound([orchestrator])
            self._wait_serving([orchestrator])
            self.address = orchestrator.address
            self._step(f"orchestrator serving; waiting for {starting} to serve")
            if self.wait_for_workers or self.detached:
                self._wait_serving([*reporters, *workers])
                self._step(f"ready in {time.monotonic() - started:.1f} s", finished=True)
            else:
                self._watcher = threading.Thread(target=self._watch_start, args=([*reporters, *workers], started),
                                                 name="cluster-start", daemon=True)
                self._watcher.start()
            self._write_record()
        except BaseException as error:
            self._step(f"failed to start: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
                       finished=True)
            self.stop()
            raise

    def service(self, name: str) -> ServiceProcess:
        return next(p for p in self.processes if p.name == name)

    def restart(self, name: str) -> ServiceProcess:
        """Starts a stopped (or killed) service again with its command, on its old port."""
        service = self.service(name)
        if service.process and service.process.poll() is None:
            raise ClusterError(f"{name} is still running (pid {service.process.pid})")
        service.command[service.command.index("--listen") + 1] = service.address
        service.ready_file.unlink(missing_ok=True)
        self._launch(service)
        self._wait_bound([service])
        self._wait_serving([service])
        self._write_record()
        return service

    def stop(self, grace: float = 10.0) -> None:
        """Stops the orchestrator first (so no new work starts), then the rest."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        running = [p.process for p in reversed(self.processes) if p.process and p.process.poll() is None]
        _terminate(running, grace)
        self.processes.clear()
        if self.state_dir and self._temporary:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None
        elif self.state_dir:
            (self.state_dir / CLUSTER_FILE).unlink(missing_ok=True)

    @staticmethod
    def read_record(state_dir: Path) -> dict:
        """The cluster.json of a cluster started with `cluster up`."""
        try:
            return json.loads((state_dir / CLUSTER_FILE).read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster is recorded in {state_dir} (no {CLUSTER_FILE}); "
                               "start one with `privaudit cluster up --state-dir DIR`") from None

    @classmethod
    def stop_recorded(cls, state_dir: Path, grace: float = 10.0) -> int:
        """Stops the processes a `cluster up` recorded in state_dir; returns how many were running:
        0 when the folder records no cluster (it was stopped already). ClusterError when there is
        no such folder (a mistyped one must not pass for a stopped cluster)."""
        if not state_dir.is_dir():
            raise ClusterError(f"no cluster is recorded in {state_dir}: there is no such folder")
        if not (state_dir / CLUSTER_FILE).exists():
            return 0
        record = cls.read_record(state_dir)
        entries = [record["orchestrator"], *record["workers"], record["reporter"]]
        pids = [e["pid"] for e in entries if e.get("pid") and _is_service_of(e["pid"], state_dir)]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        (state_dir / CLUSTER_FILE).unlink(missing_ok=True)
        return len(pids)

    # ---------------------------------------------------------------- internals

    def _job_limit_flags(self) -> list[str]:
        """The workers' job limits, where this cluster sets them (the orchestrator learns them from
        the workers, and waits for a job past its limit to fail there)."""
        flags = []
        if self.job_timeout_s is not None:
            flags += ["--job-timeout-s", str(self.job_timeout_s)]
        if self.job_memory_mb is not None:
            flags += ["--job-memory-mb", str(self.job_memory_mb)]
        return flags

    def _spawn(self, name: str, module: str, *args: str) -> ServiceProcess:
        assert self.state_dir is not None
        ready_file = self.state_dir / "run" / f"{name}.address"
        ready_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", module, "--listen", "127.0.0.1:0", "--ready-file", str(ready_file),
                   "--log-level", self.log_level, *args]
        service = ServiceProcess(name, command, ready_file, self.state_dir / "logs" / f"{name}.log",
                                 SERVICE_NAMES[module])
        self._launch(service)
        self.processes.append(service)
        return service

    def _launch(self, service: ServiceProcess) -> None:
        with service.log_file.open("ab") as log:
            service.process = subprocess.Popen(
                service.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_service_environment(),
                start_new_session=self.detached,
                preexec_fn=None if self.detached else _exit_with_parent,
            )
        service.spawned_at, service.bound_at, service.serving_at = time.monotonic(), 0.0, 0.0

    def _wait_bound(self, starting: list[ServiceProcess]) -> None:
        """Waits for each service's ready file (polling files only: no gRPC threads may exist in
        this process while it still forks children)."""
        deadline = time.monotonic() + self.start_timeout
        for service in starting:
            assert service.process is not None
            while not service.ready_file.exists():
                if service.process.poll() is not None:
                    raise ClusterError(f"{service.name} exited with status {service.process.returncode} "
                                       f"while starting:\n{service.log_tail()}")
                if time.monotonic() > deadline:
                    raise ClusterError(f"{service.name} did not start within {self.start_timeout:.0f}s:\n"
                                       f"{service.log_tail()}")
                time.sleep(0.01)
            service.address = service.ready_file.read_text().strip()
            service.bound_at = time.monotonic()

    def _wait_serving(self, starting: list[ServiceProcess]) -> None:
        """Waits until each service's own health (a worker's: once its job launcher forks jobs)
        says SERVING; ClusterError when one exits first or takes longer than `start_timeout`."""
        deadline = time.monotonic() + self.start_timeout
        waiting = list(starting)
        while waiting:
            for service in list(waiting):
                if self._serving(service):
                    service.serving_at = time.monotonic()
                    waiting.remove(service)
                    if waiting:
                        self._step(f"{service.name} serving; waiting for {', '.join(w.name for w in waiting)}")
                elif service.process is not None and service.process.poll() is not None:
                    raise ClusterError(f"{service.name} exited with status {service.process.returncode} "
                                       f"while starting:\n{service.log_tail()}")
                elif time.monotonic() > deadline:
                    raise ClusterError(f"{service.name} at {service.address} did not serve within "
                                       f"{self.start_timeout:.0f}s:\n{service.log_tail()}")
            if waiting and self._stopping.wait(_SERVING_POLL_S):
                return

    @staticmethod
    def _serving(service: ServiceProcess) -> bool:
        with open_channel(service.address) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service.service_name), timeout=1.0)
            except grpc.RpcError:
                return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def _watch_start(self, starting: list[ServiceProcess], started: float) -> None:
        """`_wait_serving` in the background: a service that fails to start ends the orchestrator,
        so that the audit's stream ends at once (a graceful stop would let it run for the stop's
        grace), and its error is raised on leaving the `with` block."""
        try:
            self._wait_serving(starting)
            if not self._stopping.is_set():
                self._step(f"every service serving, {time.monotonic() - started:.1f} s after the start", finished=True)
        except ClusterError as error:
            self._failure = error
            self._step(f"{str(error).splitlines()[0]}", finished=True)
            orchestrator = self.service("orchestrator").process
            if orchestrator is not None and orchestrator.poll() is None:
                orchestrator.kill()

    def _step(self, what: str, finished: bool = False) -> None:
        if self.on_step is not None:
            self.on_step(what, finished)

    def _write_record(self) -> None:
        assert self.state_dir is not None
        record = {
            "orchestrator": self.service("orchestrator").record(),
            "reporter": {"hosted_by": "orchestrator"} if self.host_reporter else self.service("reporter").record(),
            "workers": [p.record() for p in self.processes if p.name.startswith("worker-")],
            "storage_root": str(self.storage_root),
            "logs": str(self.state_dir / "logs"),
        }
        partial = self.state_dir / (CLUSTER_FILE + ".partial")
        partial.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(partial, self.state_dir / CLUSTER_FILE)


def _terminate(processes: list[subprocess.Popen], grace: float) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie waiting to be reaped does not)."""
    return _proc_state(pid) not in ("", "Z")


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _is_service_of(pid: int, state_dir: Path) -> bool:
    """Whether pid is still one of this cluster's services (and not a reused pid)."""
    try:
        return str(state_dir.resolve()) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
