"""Logs a caller cannot flood (issue 15, defect 9): a bug's traceback, an undecodable request and a
refused call are each written once per kind per interval, the next one counting those held back,
and every caller told of an incident can find it in the log."""

from __future__ import annotations

import logging
import re
import time

import grpc
import pytest

from privaudit.services.common import logs
from privaudit.services.common.auth import TokenAuth
from privaudit.services.common.channels import ChannelSecurity, open_channel
from privaudit.services.common.logs import Throttle
from privaudit.services.common.server import ServerOptions, start_server
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc, reporter_pb2, reporter_pb2_grpc

FLOOD = 60
INTERVAL = 2.0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_of_a_kind_is_written_then_one_per_interval_counting_the_rest():
    clock = Clock()
    throttle = Throttle(interval=60, clock=clock)
    first = throttle.admit("a", "id-1")
    assert (first.write, first.held_back, first.label, first.note) == (True, 0, "id-1", "")
    held = [throttle.admit("a", f"id-{i}") for i in range(2, 12)]
    assert not any(a.write for a in held) and {a.label for a in held} == {"id-1"}
    assert throttle.admit("b", "other").write  # kinds are independent
    clock.now += 59.9
    assert not throttle.admit("a", "id-12").write
    clock.now += 0.1
    later = throttle.admit("a", "id-13")
    assert (later.write, later.held_back, later.label) == (True, 11, "id-13")
    assert later.note == " [11 more of this kind since the last one were not logged]"
    clock.now += 60
    assert throttle.admit("a", "id-14").held_back == 0


class Broken(attack_worker_pb2_grpc.AttackWorkerServiceServicer, reporter_pb2_grpc.ReporterServiceServicer):
    def GetCapacity(self, request, context):
        raise KeyError("slots")

    def BuildReport(self, request, context):
        yield from ()
        raise ZeroDivisionError("division by zero")


@pytest.fixture
def served(monkeypatch):
    """A server whose servicer breaks on every call, throttling per INTERVAL seconds, optionally
    behind a token check; returns (address, token)."""
    monkeypatch.setattr(logs, "THROTTLE_INTERVAL_S", INTERVAL)
    started = []

    def serve(auth: TokenAuth | None = None) -> str:
        def register(server):
            attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(Broken(), server)
            reporter_pb2_grpc.add_ReporterServiceServicer_to_server(Broken(), server)

        started.append(start_server(register, [], "127.0.0.1:0", max_workers=4, options=ServerOptions(auth=auth)))
        return started[-1].address

    yield serve
    for service in started:
        service.stop(0)


def incident(error: grpc.RpcError) -> str:
    return re.fullmatch(r"the service failed \(incident ([0-9a-f]{8})\); its log has the details",
                        error.details()).group(1)


def flood(call, times: int = FLOOD) -> list[grpc.RpcError]:
    errors = []
    for _ in range(times):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        errors.append(caught.value)
    return errors


def test_a_bug_hit_over_and_over_logs_one_traceback_per_interval_and_every_incident_is_findable(served, caplog):
    caplog.set_level(logging.INFO, logger="privaudit.services.common.server")
    with open_channel(served()) as channel:
        capacity = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).GetCapacity
        report = reporter_pb2_grpc.ReporterServiceStub(channel).BuildReport
        errors = flood(lambda: capacity(attack_worker_pb2.GetCapacityRequest(), timeout=10))
        errors += flood(lambda: list(report(reporter_pb2.BuildReportRequest(), timeout=10)))
        assert {e.code() for e in errors} == {grpc.StatusCode.INTERNAL}
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 2, [r.getMessage() for r in tracebacks]  # one per kind: KeyError, ZeroDivisionError
        assert {incident(e) for e in errors} == {re.search(r"incident (\w+)", r.getMessage()).group(1)
                                                 for r in tracebacks}
        time.sleep(INTERVAL + 0.1)
        [later] = flood(lambda: capacity(attack_worker_pb2.GetCapacityRequest(), timeout=10), times=1)
    written = [r for r in caplog.records if r.exc_info and incident(later) in r.getMessage()]
    assert len(written) == 1 and written[0].getMessage().endswith(
        f"[{FLOOD - 1} more of this kind since the last one were not logged]")
    assert "Traceback" not in "".join(e.details() for e in errors)


def test_undecodable_requests_log_one_line_per_method_per_interval(served, caplog):
    caplog.set_level(logging.INFO, logger="privaudit.services.common.server")
    with open_channel(served()) as channel:
        raw = channel.unary_unary("/privaudit.v1.AttackWorkerService/GetCapacity")
        errors = flood(lambda: raw(b"\xff\xff\xff\xff", timeout=10))
        time.sleep(INTERVAL + 0.1)
        errors += flood(lambda: raw(b"\xff\xff\xff\xff", timeout=10), times=1)
    assert {e.code() for e in errors} == {grpc.StatusCode.INVALID_ARGUMENT}
    lines = [r.getMessage() for r in caplog.records if "did not decode" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[1].endswith(f"[{FLOOD - 1} more of this kind since the last one were not logged]")
    assert not any(r.exc_info for r in caplog.records)


def test_refused_calls_log_one_line_per_method_and_reason_per_interval(served, caplog):
    caplog.set_level(logging.INFO, logger="privaudit.services.common.auth")
    address = served(TokenAuth(["right-token-1"], "a token"))
    for token in ("wrong-token-1", None):
        with open_channel(address, security=ChannelSecurity(token=token)) as channel:
            capacity = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).GetCapacity
            errors = flood(lambda: capacity(attack_worker_pb2.GetCapacityRequest(), timeout=10))  # noqa: B023
        assert {e.code() for e in errors} == {grpc.StatusCode.UNAUTHENTICATED}
    lines = [r.getMessage() for r in caplog.records if r.name == "privaudit.services.common.auth"]
    assert len(lines) == 2 and "wrong bearer token" in lines[0] and "no bearer token" in lines[1], lines
