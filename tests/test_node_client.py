"""The Node.js example client (client/examples/node) against a real local cluster.

It loads the repo's protos with @grpc/proto-loader, submits a typed BASELINE task
and prints progress, results and the text report. Its output is checked against
the orchestrator's own record of the same audit, replayed with WatchAudit. Its TLS and
token options are checked against a second orchestrator, serving mTLS and requiring a
client token, in front of the same worker and reporter.
Skipped only when npm is missing or its registry cannot be reached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from service_processes import ServiceProcesses
from test_tls import PKI

from privaudit.client import AuditClient, LocalCluster
from privaudit.v1 import report_pb2

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = REPO / "client" / "examples" / "node"
# npm's codes for a registry it cannot reach (DNS, refused, reset, timed out, offline mode).
UNREACHABLE = re.compile(r"\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|ENOTCACHED)\b")
CLIENT_TOKEN = "node-client-token-5b1e"  # what the secured orchestrator accepts


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The example's folder with its dependencies installed from package-lock.json."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js client not tested: `node` and `npm` are needed on PATH (Node.js 20 or later)")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        completed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                                   capture_output=True, text=True, timeout=300)
        if completed.returncode != 0:
            unreachable = UNREACHABLE.search(completed.stderr)
            if unreachable:
                pytest.skip(f"Node.js client not tested: `npm ci` cannot reach the npm registry ({unreachable[1]})")
            pytest.fail(f"`npm ci` in {NODE_DIR} failed:\n{completed.stdout}\n{completed.stderr}")
    return NODE_DIR


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=1, storage_root=REPO) as running:
        yield running


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(cluster, pki, tmp_path_factory):
    """An orchestrator serving mTLS (certificate for localhost and 127.0.0.1, clients signed by the CA)
    and requiring a client token, using the plaintext cluster's worker and reporter. Yields
    (address, token file)."""
    folder = tmp_path_factory.mktemp("secured")
    tokens = folder / "client-tokens"
    tokens.write_text(f"# the Node example's\n\n{CLIENT_TOKEN}\n")
    processes = ServiceProcesses(folder)
    try:
        address = processes.start(
            "orchestrator", "--workers", cluster.service("worker-0").address,
            "--reporter", cluster.service("reporter").address,
            "--tls-cert", str(pki.orchestrator[0]), "--tls-key", str(pki.orchestrator[1]),
            "--tls-client-ca", str(pki.ca.pem), "--token-file", str(tokens))
        yield address, tokens
    finally:
        processes.stop()


def run_audit_js(folder: Path, *args: str, orchestrator: str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`node audit.js ARGS`, with PRIVAUDIT_ORCHESTRATOR set to `orchestrator` (unset when None), no
    PRIVAUDIT_CLIENT_* variable but those of `env`."""
    env = {**{key: value for key, value in os.environ.items()
              if key != "PRIVAUDIT_ORCHESTRATOR" and not key.startswith("PRIVAUDIT_CLIENT_")}, **(env or {})}
    if orchestrator is not None:
        env["PRIVAUDIT_ORCHESTRATOR"] = orchestrator
    return subprocess.run(["node", "audit.js", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


def test_example_audit_prints_progress_results_and_the_report(node_client, cluster):
    completed = run_audit_js(node_client, cluster.address)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    accepted = re.fullmatch(r"accepted  audit (\w+): BASELINE \(seed \d+\)", lines[0])
    assert accepted, lines[0]
    task_id = accepted.group(1)

    with AuditClient(cluster.address) as auditor:
        events = list(auditor.watch(task_id))
        status = auditor.status(task_id)
    kinds = [event.WhichOneof("kind") for event in events]
    # One line per progress event, naming the attack and the stage.
    progress_lines = [line for line in lines if line.startswith("progress  ")]
    assert len(progress_lines) == kinds.count("progress") > 0
    assert all(line.startswith("progress  [1/1 BASELINE] ") for line in progress_lines)
    assert {"LOAD", "PREDICT", "SCORE"} <= {line.split()[3] for line in progress_lines}
    # The result line carries the orchestrator's metrics.
    metrics = status.results[0].metrics
    assert (f"result    [1/1 BASELINE] SUCCEEDED  auc {metrics.auc:.4f}  advantage {metrics.advantage:.4f}"
            f"  accuracy {metrics.accuracy:.4f}") in lines
    # The report is every text report_chunk, in order, and has the seed's layout; the JSON report's chunks,
    # which the stream carries as well, are not printed.
    chunks = [event.report_chunk for event in events if event.HasField("report_chunk")]
    report = b"".join(chunk.data for chunk in chunks if chunk.format == report_pb2.REPORT_FORMAT_TEXT).decode()
    assert report.strip() and report in completed.stdout
    assert {chunk.format for chunk in chunks} == {report_pb2.REPORT_FORMAT_TEXT, report_pb2.REPORT_FORMAT_JSON}
    assert '"schema_version"' not in completed.stdout
    positions = [report.index(heading) for heading in ("Models:", "Datasets:", "Attacks:", "Summary:")]
    assert positions == sorted(positions)
    assert f"Task: {task_id}" in report and "- name: BASELINE" in report
    risk = report_pb2.RiskLevel.Name(events[-1].done.overall_risk).removeprefix("RISK_LEVEL_")
    assert f"Overall risk: {risk}" in report
    assert lines[-1] == f"done      1 succeeded, 0 failed, overall risk {risk}"


def test_invalid_typed_task_exits_2_with_the_status_naming_the_field(node_client, cluster):
    completed = run_audit_js(node_client, "--target-model", "../outside/digits_mlp", orchestrator=cluster.address)
    assert completed.returncode == 2
    assert completed.stdout == ""  # refused before anything ran
    assert "SubmitAudit failed: INVALID_ARGUMENT:" in completed.stderr
    assert "attacks[0].args.target_model: '../outside/digits_mlp' leaves the storage root" in completed.stderr


def test_unreachable_orchestrator_exits_1_with_unavailable(node_client):
    completed = run_audit_js(node_client, "127.0.0.1:1")
    assert completed.returncode == 1
    assert "SubmitAudit failed: UNAVAILABLE:" in completed.stderr


def test_no_address_is_a_usage_error(node_client):
    completed = run_audit_js(node_client)
    assert completed.returncode == 2
    assert "usage: node audit.js [HOST:PORT]" in completed.stderr


def as_args(flags: dict[str, str]) -> list[str]:
    return [word for pair in flags.items() for word in pair]


def mtls_flags(pki: PKI, tokens: Path) -> dict[str, str]:
    """Flag -> value: the CA, the client certificate and key, the token file."""
    return {"--tls-ca": str(pki.ca.pem), "--tls-cert": str(pki.client[0]), "--tls-key": str(pki.client[1]),
            "--token-file": str(tokens)}


@pytest.mark.parametrize("given_by", ["flags", "environment"])
def test_an_audit_runs_over_mtls_with_a_token(node_client, secured, pki, given_by):
    address, tokens = secured
    flags = mtls_flags(pki, tokens)
    if given_by == "flags":
        completed = run_audit_js(node_client, address, *as_args(flags))
    else:
        env = {f"PRIVAUDIT_CLIENT_{flag[2:].replace('-', '_').upper()}": value for flag, value in flags.items()}
        completed = run_audit_js(node_client, address, env=env)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-1].startswith("done      1 succeeded, 0 failed, overall risk ")


@pytest.mark.parametrize(("left_out", "refusal"), [
    ("--token-file", "UNAUTHENTICATED: no bearer token"),
    ("--tls-cert", None),  # mTLS: the handshake fails without a client certificate
    ("--tls-ca", None),  # plaintext towards a TLS server
])
def test_a_missing_credential_is_refused_by_the_orchestrator(node_client, secured, pki, left_out, refusal):
    address, tokens = secured
    flags = mtls_flags(pki, tokens)
    del flags[left_out]
    if left_out == "--tls-cert":
        del flags["--tls-key"]
    completed = run_audit_js(node_client, address, *as_args(flags))
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert f"SubmitAudit failed: {refusal or 'UNAVAILABLE'}" in completed.stderr


def test_a_wrong_token_is_refused_and_never_printed(node_client, secured, pki, tmp_path):
    address, tokens = secured
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-9f3a\n")
    flags = {**mtls_flags(pki, tokens), "--token-file": str(wrong)}
    completed = run_audit_js(node_client, address, *as_args(flags))
    assert completed.returncode == 1
    assert "SubmitAudit failed: UNAUTHENTICATED" in completed.stderr
    assert "not-the-token-9f3a" not in completed.stdout + completed.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-cert", "client.pem"], "--tls-cert and --tls-key: the client certificate needs its private key"),
    (["--tls-server-name", "orchestrator"], "--tls-server-name needs TLS: give --tls-ca"),
    (["--tls-ca", "no-such-ca.pem"], "--tls-ca: cannot read the CA bundle 'no-such-ca.pem'"),
    (["--token-file", "empty"], "--token-file: the token file 'empty' holds no token"),
    (["--token-file", "spaced"], "--token-file: spaced, line 2: a token must be printable ASCII without spaces"),
])
def test_an_unusable_connection_option_exits_2_naming_it(node_client, tmp_path, args, message):
    (tmp_path / "empty").write_text("# nothing but a comment\n\n")
    (tmp_path / "spaced").write_text("# a token, written with its scheme\nBearer abc\n")
    files = [str(tmp_path / word) if (tmp_path / word).exists() else word for word in args]
    completed = run_audit_js(node_client, "127.0.0.1:1", *files)
    assert completed.returncode == 2
    assert message.replace("'empty'", f"'{tmp_path / 'empty'}'").replace(
        "spaced,", f"{tmp_path / 'spaced'},") in completed.stderr


@pytest.mark.parametrize(("server_name", "served"), [("localhost", True), ("elsewhere.example", False)])
def test_the_server_name_given_is_the_one_verified(node_client, secured, pki, server_name, served):
    """The orchestrator's certificate names localhost and 127.0.0.1, never elsewhere.example."""
    address, tokens = secured
    flags = {**mtls_flags(pki, tokens), "--tls-server-name": server_name}
    completed = run_audit_js(node_client, address, *as_args(flags))
    assert completed.returncode == (0 if served else 1), completed.stderr
    assert served or "SubmitAudit failed: UNAVAILABLE" in completed.stderr
