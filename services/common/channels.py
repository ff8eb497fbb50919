"""Client channels with the options every caller in the system uses."""

from __future__ import annotations

import json

import grpc

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
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(address: str, retry_service: str | None = None) -> grpc.Channel:
    """A channel to `address` (host:port); calls to `retry_service` retry on UNAVAILABLE."""
    options = list(CHANNEL_OPTIONS)
    if retry_service:
        options += [("grpc.enable_retries", 1), ("grpc.service_config", retry_policy(retry_service))]
    return grpc.insecure_channel(address, options=options)
