"""The attack workers the orchestrator can send jobs to, and their load."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from privaudit.v1 import attack_worker_pb2_grpc
from services.common.channels import open_channel


@dataclass
class Worker:
    address: str
    channel: grpc.Channel
    stub: attack_worker_pb2_grpc.AttackWorkerServiceStub
    in_flight: int = 0


@dataclass
class WorkerPool:
    """Places each job on the least-loaded worker, preferring workers the job has not
    failed on yet."""

    workers: list[Worker] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_addresses(cls, addresses: list[str]) -> WorkerPool:
        workers = []
        for address in addresses:
            channel = open_channel(address)
            workers.append(Worker(address, channel, attack_worker_pb2_grpc.AttackWorkerServiceStub(channel)))
        return cls(workers)

    @contextmanager
    def lease(self, avoid: set[str]) -> Iterator[Worker]:
        """A worker for one attempt of a job, counted as busy until the block ends."""
        with self._lock:
            if not self.workers:
                raise LookupError("no attack workers are configured (--workers)")
            fresh = [w for w in self.workers if w.address not in avoid] or self.workers
            worker = min(fresh, key=lambda w: w.in_flight)
            worker.in_flight += 1
        try:
            yield worker
        finally:
            with self._lock:
                worker.in_flight -= 1

    def close(self) -> None:
        for worker in self.workers:
            worker.channel.close()
