"""The `privaudit` command (and `python3 main.py TASK.yaml`, its seed-compatible form).

Exit codes: 0 the audit ran, 2 the task or the command line is invalid, 1 anything else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.api import FORMATS, AuditClient, AuditError, AuditOutcome
from client.local_cluster import ClusterError, LocalCluster
from client.progress import ProgressPrinter
from services.common import task_spec
from services.common.errors import TaskError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="privaudit", description="Membership-inference audits of Paddle models.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the audit a task file describes and print its report")
    add_run_arguments(run)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", type=Path, help="the task file (YAML list of attacks)")
    parser.add_argument("--orchestrator", metavar="HOST:PORT",
                        help="a running orchestrator; without it, a local cluster is started and stopped")
    parser.add_argument("--storage-root", type=Path, default=Path.cwd(),
                        help="folder the task's paths are relative to (local cluster only; default: here)")
    parser.add_argument("--workers", type=int, default=2, help="attack workers of the local cluster (default 2)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="text", help="report format (default text)")
    parser.add_argument("--output", type=Path, help="write the report to this file instead of standard output")
    parser.add_argument("--seed", type=int, help="seed for every random choice (default: fixed)")
    parser.add_argument("--quiet", action="store_true", help="print no progress")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    try:
        task_text = args.task.read_text()
        # Refuse a bad task at once, before any service starts; the orchestrator checks again.
        task_spec.parse_yaml(task_text, args.seed)
        if args.orchestrator:
            outcome = _run(args.orchestrator, task_text, args)
        else:
            if args.workers < 1:
                raise TaskError.at("--workers", "must be at least 1")
            _say(args, f"starting a local cluster: orchestrator, reporter, {args.workers} workers ...")
            with LocalCluster(workers=args.workers, storage_root=args.storage_root) as cluster:
                outcome = _run(cluster.address, task_text, args)
    except OSError as error:
        print(f"privaudit: cannot read the task file: {error}", file=sys.stderr)
        return EXIT_INVALID
    except TaskError as error:
        print("privaudit: invalid task:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    except (AuditError, ClusterError) as error:
        print(f"privaudit: {error}", file=sys.stderr)
        return EXIT_FAILED
    return _deliver(outcome, args)


def _run(address: str, task_text: str, args: argparse.Namespace) -> AuditOutcome:
    printer = None if args.quiet else ProgressPrinter(sys.stderr)
    with AuditClient(address) as auditor:
        return auditor.run(task_text, args.format, args.seed, on_event=printer)


def _deliver(outcome: AuditOutcome, args: argparse.Namespace) -> int:
    assert outcome.done is not None
    if args.output:
        args.output.write_text(outcome.report)
        _say(args, f"report written to {args.output}")
    else:
        sys.stdout.write(outcome.report)
    if outcome.done.error:
        print(f"privaudit: {outcome.done.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def main_seed(argv: list[str] | None = None) -> int:
    """`python3 main.py TASK.yaml [options]`: the seed's command, same as `privaudit run`."""
    parser = argparse.ArgumentParser(prog="main.py", description="Run a privaudit task file.")
    add_run_arguments(parser)
    return run_command(parser.parse_args(sys.argv[1:] if argv is None else argv))
