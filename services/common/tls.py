"""TLS material: PEM files read and checked once, and the gRPC credentials built from them;
and telling whether a server speaks TLS at all.

`ServerTLS` is what a service presents (its certificate) and, for mTLS, the CA its
callers' certificates must chain to. `ClientTLS` is what a caller trusts (a CA
bundle) and, for mTLS, the certificate it presents. Every problem with a file is a
`TLSConfigError` naming the file and what it should hold. `served_protocol` probes a
server that a channel cannot reach: gRPC reports a TLS mismatch only as a closed
socket or a failed handshake, and keeps retrying until the caller's deadline;
`protocol_mismatch` turns what it finds into what to change.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc

_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = "PRIVATE KEY-----"  # "BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY", "BEGIN EC PRIVATE KEY"


class TLSConfigError(ValueError):
    """A certificate, key or CA file is missing, unreadable or not what it should be."""


def read_pem(path: Path, role: str, marker: str = _CERTIFICATE) -> bytes:
    """The bytes of PEM file `path`, checked to contain `marker`; `role` says what the file is
    for in error messages (e.g. "the server certificate (--tls-cert)")."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TLSConfigError(f"cannot read {role} {str(path)!r}: {error.strerror or error}") from None
    if marker.encode() not in data:
        what = "PEM private key" if marker == _PRIVATE_KEY else "PEM certificate"
        raise TLSConfigError(f"{role} {str(path)!r} holds no {what} (no '{marker}' line)")
    return data


def _key_pair(cert: Path | None, key: Path | None, cert_role: str, key_role: str) -> tuple[bytes, bytes] | None:
    """(certificate chain, private key), or None when neither file is given."""
    if (cert is None) != (key is None):
        missing, given = (key_role, cert_role) if key is None else (cert_role, key_role)
        raise TLSConfigError(f"{given} needs {missing} as well: give both or neither")
    if cert is None or key is None:
        return None
    return read_pem(cert, cert_role), read_pem(key, key_role, _PRIVATE_KEY)


@dataclass(frozen=True)
class ServerTLS:
    """A service's certificate and key; with `client_ca`, callers must present a certificate
    signed by it (mTLS)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, cert: Path | None, key: Path | None, client_ca: Path | None,
                   flags: str = "--tls") -> ServerTLS | None:
        """TLS from files named by flags `{flags}-cert`, `{flags}-key`, `{flags}-client-ca`;
        None (plaintext) when no file is given."""
        pair = _key_pair(cert, key, f"the server certificate ({flags}-cert)", f"its private key ({flags}-key)")
        if pair is None:
            if client_ca is not None:
                raise TLSConfigError(f"{flags}-client-ca (mTLS) needs TLS: give {flags}-cert and {flags}-key too")
            return None
        ca = read_pem(client_ca, f"the client CA ({flags}-client-ca)") if client_ca else None
        return cls(*pair, client_ca=ca)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.private_key, self.cert_chain)], root_certificates=self.client_ca,
                                           require_client_auth=self.client_ca is not None)


@dataclass(frozen=True)
class ClientTLS:
    """What a caller trusts (`root_ca`; None: the system's CAs) and, for mTLS, the certificate
    it presents. `server_name` is the name the server's certificate must carry when it is not
    the host the address names (e.g. when dialling pod IPs)."""

    root_ca: bytes | None = None
    cert_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(cls, ca: Path | None, cert: Path | None, key: Path | None, server_name: str | None = None,
                   flags: str = "--tls") -> ClientTLS | None:
        """TLS from files named by flags `{flags}-ca`, `{flags}-cert`, `{flags}-key`; None
        (plaintext) when no file is given."""
        pair = _key_pair(cert, key, f"the client certificate ({flags}-cert)", f"its private key ({flags}-key)")
        if ca is None and pair is None:
            if server_name:
                raise TLSConfigError(f"{flags}-server-name needs TLS: give {flags}-ca")
            return None
        root = read_pem(ca, f"the CA bundle ({flags}-ca)") if ca else None
        return cls(root, *(pair or (None, None)), server_name=server_name or None)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_ca, self.private_key, self.cert_chain)

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


# An HTTP/2 client's first bytes: the connection preface and an empty SETTINGS frame. A plaintext
# HTTP/2 server answers with a SETTINGS frame (frame type 4, the fourth byte of its header).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_SETTINGS = 4


def served_protocol(address: str, timeout: float) -> Literal["tls", "plaintext"] | None:
    """What the server at `address` (host:port, [v6]:port, dns:///host:port) speaks: "plaintext"
    when it answers an HTTP/2 preface in HTTP/2, "tls" when it completes a TLS handshake (no
    certificate checked: only the protocol is asked) or answers one with a TLS alert; None when
    neither shows (nothing listens, another target form, no answer within `timeout` seconds)."""
    target = _host_port(address)
    if target is None:
        return None
    if _answers_http2(target, timeout):
        return "plaintext"
    if _answers_tls(target, timeout):
        return "tls"
    return None


def protocol_mismatch(address: str, uses_tls: bool, timeout: float, caller: str, flags: str) -> str | None:
    """Why `caller` (e.g. "the orchestrator"), which reaches `address` over TLS (`uses_tls`) or in
    plaintext with its `{flags}-ca`, `{flags}-cert` and `{flags}-key` flags, cannot connect,
    when the server there speaks the other protocol: what each side speaks and what to change.
    None when the server speaks the caller's protocol, or nothing shows within `timeout`."""
    served = served_protocol(address, timeout)
    if served is None or (served == "tls") == uses_tls:
        return None
    if served == "tls":
        return (f"it serves TLS and {caller} connects in plaintext; give {caller} the CA that signed its "
                f"certificate ({flags}-ca; with mTLS also {flags}-cert and {flags}-key)")
    return (f"it serves plaintext and {caller} connects over TLS; drop {caller}'s {flags}-ca, {flags}-cert and "
            f"{flags}-key, or serve TLS there (its --tls-cert and --tls-key)")


def _host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.removeprefix("dns:///").rpartition(":")
    if not host or not port.isdigit() or "/" in host:
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


def _answers_http2(target: tuple[str, int], timeout: float) -> bool:
    try:
        with socket.create_connection(target, timeout=timeout) as connection:
            connection.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:
                received = connection.recv(9 - len(header))
                if not received:
                    return False
                header += received
    except OSError:
        return False
    return header[3] == _HTTP2_SETTINGS


def _answers_tls(target: tuple[str, int], timeout: float) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(target, timeout=timeout) as connection, \
                context.wrap_socket(connection, server_hostname=target[0]):
            return True
    except ssl.SSLError as error:  # a TLS alert is TLS too (e.g. an mTLS server without our certificate)
        return "ALERT" in (error.reason or "")
    except OSError:
        return False
