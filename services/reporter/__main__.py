"""Serves the privaudit ReporterService: rates attack results by the risk policy and renders reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from privaudit.services.common import logs
from privaudit.services.common.config import add_internal_token_flag, add_server_flags, flag, server_options
from privaudit.services.common.server import (
    DEFAULT_OPTIONS,
    ServerOptions,
    Service,
    serve_until_signalled,
    start_server,
)
from privaudit.services.reporter.policy import DEFAULT_POLICY, Policy, PolicyError, load_policy
from privaudit.services.reporter.server import SERVICE_NAME, ReporterServicer
from privaudit.v1 import reporter_pb2_grpc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m privaudit.services.reporter", description=__doc__)
    add_server_flags(parser, "reporter", 50053)
    flag(parser, "--policy", "PRIVAUDIT_REPORTER_POLICY", None, type=Path,
         help=f"risk policy YAML file; unset means the shipped {DEFAULT_POLICY}")
    add_internal_token_flag(parser, sends=False)
    args = parser.parse_args(argv)
    serving = server_options(parser, args)
    logs.setup("reporter", args.log_level)
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        parser.exit(2, f"--policy: {exc}\n")
    serve_until_signalled(start(policy, args.listen, serving), args.ready_file)


def start(policy: Policy, listen: str, options: ServerOptions = DEFAULT_OPTIONS) -> Service:
    """Serves ReporterService on `listen` (also what an orchestrator hosting its reporter calls)."""
    servicer = ReporterServicer(policy)
    return start_server(lambda server: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(servicer, server),
                        [SERVICE_NAME], listen, options=options)

if __name__ == "__main__":
    main()
