"""Running a gRPC service: health, reflection, TLS, bearer tokens, message size limit,
readiness file and graceful shutdown.

Every service's `__main__` calls `start_server` with a function that registers its
servicers; everything else about serving is the same for all of them.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.auth import TokenAuth
from services.common.channels import MAX_MESSAGE_BYTES
from services.common.tls import ServerTLS

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
    """Starts a server with the standard health service and server reflection.

    `register` adds the service's own servicers; `service_names` are their full
    names (e.g. `privaudit.v1.ReporterService`), each reported SERVING.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=[*SERVER_OPTIONS, ("grpc.max_receive_message_length", options.max_receive_bytes)],
        interceptors=[*([options.auth] if options.auth else []), *interceptors],
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
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
