"""Bearer-token authentication: token files, the server check and the client side.

A token file holds one token per line; blank lines and lines starting with `#`
are skipped. A token is printable ASCII without spaces. A server accepts a call
with exactly one `authorization` metadata entry, `Bearer <token>` (one space, no
other) for any token of its file; a client sends the first token of its file.
Tokens are compared in constant time (as SHA-256 digests, so their lengths do not
show either) and never logged, not even a refused one. Refusals are logged at
most once a minute per method and reason, with the count of those not logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health

from privaudit.services.common.logs import Throttle

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
SCHEME = "Bearer "
# Probes and `grpcurl list` work without a token: the health service and every reflection version.
EXEMPT_METHOD_PREFIXES = (f"/{health.SERVICE_NAME}/", "/grpc.reflection.")


class TokenFileError(ValueError):
    """A token file cannot be read or holds no usable token."""


def read_tokens(path: Path) -> tuple[str, ...]:
    """The tokens of a token file, in order. Raises TokenFileError naming the file (and line),
    never showing a token."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise TokenFileError(f"cannot read the token file {str(path)!r}: {error}") from None
    tokens = []
    for number, line in enumerate(lines, start=1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if not _well_formed(token):
            raise TokenFileError(f"{path}, line {number}: a token must be printable ASCII without spaces "
                                 "(write the token alone, without 'Bearer ')")
        tokens.append(token)
    if not tokens:
        raise TokenFileError(f"the token file {str(path)!r} holds no token (one per line; # starts a comment)")
    return tuple(tokens)


def _well_formed(token: str) -> bool:
    """Whether `token` can be a token: printable ASCII without spaces, not empty."""
    return bool(token) and token.isascii() and token.isprintable() and " " not in token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenAuth(grpc.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, every call without one of `tokens` as its bearer token,
    except those to the health and reflection services. `needs` tells a refused caller what to
    send, e.g. "a client token: privaudit --token-file FILE"."""

    def __init__(self, tokens: Sequence[str], needs: str):
        if not tokens:
            raise ValueError("TokenAuth needs at least one token")
        self._digests = [_digest(token) for token in tokens]
        self._needs = needs
        self.refusals = Throttle()  # a caller can send refused calls in bulk: logged once a minute per kind

    def accepts(self, token: str) -> bool:
        """Whether `token` is one of the tokens, compared in constant time against every one."""
        given = _digest(token)
        return any([hmac.compare_digest(given, digest) for digest in self._digests])  # a list: no shortcut

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method.startswith(EXEMPT_METHOD_PREFIXES):
            return continuation(details)
        problem = self._problem([value for key, value in details.invocation_metadata or () if key == AUTHORIZATION])
        if problem is None:
            return continuation(details)
        handler = continuation(details)
        if handler is None:  # an unknown method: UNIMPLEMENTED reveals nothing reflection does not
            return None
        return _refusal(handler, details.method, problem, f"{problem}; this service requires {self._needs}",
                        self.refusals)

    def _problem(self, authorizations: list[Any]) -> str | None:
        """Why a call with these `authorization` values is refused, or None when it is accepted."""
        if not authorizations:
            return "no bearer token"
        if len(authorizations) > 1:
            return f"{len(authorizations)} authorization headers; send exactly one"
        [authorization] = authorizations
        if not isinstance(authorization, str) or not authorization.startswith(SCHEME):
            return f"the authorization metadata is not '{SCHEME}<token>'"
        token = authorization[len(SCHEME):]
        if not _well_formed(token):
            return f"the bearer token is not well formed ('{SCHEME}' and then printable ASCII without spaces)"
        if not self.accepts(token):
            return "wrong bearer token"
        return None


def _refusal(handler: grpc.RpcMethodHandler, method: str, problem: str, message: str,
             throttle: Throttle) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that logs the refusal (peer and method only; once
    per `throttle`'s interval per method and problem) and aborts with UNAUTHENTICATED. The request
    of a refused call is never deserialized."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        admitted = throttle.admit((method, problem))
        if admitted.write:
            log.warning("refused %s from %s: %s%s", method, context.peer(), problem, admitted.note)
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def refuse_stream(request: Any, context: grpc.ServicerContext) -> Any:
        refuse(request, context)
        yield  # pragma: no cover (abort raises)

    kind = (handler.request_streaming, handler.response_streaming)
    build = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return build(refuse_stream if handler.response_streaming else refuse)


class TokenSender(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call of a channel (plaintext or TLS alike)."""

    def __init__(self, token: str):
        self._entry = (AUTHORIZATION, SCHEME + token)

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [entry for entry in details.metadata or () if entry[0] != AUTHORIZATION]
        return _CallDetails(details.method, details.timeout, [*metadata, self._entry], details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression
