"""Command-line flags with environment-variable fallbacks, shared by every service."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def flag(parser: argparse.ArgumentParser, name: str, env: str, default: Any = None, **kwargs: Any) -> None:
    """Adds `--name`, whose default is $env when set, else `default`. The help says so."""
    kwargs["help"] = f"{kwargs.get('help', '')} (env {env}; default {default!r})".strip()
    parser.add_argument(name, default=os.environ.get(env, default), **kwargs)


def add_server_flags(parser: argparse.ArgumentParser, service: str, default_port: int) -> None:
    """The flags every service has: where to listen, where to report readiness, log level."""
    prefix = f"PRIVAUDIT_{service.upper()}"
    flag(parser, "--listen", f"{prefix}_LISTEN", f"0.0.0.0:{default_port}",
         help="host:port to serve gRPC on; port 0 picks a free port")
    flag(parser, "--ready-file", f"{prefix}_READY_FILE", None, type=Path,
         help="once serving, write the bound host:port to this file")
    flag(parser, "--log-level", "PRIVAUDIT_LOG_LEVEL", "INFO", help="DEBUG, INFO, WARNING or ERROR")


def split_addresses(value: str | None) -> list[str]:
    """'a:1, b:2' -> ['a:1', 'b:2']."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]
