"""TLS and mTLS: certificate files, real servers and clients, the whole cluster over mTLS, the local cluster.

A throwaway PKI is made for the module with `cryptography`: a CA, an orchestrator certificate
for localhost and 127.0.0.1, an internal certificate naming only `privaudit-internal` (as a
worker reached by pod IP would have), client certificates, and a second CA that nobody trusts.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from service_processes import REPO, ServiceProcesses
from test_e2e import BASELINE_ONLY

from privaudit.client import cli
from privaudit.client.api import AuditClient, AuditError
from privaudit.client.local_cluster import LocalCluster
from privaudit.services.common.channels import ChannelSecurity, open_channel
from privaudit.services.common.config import SERVER_SECURITY_ENV
from privaudit.services.common.server import ServerOptions, start_server
from privaudit.services.common.tls import ClientTLS, ServerTLS, TLSConfigError, served_protocol
from privaudit.services.orchestrator.app import Orchestrator, OrchestratorConfig
from privaudit.v1 import results_pb2

INTERNAL_NAME = "privaudit-internal"
CLIENT_TOKEN = "client-token-81c4"
INTERNAL_TOKEN = "internal-token-2e7f"


# ---------------------------------------------------------------- a throwaway PKI


class Authority:
    """A CA that writes `NAME.pem` / `NAME.key` pairs it signs into `folder`."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.key = folder, ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = self._builder(self.name, self.key.public_key()).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(self.key, hashes.SHA256())
        self.pem = folder / f"{name}.pem"
        self.pem.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, dns: list[str], ips: list[str] = (), client: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        certificate = (self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
                       .add_extension(x509.SubjectAlternativeName(names), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                       .sign(self.key, hashes.SHA256()))
        cert, key_file = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert, key_file

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(hours=2)))


