"""Bearer tokens: token files, the orchestrator's client tokens and the internal token of workers and reporter."""

from __future__ import annotations

import logging
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from service_processes import REPO, when_serving
from test_orchestrator import TASK, ScriptedReporter, ScriptedWorker, succeed

from privaudit.client.api import AuditClient, AuditError
from privaudit.services.common.auth import TokenAuth, TokenFileError, read_tokens
from privaudit.services.common.channels import ChannelSecurity, open_channel
from privaudit.services.common.server import ServerOptions, start_server
from privaudit.services.orchestrator.app import Orchestrator, OrchestratorConfig
from privaudit.services.orchestrator.scheduler import JobSettings
from privaudit.services.orchestrator.worker_pool import WORKER_SERVICE
from privaudit.v1 import (
    attack_worker_pb2,
    attack_worker_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    reporter_pb2,
    reporter_pb2_grpc,
    results_pb2,
)

CLIENT_TOKENS = "# who may submit audits\nalice-3f9c2a\n\n  bob-77d1e0  \n"
INTERNAL_TOKEN = "internal-5a0b9e"


def token_file(tmp_path, text: str, name: str = "tokens"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- token files


def test_a_token_file_holds_one_token_a_line_without_comments_or_blanks(tmp_path):
    assert read_tokens(token_file(tmp_path, CLIENT_TOKENS)) == ("alice-3f9c2a", "bob-77d1e0")


@pytest.mark.parametrize(("text", "expected"), [
    ("# only a comment\n\n", "holds no token"),
    ("Bearer secret-1234\n", "line 1: a token must be printable ASCII without spaces"),
    ("ok\nsecret\u00e9-1234\n", "line 2: a token must be printable ASCII"),
])
def test_a_bad_token_file_is_refused_naming_the_line_but_never_the_token(tmp_path, text, expected):
    with pytest.raises(TokenFileError) as refused:
        read_tokens(token_file(tmp_path, text))
    assert expected in str(refused.value)
    assert "secret" not in str(refused.value)


def test_a_missing_token_file_is_named(tmp_path):
    with pytest.raises(TokenFileError, match=r"cannot read the token file .*no-such-file"):
        read_tokens(tmp_path / "no-such-file")


def test_tokens_are_matched_exactly():
    auth = TokenAuth(["alice-3f9c2a", "bob-77d1e0"], "a token")
    assert auth.accepts("alice-3f9c2a") and auth.accepts("bob-77d1e0")
    for wrong in ("alice-3f9c2", "alice-3f9c2a ", "ALICE-3F9C2A", "", "bob-77d1e0bob-77d1e0"):
        assert not auth.accepts(wrong), wrong


# ---------------------------------------------------------------- the orchestrator


@pytest.fixture
def secured(tmp_path):
    """An orchestrator requiring CLIENT_TOKENS, over a scripted worker and reporter that require
    INTERNAL_TOKEN, which the orchestrator sends."""
    internal = ServerOptions(auth=TokenAuth([INTERNAL_TOKEN], "the internal token"))
    worker = ScriptedWorker(succeed)
    peers = [start_server(lambda s: attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(worker, s),
                          [WORKER_SERVICE], "127.0.0.1:0", max_workers=8, options=internal),
             start_server(lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(ScriptedReporter(), s),
                          [], "127.0.0.1:0", max_workers=8, options=internal)]
    orchestrator = Orchestrator(OrchestratorConfig(
        reporter=peers[1].address, workers=[peers[0].address], jobs=JobSettings(assumed_job_limit=10),
        probe_interval=0.2, peers=ChannelSecurity(token=INTERNAL_TOKEN)))
    service = orchestrator.start("127.0.0.1:0", ServerOptions(
        auth=TokenAuth(read_tokens(token_file(tmp_path, CLIENT_TOKENS)), "a client token (--token-file)")))
    yield service.address
    orchestrator.stop(0)
    for peer in peers:
        peer.stop(0)


def test_the_right_token_runs_an_audit_through_workers_and_reporter_that_require_theirs(secured, tmp_path):
    with AuditClient(secured, token_file=token_file(tmp_path, "# mine\nbob-77d1e0\n", "mine")) as auditor:
        outcome = auditor.run(TASK)
        assert [r.status for r in outcome.results] == [results_pb2.ATTACK_STATUS_SUCCEEDED] * 2
        assert outcome.rendered == "0:ATTACK_STATUS_SUCCEEDED\n1:ATTACK_STATUS_SUCCEEDED\n"
        assert [a.task_id for a in auditor.list()] == [outcome.task_id]


@pytest.mark.parametrize(("token", "problem"), [(None, "no bearer token"), ("mallory-000000", "wrong bearer token")])
def test_a_missing_or_wrong_token_is_unauthenticated_on_every_method(secured, tmp_path, token, problem):
    file = token_file(tmp_path, token, "mine") if token else None
    with AuditClient(secured, token_file=file) as auditor:
        for call in (auditor.list, auditor.attacks, lambda: auditor.run(TASK)):
            with pytest.raises(AuditError) as refused:
                call()
            assert f"UNAUTHENTICATED: {problem}; this service requires a client token (--token-file)" \
                   in str(refused.value)


def test_an_authorization_that_is_not_bearer_is_refused_saying_so(secured):
    with grpc.insecure_channel(secured) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListAudits(orchestrator_pb2.ListAuditsRequest(), metadata=[("authorization", "Basic alice-3f9c2a")],
                            timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "the authorization metadata is not 'Bearer <token>'" in refused.value.details()


def list_audits(address: str, metadata: list[tuple[str, str]]) -> grpc.RpcError | None:
    """ListAudits with exactly this metadata: the error, or None when it was served."""
    with grpc.insecure_channel(address) as channel:
        try:
            orchestrator_pb2_grpc.OrchestratorServiceStub(channel).ListAudits(
                orchestrator_pb2.ListAuditsRequest(), metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return error
    return None


MALFORMED = "the bearer token is not well formed ('Bearer ' and then printable ASCII without spaces)"


@pytest.mark.parametrize(("metadata", "problem"), [
    ([("authorization", "Bearer alice-3f9c2a ")], MALFORMED),
    ([("authorization", " Bearer alice-3f9c2a")], "the authorization metadata is not 'Bearer <token>'"),
    ([("authorization", "Bearer  alice-3f9c2a")], MALFORMED),
    ([("authorization", "Bearer ")], MALFORMED),
    ([("authorization", "bearer alice-3f9c2a")], "the authorization metadata is not 'Bearer <token>'"),
    ([("authorization", "Bearer mallory-0"), ("authorization", "Bearer alice-3f9c2a")],
     "2 authorization headers; send exactly one"),
    ([("authorization", "Bearer alice-3f9c2a"), ("authorization", "Bearer alice-3f9c2a")],
     "2 authorization headers; send exactly one"),
])
def test_only_exactly_one_well_formed_authorization_is_accepted(secured, metadata, problem):
    assert list_audits(secured, [("authorization", "Bearer alice-3f9c2a")]) is None
    refused = list_audits(secured, metadata)
    assert refused is not None and refused.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
    assert refused.details() == f"{problem}; this service requires a client token (--token-file)"


def test_health_and_reflection_need_no_token(secured):
    with grpc.insecure_channel(secured) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert "privaudit.v1.OrchestratorService" in services


def test_a_refusal_is_logged_with_peer_and_method_but_never_the_token(secured, caplog):
    with caplog.at_level(logging.WARNING, logger="privaudit.services.common.auth"), \
            grpc.insecure_channel(secured) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        with pytest.raises(grpc.RpcError):
            stub.ListAudits(orchestrator_pb2.ListAuditsRequest(), metadata=[("authorization", "Bearer bob-77d1e")],
                            timeout=10)
    refusals = [r.getMessage() for r in caplog.records if r.name == "privaudit.services.common.auth"]
    assert len(refusals) == 1
    assert "/privaudit.v1.OrchestratorService/ListAudits" in refusals[0] and "127.0.0.1" in refusals[0]
    assert "wrong bearer token" in refusals[0]
    assert "bob" not in caplog.text


def test_without_a_token_file_a_server_warns_once_that_authentication_is_off(caplog):
    with caplog.at_level(logging.WARNING, logger="privaudit.services.common.server"):
        service = start_server(lambda server: None, [], "127.0.0.1:0")
    service.stop(0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "privaudit.services.common.server"]
    assert len(warnings) == 1 and "authentication is off" in warnings[0]


def test_an_orchestrator_without_the_internal_token_sees_the_worker_refuse_it(tmp_path):
    worker = ScriptedWorker(succeed)
    peer = start_server(lambda s: attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(worker, s),
                        [WORKER_SERVICE], "127.0.0.1:0", max_workers=8,
                        options=ServerOptions(auth=TokenAuth([INTERNAL_TOKEN], "the internal token")))
    orchestrator = Orchestrator(OrchestratorConfig(reporter="127.0.0.1:1", workers=[peer.address], probe_interval=0.2))
    try:
        orchestrator.start("127.0.0.1:0")
        [described] = orchestrator.pool.describe()
        assert "unhealthy: UNAUTHENTICATED: no bearer token; this service requires the internal token" in described
    finally:
        orchestrator.stop(0)
        peer.stop(0)


# ---------------------------------------------------------------- worker and reporter processes


@pytest.mark.e2e
def test_worker_and_reporter_processes_refuse_calls_without_the_internal_token(processes, tmp_path):
    tokens = token_file(tmp_path, f"{INTERNAL_TOKEN}\nnext-rotation-1\n")
    worker = processes.start("attack_worker", "--storage-root", str(tmp_path), "--internal-token-file", str(tokens))
    reporter = processes.start("reporter", env={"PRIVAUDIT_INTERNAL_TOKEN_FILE": str(tokens)})

    def capacity(token: str | None) -> attack_worker_pb2.GetCapacityResponse:
        with open_channel(worker, security=ChannelSecurity(token=token)) as channel:
            return attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).GetCapacity(
                attack_worker_pb2.GetCapacityRequest(), timeout=30)

    def report(token: str | None) -> list[reporter_pb2.BuildReportResponse]:
        with open_channel(reporter, security=ChannelSecurity(token=token)) as channel:
            return list(reporter_pb2_grpc.ReporterServiceStub(channel).BuildReport(
                reporter_pb2.BuildReportRequest(task_id="t"), timeout=30))  # no results: invalid, once let in

    for call in (capacity, report):
        for token in (None, "not-the-internal-token"):
            with pytest.raises(grpc.RpcError) as refused:
                call(token)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, call.__name__
            assert "the orchestrator's --internal-token-file" in refused.value.details()
    assert when_serving(lambda: capacity(INTERNAL_TOKEN)).slots == 1  # UNAVAILABLE until its launcher forks jobs
    assert capacity("next-rotation-1").slots == 1  # every token of the file is accepted
    with pytest.raises(grpc.RpcError) as answered:
        report(INTERNAL_TOKEN)
    assert answered.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # the reporter itself answered
    assert "the request has no attack results" in answered.value.details()
    for address in (worker, reporter):
        with grpc.insecure_channel(address) as channel:
            assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status \
                   == health_pb2.HealthCheckResponse.SERVING
    assert INTERNAL_TOKEN not in processes.log("attack_worker") + processes.log("reporter")
    assert "refused /privaudit.v1.AttackWorkerService/GetCapacity from ipv" in processes.log("attack_worker")


def test_a_service_with_an_unreadable_token_file_does_not_start(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "privaudit.services.reporter", "--internal-token-file",
                                str(tmp_path / "missing")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "--internal-token-file: cannot read the token file" in completed.stderr
