"""Client channels with the options every caller in the system uses."""

from __future__ import annotations

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


def open_channel(address: str) -> grpc.Channel:
    """A channel to `address` (host:port)."""
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
