"""Client channels with the options every caller in the system uses."""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc

from privaudit.services.common.auth import TokenSender
from privaudit.services.common.tls import ClientTLS

# Reports and results stay well below this; the limit just refuses runaway messages.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Notice a dead peer on a long-running stream within about half a minute.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]




def retry_policy(service: str, attempts: int = 4) -> str:
    """A gRPC service config that retries calls to `service` refused with UNAVAILABLE
    (the peer restarting), with exponential backoff. Streaming calls are retried only
    until their first response arrives, so nothing is received twice."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": service}],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.5s",
                        "maxBackoff": "5s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": [grpc.StatusCode.UNAVAILABLE.name],
                    },
                }
            ]
        }
    )


@dataclass(frozen=True)
class ChannelSecurity:
    """How a caller connects: over TLS (None: plaintext) and with a bearer token on every call
    (None: no token)."""

    tls: ClientTLS | None = None
    token: str | None = None


PLAINTEXT = ChannelSecurity()


def open_channel(address: str, retry_service: str | None = None,
                 security: ChannelSecurity = PLAINTEXT) -> grpc.Channel:
    """A channel to `address` (host:port); calls to `retry_service` retry on UNAVAILABLE."""
    options = list(CHANNEL_OPTIONS)
    if retry_service:
        options += [("grpc.enable_retries", 1), ("grpc.service_config", retry_policy(retry_service))]
    if security.tls:
        channel = grpc.secure_channel(address, security.tls.credentials(),
                                      options=options + security.tls.channel_options())
    else:
        channel = grpc.insecure_channel(address, options=options)
    return grpc.intercept_channel(channel, TokenSender(security.token)) if security.token else channel
