"""`python -m services.orchestrator`: serves OrchestratorService."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.common import logs
from services.common.config import add_server_flags, flag, split_addresses
from services.common.server import serve_until_signalled
from services.orchestrator.app import STATE_FILE, Orchestrator, OrchestratorConfig
from services.orchestrator.scheduler import JobSettings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.orchestrator", description=__doc__)
    add_server_flags(parser, "orchestrator", 50051)
    flag(parser, "--workers", "PRIVAUDIT_WORKERS", "", help="attack workers, comma-separated host:port")
    flag(parser, "--worker-dns", "PRIVAUDIT_WORKER_DNS", None,
         help="host:port whose host resolves to every worker's address (a headless Service), re-resolved")
    flag(parser, "--reporter", "PRIVAUDIT_REPORTER", "localhost:50053", help="the reporter's host:port")
    flag(parser, "--state-dir", "PRIVAUDIT_STATE_DIR", None, type=Path,
         help=f"folder for the task store ({STATE_FILE}); without it, state is kept in memory only")
    flag(parser, "--max-attempts", "PRIVAUDIT_MAX_ATTEMPTS", 3, type=int,
         help="attempts per job when workers fail")
    flag(parser, "--job-timeout", "PRIVAUDIT_JOB_TIMEOUT", 3600.0, type=float,
         help="seconds a worker may take for one job before it is retried elsewhere")
    flag(parser, "--queue-limit", "PRIVAUDIT_QUEUE_LIMIT", 1000, type=int,
         help="jobs that may wait for a worker; beyond it new audits are refused")
    flag(parser, "--probe-interval", "PRIVAUDIT_PROBE_INTERVAL", 2.0, type=float,
         help="seconds between worker discovery and health probes")
    args = parser.parse_args(argv)
    if not split_addresses(args.workers) and not args.worker_dns:
        parser.error("--workers or --worker-dns: give the attack workers (or set PRIVAUDIT_WORKERS / "
                     "PRIVAUDIT_WORKER_DNS)")
    for name in ("max_attempts", "queue_limit"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be at least 1")
    if args.job_timeout <= 0 or args.probe_interval <= 0:
        parser.error("--job-timeout and --probe-interval: must be positive numbers of seconds")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logs.setup("orchestrator", args.log_level)
    orchestrator = Orchestrator(OrchestratorConfig(
        reporter=args.reporter, workers=split_addresses(args.workers), worker_dns=args.worker_dns,
        state_dir=args.state_dir, jobs=JobSettings(args.max_attempts, args.job_timeout, args.queue_limit),
        probe_interval=args.probe_interval))
    service = orchestrator.start(args.listen)
    serve_until_signalled(service, args.ready_file, on_stop=orchestrator.scheduler.stop)
    orchestrator.close()


if __name__ == "__main__":
    main()
