"""Workers that start after the orchestrator (issue 17): the pool takes them in as soon as
they serve, and none of them counts as lost meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from grpc_health.v1 import health_pb2

from privaudit.services.common.server import Service, start_server
from privaudit.services.orchestrator.worker_pool import WORKER_SERVICE, WorkerPool
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class _Capacity(attack_worker_pb2_grpc.AttackWorkerServiceServicer):
    def GetCapacity(self, request, context):
        return attack_worker_pb2.GetCapacityResponse(slots=2, device="cpu", job_timeout_s=60)


@contextmanager
def starting_worker() -> Iterator[Service]:
    """A worker's service, bound and answering NOT_SERVING, as a worker whose launcher starts."""
    service = start_server(lambda server: attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(
        _Capacity(), server), [WORKER_SERVICE], "127.0.0.1:0")
    service.health.set(WORKER_SERVICE, NOT_SERVING)
    try:
        yield service
    finally:
        service.stop(grace=0)


def wait_for(condition, timeout_s: float) -> float:
    """Seconds until `condition()` held (asserting it does within `timeout_s`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, "it did not happen in time"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_starting_worker_joins_as_soon_as_it_serves_and_is_never_lost():
    changes, lost = [], []
    with starting_worker() as service:
        pool = WorkerPool([service.address], refresh_seconds=30.0, join_seconds=0.05, lost_after=1,
                          on_change=lambda: changes.append(time.monotonic()), on_lost=lambda *why: lost.append(why))
        pool.start()
        try:
            worker = pool.workers[service.address]
            assert (worker.healthy, worker.joining, worker.problem) == (False, True, "health is NOT_SERVING")
            assert pool.pick(set()) is None
            time.sleep(0.3)  # several join probes, all NOT_SERVING
            service.health.set(WORKER_SERVICE, SERVING)
            served_at = time.monotonic()
            assert wait_for(lambda: worker.healthy, 5.0) < 1.0, "far sooner than the 30 s refresh"
            assert wait_for(lambda: changes and changes[-1] >= served_at, 5.0) < 1.0, "the scheduler was woken"
            assert (worker.slots, worker.job_timeout_s, worker.joining) == (2, 60.0, False)
            assert pool.pick(set()) is worker
        finally:
            pool.close()
    assert lost == []


def test_a_worker_that_served_and_then_answers_not_serving_waits_for_the_next_refresh():
    """Fast probes are for starting workers: one whose launcher restarts is probed as usual."""
    with starting_worker() as service:
        service.health.set(WORKER_SERVICE, SERVING)
        pool = WorkerPool([service.address], refresh_seconds=30.0, join_seconds=0.05)
        pool.start()
        try:
            worker = pool.workers[service.address]
            assert worker.healthy
            service.health.set(WORKER_SERVICE, NOT_SERVING)
            pool.refresh()
            assert (worker.healthy, worker.joining) == (False, False)
            service.health.set(WORKER_SERVICE, SERVING)
            time.sleep(0.5)
            assert not worker.healthy, "probed before the refresh was due"
        finally:
            pool.close()
