"""Service processes (`python -m services.<name>`) started with the flags a test gives, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def when_serving(call: Callable[[], T], timeout_s: float = 60.0) -> T:
    """call(), retried while it answers UNAVAILABLE: a worker is bound, and refuses jobs, until its
    job launcher can fork them."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class ServiceProcesses:
    """Starts services with their logs and ready files in `folder`; `stop` ends them all."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *flags: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
        """Starts `python -m services.<name> --listen 127.0.0.1:0 <flags>`; returns its address."""
        ready = self.folder / f"{name}-{len(self.started)}.address"
        log = self.folder / f"{name}-{len(self.started)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "--listen", "127.0.0.1:0", "--ready-file", str(ready),
                 *flags], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        self.started.append((name, process))
        deadline = time.monotonic() + timeout
        while not ready.exists():
            assert process.poll() is None, f"{name} exited with {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{name} did not start within {timeout}s:\n{log.read_text()}"
            time.sleep(0.05)
        return ready.read_text().strip()

    def log(self, name: str) -> str:
        """The output of every process started as `name`."""
        return "".join(path.read_text() for path in sorted(self.folder.glob(f"{name}-*.log")))

    def stop(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
