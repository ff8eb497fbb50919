"""Command-line flags with environment-variable fallbacks, shared by every service."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from privaudit.services.common.auth import TokenAuth, TokenFileError, read_tokens
from privaudit.services.common.channels import MAX_MESSAGE_BYTES
from privaudit.services.common.server import ServerOptions
from privaudit.services.common.tls import ClientTLS, ServerTLS, TLSConfigError

INTERNAL_TOKEN_ENV = "PRIVAUDIT_INTERNAL_TOKEN_FILE"
# What a worker or the reporter tells a caller it refused.
INTERNAL_TOKEN_HINT = "the internal token (the orchestrator's --internal-token-file)"
# The environment variables that make a service serve TLS or demand tokens; a loopback
# cluster started by the client clears them so that its services stay plaintext and open.
SERVER_SECURITY_ENV = ("PRIVAUDIT_TLS_CERT", "PRIVAUDIT_TLS_KEY", "PRIVAUDIT_TLS_CLIENT_CA", "PRIVAUDIT_TOKEN_FILE",
                       INTERNAL_TOKEN_ENV, "PRIVAUDIT_PEER_TLS_CA", "PRIVAUDIT_PEER_TLS_CERT",
                       "PRIVAUDIT_PEER_TLS_KEY", "PRIVAUDIT_PEER_TLS_SERVER_NAME")


def flag(parser: argparse.ArgumentParser, name: str, env: str, default: Any = None, **kwargs: Any) -> None:
    """Adds `--name`, whose default is $env when set and not empty, else `default`. The help says so."""
    kwargs["help"] = f"{kwargs.get('help', '')} (env {env}; default {default!r})".strip()
    parser.add_argument(name, default=os.environ.get(env) or default, **kwargs)


def add_server_flags(parser: argparse.ArgumentParser, service: str, default_port: int,
                     max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
    """The flags every service has: where to listen, where to report readiness, log level,
    TLS and the largest message accepted. `server_options` turns them into ServerOptions."""
    prefix = f"PRIVAUDIT_{service.upper()}"
    flag(parser, "--listen", f"{prefix}_LISTEN", f"0.0.0.0:{default_port}",
         help="host:port to serve gRPC on; port 0 picks a free port")
    flag(parser, "--ready-file", f"{prefix}_READY_FILE", None, type=Path,
         help="once serving, write the bound host:port to this file")
    flag(parser, "--log-level", "PRIVAUDIT_LOG_LEVEL", "INFO", help="DEBUG, INFO, WARNING or ERROR")
    flag(parser, "--tls-cert", "PRIVAUDIT_TLS_CERT", None, type=Path,
         help="PEM certificate (chain) to serve TLS with, with --tls-key; unset: plaintext")
    flag(parser, "--tls-key", "PRIVAUDIT_TLS_KEY", None, type=Path, help="PEM private key of --tls-cert")
    flag(parser, "--tls-client-ca", "PRIVAUDIT_TLS_CLIENT_CA", None, type=Path,
         help="PEM CA bundle: every caller must present a certificate it signed (mTLS)")
    flag(parser, "--max-message-bytes", "PRIVAUDIT_MAX_MESSAGE_BYTES", max_message_bytes, type=int,
         help="largest gRPC message accepted; a larger one is refused with RESOURCE_EXHAUSTED")


def add_internal_token_flag(parser: argparse.ArgumentParser, sends: bool) -> None:
    """`--internal-token-file`: the token the orchestrator sends to workers and the reporter
    (`sends`), or the tokens they accept from it."""
    if sends:
        what = "file whose first token is sent on every call to the workers and the reporter"
    else:
        what = ("file of accepted tokens, one a line: every call except health and reflection must carry one "
                "(the orchestrator's --internal-token-file); unset: calls are not checked")
    flag(parser, "--internal-token-file", INTERNAL_TOKEN_ENV, None, type=Path, help=what)


def add_client_tls_flags(parser: argparse.ArgumentParser, flags: str, env: str, peer: str) -> None:
    """`{flags}-ca`, `-cert`, `-key` and `-server-name` (env `{env}_CA`, ...): how to reach
    `peer` over TLS. `client_tls` reads them."""
    flag(parser, f"{flags}-ca", f"{env}_CA", None, type=Path,
         help=f"PEM CA bundle to verify {peer} with; turns TLS on")
    flag(parser, f"{flags}-cert", f"{env}_CERT", None, type=Path,
         help=f"PEM client certificate to present to {peer} (mTLS), with {flags}-key")
    flag(parser, f"{flags}-key", f"{env}_KEY", None, type=Path, help=f"PEM private key of {flags}-cert")
    flag(parser, f"{flags}-server-name", f"{env}_SERVER_NAME", None,
         help=f"the name to expect in the certificate of {peer} when it is not the host dialled")


def client_tls(parser: argparse.ArgumentParser, args: argparse.Namespace, flags: str) -> ClientTLS | None:
    """The ClientTLS of the flags `add_client_tls_flags(parser, flags, ...)` added."""
    try:
        return ClientTLS.from_files(*(_value(args, f"{flags}-{part}") for part in ("ca", "cert", "key", "server-name")),
                                    flags=flags)
    except TLSConfigError as error:
        parser.error(str(error))


def first_token(parser: argparse.ArgumentParser, args: argparse.Namespace, token_flag: str) -> str | None:
    """The token a caller sends: the first of the file flag `token_flag` names (None without one)."""
    path = _value(args, token_flag)
    try:
        return read_tokens(path)[0] if path else None
    except TokenFileError as error:
        parser.error(f"{token_flag}: {error}")


def server_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                   tokens_flag: str = "--internal-token-file", needs: str = INTERNAL_TOKEN_HINT) -> ServerOptions:
    """The ServerOptions of the flags `add_server_flags` added. With a token file named by flag
    `tokens_flag`, calls must carry one of its tokens, and a refused caller is told `needs`."""
    if args.max_message_bytes < 1:
        parser.error(f"--max-message-bytes: must be at least 1, got {args.max_message_bytes}")
    try:
        tls = ServerTLS.from_files(args.tls_cert, args.tls_key, args.tls_client_ca)
    except TLSConfigError as error:
        parser.error(str(error))
    path = _value(args, tokens_flag)
    try:
        auth = TokenAuth(read_tokens(path), needs) if path else None
    except TokenFileError as error:
        parser.error(f"{tokens_flag}: {error}")
    return ServerOptions(tls=tls, auth=auth, max_receive_bytes=args.max_message_bytes)


def _value(args: argparse.Namespace, flag_name: str) -> Any:
    """The parsed value of `--flag-name`."""
    return getattr(args, flag_name.lstrip("-").replace("-", "_"))


def split_addresses(value: str | None) -> list[str]:
    """'a:1, b:2' -> ['a:1', 'b:2']."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]
