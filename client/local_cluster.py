"""An audit cluster of real service processes on loopback, for running without a server.

`privaudit run` without `--orchestrator` starts one: the reporter, N attack
workers and the orchestrator, each a `python -m services.<name>` process bound
to an ephemeral port on 127.0.0.1. The client itself never imports Paddle; the
workers do, in their own processes. Stopping the cluster (or the client dying)
ends every process it started.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import privaudit
import services
from services.common.channels import open_channel

_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """A service of the local cluster did not start."""


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen
    ready_file: Path
    log_file: Path
    address: str = ""

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _exit_with_parent() -> None:
    """In the child: get SIGTERM when the client dies, so no service outlives it (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _import_path() -> str:
    """PYTHONPATH that finds this code base's packages even when it is not installed."""
    roots = {str(Path(package.__path__[0]).parent) for package in (services, privaudit)}
    existing = os.environ.get("PYTHONPATH")
    return os.pathsep.join(sorted(roots) + ([existing] if existing else []))


class LocalCluster:
    """`with LocalCluster(workers=2, storage_root=...) as cluster:` -> `cluster.address`."""

    def __init__(self, workers: int = 2, storage_root: Path | None = None, log_level: str = "INFO",
                 start_timeout: float = 120.0):
        if workers < 1:
            raise ValueError("a local cluster needs at least one worker")
        self.workers = workers
        self.storage_root = (storage_root or Path.cwd()).resolve()
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.processes: list[ServiceProcess] = []
        self.address = ""
        self._dir: Path | None = None

    # The worker threads split the machine's cores so workers do not fight over them.
    def _threads_per_worker(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.workers)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def log_dir(self) -> Path | None:
        return self._dir

    def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="privaudit-cluster-"))
        try:
            reporter = self._spawn("reporter", "services.reporter")
            workers = [
                self._spawn(f"worker-{i}", "services.attack_worker", "--storage-root", str(self.storage_root),
                            "--threads", str(self._threads_per_worker()))
                for i in range(self.workers)
            ]
            self._wait_bound([reporter, *workers])
            orchestrator = self._spawn(
                "orchestrator", "services.orchestrator",
                "--workers", ",".join(w.address for w in workers), "--reporter", reporter.address,
            )
            self._wait_bound([orchestrator])
            for service in self.processes:
                self._wait_serving(service)
            self.address = orchestrator.address
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 10.0) -> None:
        """Stops the orchestrator first (so no new work starts), then the rest."""
        for service in reversed(self.processes):
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for service in reversed(self.processes):
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        self.processes.clear()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _spawn(self, name: str, module: str, *args: str) -> ServiceProcess:
        assert self._dir is not None
        ready_file, log_file = self._dir / f"{name}.address", self._dir / f"{name}.log"
        command = [sys.executable, "-m", module, "--listen", "127.0.0.1:0", "--ready-file", str(ready_file),
                   "--log-level", self.log_level, *args]
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": _import_path()}, preexec_fn=_exit_with_parent,
            )
        service = ServiceProcess(name, process, ready_file, log_file)
        self.processes.append(service)
        return service

    def _wait_bound(self, starting: list[ServiceProcess]) -> None:
        """Waits for each service's ready file (polling files only: no threads may exist
        in this process while it still forks children)."""
        deadline = time.monotonic() + self.start_timeout
        for service in starting:
            while not service.ready_file.exists():
                if service.process.poll() is not None:
                    raise ClusterError(f"{service.name} exited with status {service.process.returncode} "
                                       f"while starting:\n{service.log_tail()}")
                if time.monotonic() > deadline:
                    raise ClusterError(f"{service.name} did not start within {self.start_timeout:.0f}s:\n"
                                       f"{service.log_tail()}")
                time.sleep(0.05)
            service.address = service.ready_file.read_text().strip()

    def _wait_serving(self, service: ServiceProcess) -> None:
        with open_channel(service.address) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=self.start_timeout, wait_for_ready=True)
            except grpc.RpcError as error:
                raise ClusterError(f"{service.name} at {service.address} is not healthy: {error.details()}\n"
                                   f"{service.log_tail()}") from None
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            raise ClusterError(f"{service.name} at {service.address} reports {response.status}")
