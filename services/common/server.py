"""Running a gRPC service: health, reflection, TLS, bearer tokens, message size limit,
the mapping of exceptions to statuses, readiness file and graceful shutdown.

Every service's `__main__` calls `start_server` with a function that registers its
servicers; everything else about serving is the same for all of them. Servicers raise the
typed failures of `privaudit.services.common.errors` and never call `context.abort`:
`FailureInterceptor`, installed on every server, is the one place where an exception becomes
a status.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from privaudit.services.common.auth import TokenAuth
from privaudit.services.common.channels import MAX_MESSAGE_BYTES
from privaudit.services.common.errors import INFRASTRUCTURE, Failure, InvalidArgument, ServiceBug
from privaudit.services.common.logs import Throttle
from privaudit.services.common.reflection import enable_reflection
from privaudit.services.common.tls import ServerTLS

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


@dataclass(frozen=True)
class ServerOptions:
    """How a service serves beyond its address: over TLS (None: plaintext), to callers with a
    bearer token (None: anyone; health and reflection are always open), and how large a
    message it accepts (larger ones are refused with RESOURCE_EXHAUSTED)."""

    tls: ServerTLS | None = None
    auth: TokenAuth | None = None
    max_receive_bytes: int = MAX_MESSAGE_BYTES


DEFAULT_OPTIONS = ServerOptions()  # plaintext, open to every caller
OWN_METHOD_PREFIX = "/privaudit."


class FailureInterceptor(grpc.ServerInterceptor):
    """Turns what a servicer raises into its status: a `Failure` into its code, message and
    details (`Failure.to_status`); any other exception into INTERNAL with an incident id, the
    exception logged with its traceback (once a minute per kind: see `status_of`) and never sent
    to the caller. A request that does not decode is INVALID_ARGUMENT, logged in one line (once a
    minute per method). A status the handler set itself (a `context.abort`) is left as it is."""

    def __init__(self) -> None:
        # What callers can make a service log over and over, throttled.
        self.unexpected_errors = Throttle()
        self.undecodable_requests = Throttle()

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or not details.method.startswith(OWN_METHOD_PREFIX):
            return handler  # gRPC's own services (health, reflection) map their errors themselves
        return _guarded(handler, details.method, self)


class _Undecodable:
    """Stands for a request whose bytes did not decode, so the handler can refuse it."""

    def __init__(self, error: Exception):
        self.error = error


def _guarded(handler: grpc.RpcMethodHandler, method: str, logged: FailureInterceptor) -> grpc.RpcMethodHandler:
    """`handler` with every exception it raises mapped to a status (`logged` holds the throttles)."""
    decode = handler.request_deserializer

    def decoded(data: bytes) -> Any:
        try:
            return decode(data) if decode else data
        except Exception as error:  # what a malformed message raises depends on the protobuf runtime
            return _Undecodable(error)

    def fail(context: grpc.ServicerContext, error: Exception) -> None:
        if context.code() is not None:  # the handler chose the status (context.abort): keep it
            raise error
        context.abort_with_status(status_of(error, method, context.peer(), logged.unexpected_errors))

    def check(request: Any) -> None:
        if isinstance(request, _Undecodable):
            admitted = logged.undecodable_requests.admit(method)
            if admitted.write:
                log.warning("refused %s: its request did not decode (%s)%s", method, type(request.error).__name__,
                            admitted.note)
            raise InvalidArgument.at("", f"the request is not a valid message for {method}: "
                                         f"{type(request.error).__name__}: {request.error}")

    def streamed(requests: Iterator[Any]) -> Iterator[Any]:
        """A stream's messages, each checked as the handler reads it. A stream that gRPC cut (a
        message past the size limit, the caller gone) ends the call without a traceback: gRPC
        has given the caller its status already."""
        try:
            for message in requests:
                check(message)
                yield message
        except grpc.RpcError:
            raise Failure("the request stream was cut by gRPC, which told the caller why",
                          code=grpc.StatusCode.CANCELLED, fault=INFRASTRUCTURE, retryable=True) from None

    def checked(request: Any) -> Any:
        """A unary request, checked; a stream of them, checked as they come."""
        if handler.request_streaming:
            return streamed(request)
        check(request)
        return request

    if handler.response_streaming:
        stream = handler.unary_stream or handler.stream_stream

        def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from stream(checked(request), context)
            except Exception as error:
                fail(context, error)
    else:
        unary = handler.unary_unary or handler.stream_unary

        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return unary(checked(request), context)
            except Exception as error:
                fail(context, error)

    build = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return build(behaviour, request_deserializer=decoded, response_serializer=handler.response_serializer)


def status_of(error: Exception, method: str, peer: str, throttle: Throttle) -> grpc.Status:
    """The status `error` travels as. An exception that is not a Failure is logged here with its
    traceback, once per `throttle`'s interval (a minute) per kind: method, exception type and the
    line that raised it; the next one written counts those held back. Every caller is given an
    incident id that is in the log: a held-back one shares the id of the last of its kind written."""
    if isinstance(error, Failure):
        return error.to_status()
    raised_at = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    kind = (method, type(error).__qualname__, raised_at and (raised_at.filename, raised_at.lineno))
    admitted = throttle.admit(kind, uuid.uuid4().hex[:8])
    if admitted.write:
        log.error("INTERNAL answered to %s for %s (incident %s): %s: %s%s", peer or "a caller", method,
                  admitted.label, type(error).__name__, error, admitted.note, exc_info=error)
    return ServiceBug(f"the service failed (incident {admitted.label}); its log has the details").to_status()


class Service:
    """A started server, its health servicer and the address it is bound to."""

    def __init__(self, server: grpc.Server, health_servicer: health.HealthServicer, address: str,
                 service_names: Sequence[str]):
        self.server = server
        self.health = health_servicer
        self.address = address
        self.service_names = list(service_names)

    def stop(self, grace: float) -> None:
        """Reports NOT_SERVING, refuses new calls and lets running ones finish for `grace` seconds."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start_server(
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    listen: str,
    max_workers: int = 32,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    options: ServerOptions = DEFAULT_OPTIONS,
) -> Service:
    """Starts a server with the standard health service and server reflection (v1 and v1alpha).

    `register` adds the service's own servicers; `service_names` are their full
    names (e.g. `privaudit.v1.ReporterService`), each reported SERVING.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=[*SERVER_OPTIONS, ("grpc.max_receive_message_length", options.max_receive_bytes)],
        interceptors=[*([options.auth] if options.auth else []), *interceptors, FailureInterceptor()],
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection([*service_names, health.SERVICE_NAME], server)
    try:
        port = (server.add_secure_port(listen, options.tls.credentials()) if options.tls
                else server.add_insecure_port(listen))
    except RuntimeError:  # what gRPC raises for an address in use, and for a key that does not fit
        port = 0
    if port == 0:
        tls = " with --tls-cert and --tls-key (is the key the certificate's?)" if options.tls else ""
        raise SystemExit(f"--listen: cannot serve on {listen!r}{tls}")
    address = f"{listen.rsplit(':', 1)[0]}:{port}"
    if options.auth is None:
        log.warning("authentication is off (no token file): every caller that reaches %s is served", address)
    server.start()
    for name in ("", *service_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Service(server, health_servicer, address, service_names)


def write_ready_file(path: Path, address: str) -> None:
    """Writes the bound address atomically, so a reader never sees half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(address + "\n")
    os.replace(partial, path)


def serve_until_signalled(service: Service, ready_file: Path | None, grace: float = 10.0,
                          on_stop: Callable[[], None] | None = None) -> None:
    """Blocks until SIGTERM or SIGINT, then stops gracefully."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if ready_file:
        write_ready_file(ready_file, service.address)
    log.info("serving %s on %s", ", ".join(service.service_names), service.address)
    stop.wait()
    log.info("stopping: refusing new calls, %.0fs for running ones", grace)
    if on_stop:
        on_stop()
    service.stop(grace)
    log.info("stopped")
