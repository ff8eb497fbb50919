"""`python -m privaudit.services.orchestrator`: serves OrchestratorService."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from privaudit.services.common import logs, task_spec
from privaudit.services.common.channels import PLAINTEXT, ChannelSecurity
from privaudit.services.common.config import (
    add_client_tls_flags,
    add_internal_token_flag,
    add_server_flags,
    client_tls,
    first_token,
    flag,
    server_options,
    split_addresses,
)
from privaudit.services.common.server import ServerOptions, Service, serve_until_signalled
from privaudit.services.orchestrator.app import STATE_FILE, Orchestrator, OrchestratorConfig
from privaudit.services.orchestrator.limits import DEFAULT_MAX_TASK_BYTES, TaskLimits
from privaudit.services.orchestrator.scheduler import JobSettings

CLIENT_TOKEN_HINT = "a client token: privaudit --token-file FILE (env PRIVAUDIT_CLIENT_TOKEN_FILE)"
# Clients send the orchestrator tasks and small requests only: no need to take in more.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Room in a SubmitAudit request for what is not the task (format, seed, framing).
REQUEST_OVERHEAD_BYTES = 1024


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, OrchestratorConfig, ServerOptions]:
    """The flags, the orchestrator's configuration and how it serves; exits on a bad flag."""
    parser = argparse.ArgumentParser(prog="python -m privaudit.services.orchestrator", description=__doc__)
    add_server_flags(parser, "orchestrator", 50051, DEFAULT_MAX_MESSAGE_BYTES)
    flag(parser, "--workers", "PRIVAUDIT_WORKERS", "", help="attack workers, comma-separated host:port")
    flag(parser, "--worker-dns", "PRIVAUDIT_WORKER_DNS", None,
         help="host:port whose host resolves to every worker's address (a headless Service), re-resolved")
    flag(parser, "--reporter", "PRIVAUDIT_REPORTER", "localhost:50053", help="the reporter's host:port")
    parser.add_argument("--host-reporter", action="store_true",
                        help="serve the reporter in this process (its own plaintext server on 127.0.0.1, an "
                             "ephemeral port, the shipped risk policy: only this process calls it) instead of "
                             "calling --reporter: one interpreter less, what `privaudit run`'s local cluster does; "
                             "a deployment runs the reporter on its own")
    flag(parser, "--report-wait-s", "PRIVAUDIT_REPORT_WAIT_S", 600.0, type=float,
         help="how long an unreachable reporter is retried (the audit's stream says so) before the audit ends "
              "with an error")
    flag(parser, "--state-dir", "PRIVAUDIT_STATE_DIR", None, type=Path,
         help=f"folder for the task store ({STATE_FILE}); without it, state is kept in memory only")
    flag(parser, "--max-attempts", "PRIVAUDIT_MAX_ATTEMPTS", 3, type=int,
         help="attempts per job when workers fail")
    flag(parser, "--job-timeout", "PRIVAUDIT_JOB_TIMEOUT", 3600.0, type=float,
         help="the job time limit assumed for a worker that does not advertise its own (workers older than "
              "GetCapacity's job_timeout_s); an attempt is given its worker's limit plus a margin")
    flag(parser, "--queue-limit", "PRIVAUDIT_QUEUE_LIMIT", 1000, type=int,
         help="jobs that may wait for a worker; beyond it new audits are refused")
    flag(parser, "--probe-interval", "PRIVAUDIT_PROBE_INTERVAL", 2.0, type=float,
         help="seconds between worker discovery and health probes")
    flag(parser, "--token-file", "PRIVAUDIT_TOKEN_FILE", None, type=Path,
         help="file of client tokens, one a line (# comments): every call except health and reflection must "
              "carry one as 'authorization: Bearer <token>'; unset: authentication is off")
    flag(parser, "--metrics-port", "PRIVAUDIT_METRICS_PORT", 0, type=int,
         help="port to serve Prometheus metrics on over plain HTTP at /metrics (queue depth, running jobs, job "
              "durations, workers by health, audits by state; no secrets, no authentication); 0: not served")
    add_internal_token_flag(parser, sends=True)
    add_client_tls_flags(parser, "--peer-tls", "PRIVAUDIT_PEER_TLS", "the workers and the reporter")
    flag(parser, "--max-task-bytes", "PRIVAUDIT_MAX_TASK_BYTES", DEFAULT_MAX_TASK_BYTES, type=int,
         help="largest task (YAML text or typed message) accepted")
    flag(parser, "--max-attacks", "PRIVAUDIT_MAX_ATTACKS", task_spec.MAX_ATTACKS, type=int,
         help=f"most attacks in one task (at most {task_spec.MAX_ATTACKS})")
    flag(parser, "--max-epochs", "PRIVAUDIT_MAX_EPOCHS", task_spec.MAX_EPOCHS, type=int,
         help=f"most training epochs an attack may ask for (at most {task_spec.MAX_EPOCHS})")
    flag(parser, "--max-shadow", "PRIVAUDIT_MAX_SHADOW", task_spec.MAX_SHADOW, type=int,
         help=f"most shadow models (num_shadow) an attack may ask for (at most {task_spec.MAX_SHADOW})")
    args = parser.parse_args(argv)
    if not split_addresses(args.workers) and not args.worker_dns:
        parser.error("--workers or --worker-dns: give the attack workers (or set PRIVAUDIT_WORKERS / "
                     "PRIVAUDIT_WORKER_DNS)")
    for name in ("max_attempts", "queue_limit"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be at least 1")
    if not 0 <= args.metrics_port <= 65535:
        parser.error(f"--metrics-port / PRIVAUDIT_METRICS_PORT: a port number from 1 to 65535, or 0 for none, "
                     f"got {args.metrics_port}")
    if args.job_timeout <= 0 or args.probe_interval <= 0 or args.report_wait_s <= 0:
        parser.error("--job-timeout, --probe-interval and --report-wait-s: must be positive numbers of seconds")
    try:
        limits = TaskLimits(args.max_task_bytes, args.max_attacks, args.max_epochs, args.max_shadow)
    except ValueError as error:
        parser.error(str(error))
    serving = server_options(parser, args, "--token-file", CLIENT_TOKEN_HINT)
    if args.max_task_bytes > serving.max_receive_bytes - REQUEST_OVERHEAD_BYTES:
        parser.error(f"--max-task-bytes ({args.max_task_bytes}) must be at most --max-message-bytes "
                     f"({args.max_message_bytes}) - {REQUEST_OVERHEAD_BYTES}, so that a task over its limit is "
                     "refused by name rather than cut off by gRPC")
    peers = ChannelSecurity(client_tls(parser, args, "--peer-tls"),
                            first_token(parser, args, "--internal-token-file"))
    if args.host_reporter and peers != PLAINTEXT:
        parser.error("--host-reporter serves the reporter in plaintext on loopback, without a token: it cannot be "
                     "combined with --peer-tls or --internal-token-file, which this orchestrator would present to it")
    config = OrchestratorConfig(
        reporter=args.reporter, workers=split_addresses(args.workers), worker_dns=args.worker_dns,
        state_dir=args.state_dir, jobs=JobSettings(args.max_attempts, args.job_timeout, args.queue_limit),
        probe_interval=args.probe_interval, limits=limits, peers=peers, report_wait=args.report_wait_s,
        metrics_port=args.metrics_port)
    return args, config, serving


def main(argv: list[str] | None = None) -> None:
    args, config, serving = parse_args(sys.argv[1:] if argv is None else argv)
    logs.setup("orchestrator", args.log_level)
    reporter = _hosted_reporter() if args.host_reporter else None
    if reporter is not None:
        config = dataclasses.replace(config, reporter=reporter.address)
    orchestrator = Orchestrator(config)
    service = orchestrator.start(args.listen, serving)
    serve_until_signalled(service, args.ready_file, on_stop=orchestrator.scheduler.stop)
    orchestrator.close()
    if reporter is not None:
        reporter.stop(1.0)


def _hosted_reporter() -> Service:
    """The reporter served from this process, on loopback (plaintext: only this process calls it)."""
    from privaudit.services.reporter import __main__ as reporter  # numpy, scipy: only when hosted
    from privaudit.services.reporter.policy import load_policy

    return reporter.start(load_policy(None), "127.0.0.1:0")


if __name__ == "__main__":
    main()