class PKI:
    def __init__(self, folder: Path):
        self.ca = Authority(folder, "ca")
        self.orchestrator = self.ca.issue("orchestrator", ["localhost"], ["127.0.0.1"])
        self.internal = self.ca.issue("internal", [INTERNAL_NAME])
        self.client = self.ca.issue("client", ["auditor"], client=True)
        self.peer_client = self.ca.issue("orchestrator-client", ["orchestrator"], client=True)
        self.rogue_ca = Authority(folder, "rogue-ca")
        self.rogue_client = self.rogue_ca.issue("rogue-client", ["auditor"], client=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------- certificate files


def test_tls_files_are_read_and_checked(pki):
    server = ServerTLS.from_files(*pki.orchestrator, pki.ca.pem)
    assert server.client_ca == pki.ca.pem.read_bytes() and b"PRIVATE KEY" in server.private_key
    assert ServerTLS.from_files(None, None, None) is None  # plaintext
    client = ClientTLS.from_files(pki.ca.pem, *pki.client, server_name="x")
    assert (client.root_ca, client.server_name) == (pki.ca.pem.read_bytes(), "x")
    assert client.channel_options() == [("grpc.ssl_target_name_override", "x")]
    assert ClientTLS.from_files(None, None, None) is None


@pytest.mark.parametrize(("build", "expected"), [
    (lambda p: ServerTLS.from_files(p.orchestrator[0], None, None),
     "the server certificate (--tls-cert) needs its private key (--tls-key) as well: give both or neither"),
    (lambda p: ServerTLS.from_files(None, None, p.ca.pem), "--tls-client-ca (mTLS) needs TLS: give --tls-cert"),
    (lambda p: ServerTLS.from_files(p.orchestrator[0], p.orchestrator[0], None),
     "its private key (--tls-key) '{folder}/orchestrator.pem' holds no PEM private key"),
    (lambda p: ServerTLS.from_files(p.orchestrator[1], p.orchestrator[1], None),
     "the server certificate (--tls-cert) '{folder}/orchestrator.key' holds no PEM certificate"),
    (lambda p: ClientTLS.from_files(p.ca.pem.with_name("missing.pem"), None, None, flags="--peer-tls"),
     "cannot read the CA bundle (--peer-tls-ca) '{folder}/missing.pem': No such file or directory"),
    (lambda p: ClientTLS.from_files(None, None, p.client[1]),
     "its private key (--tls-key) needs the client certificate (--tls-cert) as well"),
    (lambda p: ClientTLS.from_files(None, None, None, server_name="x"), "--tls-server-name needs TLS"),
])
def test_a_bad_tls_setting_is_refused_naming_flag_and_file(pki, build, expected):
    with pytest.raises(TLSConfigError) as refused:
        build(pki)
    assert expected.format(folder=pki.ca.folder) in str(refused.value)


def test_a_key_that_is_not_the_certificates_stops_the_server_saying_so(pki):
    with pytest.raises(SystemExit, match="with --tls-cert and --tls-key \\(is the key the certificate's\\?\\)"):
        start_server(lambda s: None, [], "127.0.0.1:0",
                     options=ServerOptions(tls=ServerTLS.from_files(pki.orchestrator[0], pki.client[1], None)))


# ---------------------------------------------------------------- real servers, in this process


@pytest.fixture
def orchestrator_serving(pki):
    """Starts an orchestrator (no workers needed to list audits) with the TLS settings given."""
    started: list[Orchestrator] = []

    def serve(client_ca: Path | None = None) -> str:
        started.append(Orchestrator(OrchestratorConfig(reporter="127.0.0.1:1")))
        tls = ServerTLS.from_files(*pki.orchestrator, client_ca)
        return started[-1].start("127.0.0.1:0", ServerOptions(tls=tls)).address

    yield serve
    for orchestrator in started:
        orchestrator.stop(0)


def listing(address: str, connect_timeout: float = 2, **tls) -> list:
    with AuditClient(address, connect_timeout=connect_timeout, **tls) as auditor:
        return auditor.list()


def test_tls_serves_a_client_that_trusts_the_ca(orchestrator_serving, pki):
    address = orchestrator_serving()
    assert listing(address, tls_ca=pki.ca.pem) == []
    assert listing(address.replace("127.0.0.1", "localhost"), tls_ca=pki.ca.pem) == []


@pytest.mark.parametrize(("tls", "cause"), [
    (lambda pki: {"tls_cert": pki.client[0], "tls_key": pki.client[1]}, "CERTIFICATE_VERIFY_FAILED"),  # system CAs
    (lambda pki: {"tls_ca": pki.rogue_ca.pem}, "CERTIFICATE_VERIFY_FAILED"),
])
def test_a_client_without_the_ca_cannot_connect_and_is_told_why(orchestrator_serving, pki, tls, cause):
    address = orchestrator_serving()
    with pytest.raises(AuditError) as failed:
        listing(address, **tls(pki))
    assert f"cannot reach the orchestrator at {address} within 2s" in str(failed.value)
    assert cause in str(failed.value)


@pytest.mark.parametrize("client_ca", [None, "ca"], ids=["tls", "mtls"])
def test_a_plaintext_client_of_a_tls_orchestrator_is_told_at_once(orchestrator_serving, pki, client_ca):
    address = orchestrator_serving(client_ca=pki.ca.pem if client_ca else None)
    started = time.monotonic()
    with pytest.raises(AuditError) as failed:
        listing(address, connect_timeout=30)
    assert time.monotonic() - started < 10, "a mismatch does not heal by waiting"
    assert str(failed.value) == (
        f"cannot connect to the orchestrator at {address}: it serves TLS and this client connected in plaintext; "
        "give the CA that signed its certificate (--tls-ca; with mTLS also --tls-cert and --tls-key)")


def test_a_tls_client_of_a_plaintext_orchestrator_is_told_at_once(pki):
    orchestrator = Orchestrator(OrchestratorConfig(reporter="127.0.0.1:1"))
    address = orchestrator.start("127.0.0.1:0").address
    try:
        started = time.monotonic()
        with pytest.raises(AuditError) as failed:
            listing(address, connect_timeout=30, tls_ca=pki.ca.pem)
        assert time.monotonic() - started < 10
        assert str(failed.value) == (
            f"cannot connect to the orchestrator at {address}: it serves plaintext and this client connected over "
            "TLS; drop --tls-ca, --tls-cert and --tls-key (and PRIVAUDIT_CLIENT_TLS_*), or serve TLS (the "
            "orchestrator's --tls-cert and --tls-key)")
        with AuditClient(address, connect_timeout=5) as plaintext:
            assert plaintext.list() == []
    finally:
        orchestrator.stop(0)


def test_the_protocol_probe_tells_tls_plaintext_and_nothing_apart(orchestrator_serving, pki):
    tls_address = orchestrator_serving()
    plain = start_server(lambda s: None, [], "127.0.0.1:0")
    try:
        assert served_protocol(tls_address, 2) == "tls"
        assert served_protocol(tls_address.replace("127.0.0.1", "localhost"), 2) == "tls"
        assert served_protocol(plain.address, 2) == "plaintext"
        assert served_protocol(f"dns:///{plain.address}", 2) == "plaintext"
        assert served_protocol("127.0.0.1:9", 2) is None  # nothing listens
        assert served_protocol("unix:/tmp/none.sock", 2) is None  # not host:port
    finally:
        plain.stop(0)


def test_mtls_serves_only_clients_with_a_certificate_from_the_client_ca(orchestrator_serving, pki):
    address = orchestrator_serving(client_ca=pki.ca.pem)
    assert listing(address, tls_ca=pki.ca.pem, tls_cert=pki.client[0], tls_key=pki.client[1]) == []
    with pytest.raises(AuditError):
        listing(address, tls_ca=pki.ca.pem)  # no client certificate
    with pytest.raises(AuditError):
        listing(address, tls_ca=pki.ca.pem, tls_cert=pki.rogue_client[0], tls_key=pki.rogue_client[1])


def test_a_peer_dialled_by_ip_is_verified_against_the_server_name_given(pki):
    service = start_server(lambda s: None, [], "127.0.0.1:0",
                           options=ServerOptions(tls=ServerTLS.from_files(*pki.internal, None)))

    def health(server_name: str | None) -> int:
        tls = ClientTLS.from_files(pki.ca.pem, None, None, server_name)
        with open_channel(service.address, security=ChannelSecurity(tls=tls)) as channel:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status

    try:
        assert health(INTERNAL_NAME) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            health(None)  # its certificate does not name 127.0.0.1
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        service.stop(0)


# ---------------------------------------------------------------- the whole cluster as processes


@pytest.fixture(scope="module")
def mtls_cluster(pki, tmp_path_factory):
    """Reporter and worker on mTLS with the internal certificate and token; an orchestrator on mTLS
    with its own certificate, a client token file, and TLS, a client certificate, the internal
    server name and the internal token towards its peers. Yields (address, token file)."""
    folder = tmp_path_factory.mktemp("mtls-cluster")
    internal_token, client_tokens = folder / "internal-token", folder / "client-tokens"
    internal_token.write_text(f"# rotated 2024-06\n{INTERNAL_TOKEN}\n")
    client_tokens.write_text(f"{CLIENT_TOKEN}\n")
    peer_serving = ["--tls-cert", str(pki.internal[0]), "--tls-key", str(pki.internal[1]),
                    "--tls-client-ca", str(pki.ca.pem), "--internal-token-file", str(internal_token)]
    processes = ServiceProcesses(folder)
    try:
        reporter = processes.start("reporter", *peer_serving)
        worker = processes.start("attack_worker", "--storage-root", str(REPO), *peer_serving)
        orchestrator = processes.start(
            "orchestrator", "--workers", worker, "--reporter", reporter, "--probe-interval", "0.5",
            "--tls-cert", str(pki.orchestrator[0]), "--tls-key", str(pki.orchestrator[1]),
            "--tls-client-ca", str(pki.ca.pem), "--token-file", str(client_tokens),
            "--peer-tls-ca", str(pki.ca.pem), "--peer-tls-cert", str(pki.peer_client[0]),
            "--peer-tls-key", str(pki.peer_client[1]), "--peer-tls-server-name", INTERNAL_NAME,
            env={"PRIVAUDIT_INTERNAL_TOKEN_FILE": str(internal_token)})
        yield orchestrator, client_tokens, processes
    finally:
        processes.stop()


@pytest.mark.e2e
def test_an_audit_runs_end_to_end_over_mtls_with_tokens(mtls_cluster, pki):
    address, tokens, processes = mtls_cluster
    with AuditClient(address, tls_ca=pki.ca.pem, tls_cert=pki.client[0], tls_key=pki.client[1],
                     token_file=tokens) as auditor:
        outcome = auditor.run(BASELINE_ONLY)
    [result] = outcome.results
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED and 0.5 < result.metrics.auc <= 1
    assert outcome.summary is not None and "BASELINE" in outcome.rendered
    logs = processes.log("orchestrator") + processes.log("attack_worker") + processes.log("reporter")
    assert "refused" not in logs and INTERNAL_TOKEN not in logs and CLIENT_TOKEN not in logs


@pytest.mark.e2e
def test_the_cli_connects_over_mtls_from_flags_or_the_environment(mtls_cluster, pki, monkeypatch, capsys, tmp_path):
    address, tokens, _ = mtls_cluster
    flags = ["--orchestrator", address, "--tls-ca", str(pki.ca.pem), "--tls-cert", str(pki.client[0]),
             "--tls-key", str(pki.client[1]), "--token-file", str(tokens)]
    assert cli.main(["attacks", *flags]) == cli.EXIT_OK
    assert "BASELINE:" in capsys.readouterr().out
    for name, value in (("CA", pki.ca.pem), ("CERT", pki.client[0]), ("KEY", pki.client[1])):
        monkeypatch.setenv(f"PRIVAUDIT_CLIENT_TLS_{name}", str(value))
    monkeypatch.setenv("PRIVAUDIT_CLIENT_TOKEN_FILE", str(tokens))
    task = tmp_path / "task.yaml"
    task.write_text(BASELINE_ONLY)
    assert cli.main(["run", str(task), "--orchestrator", address, "--quiet"]) == cli.EXIT_OK
    assert "BASELINE" in capsys.readouterr().out
    monkeypatch.delenv("PRIVAUDIT_CLIENT_TOKEN_FILE")
    assert cli.main(["list", "--orchestrator", address]) == cli.EXIT_FAILED
    assert "UNAUTHENTICATED: no bearer token" in capsys.readouterr().err
    assert cli.main(["list", *flags[:2], "--tls-ca", str(tmp_path / "nope.pem")]) == cli.EXIT_INVALID
    assert f"cannot read the CA bundle (--tls-ca) '{tmp_path / 'nope.pem'}'" in capsys.readouterr().err


# ---------------------------------------------------------------- the local cluster stays plaintext


@pytest.mark.e2e
def test_the_local_cluster_serves_plaintext_whatever_the_environment_says(pki, monkeypatch, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("some-token\n")
    for name, value in (("PRIVAUDIT_TLS_CERT", pki.orchestrator[0]), ("PRIVAUDIT_TLS_KEY", pki.orchestrator[1]),
                        ("PRIVAUDIT_TLS_CLIENT_CA", pki.ca.pem), ("PRIVAUDIT_TOKEN_FILE", tokens),
                        ("PRIVAUDIT_INTERNAL_TOKEN_FILE", tokens), ("PRIVAUDIT_PEER_TLS_CA", pki.ca.pem)):
        monkeypatch.setenv(name, str(value))
    with LocalCluster(workers=1, storage_root=REPO) as cluster, AuditClient(cluster.address) as auditor:
        outcome = auditor.run(BASELINE_ONLY)
    assert outcome.results[0].status == results_pb2.ATTACK_STATUS_SUCCEEDED


def test_the_local_cluster_clears_every_variable_that_secures_a_service():
    named = set()
    for service in ("orchestrator", "reporter", "attack_worker"):
        completed = subprocess.run([sys.executable, "-m", f"services.{service}", "--help"], cwd=REPO,
                                   capture_output=True, text=True, timeout=60)
        named |= set(re.findall(r"PRIVAUDIT_[A-Z_]*(?:TLS|TOKEN)[A-Z_]*", completed.stdout.replace("\n", " ")))
    assert named and named == set(SERVER_SECURITY_ENV)
