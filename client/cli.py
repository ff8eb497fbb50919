"""The `privaudit` command (and `python3 main.py TASK.yaml`, the seed's form of `privaudit run`).

Exit codes: 0 every attack ran and no --fail-on level was reached; 2 the task or the command line is
invalid; 3 the overall risk reached `--fail-on`; 4 an attack failed, so the audit is incomplete (with
--fail-on too: a gate must not pass on attacks that measured nothing); 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from google.protobuf import json_format

from client.api import FORMATS, AuditClient, AuditError, AuditOutcome
from client.local_cluster import ClusterError, LocalCluster
from client.progress import LiveProgress, ProgressPrinter, risk_word
from privaudit.v1 import orchestrator_pb2, report_pb2, results_pb2
from services.attack_worker.settings import JobLimits
from services.common import task_spec
from services.common.auth import TokenFileError
from services.common.config import add_client_tls_flags, flag
from services.common.errors import Problem, TaskError, from_attack_error
from services.common.tls import TLSConfigError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_RISKY, EXIT_INCOMPLETE = 0, 1, 2, 3, 4
RISK_LEVELS = {"LOW": report_pb2.RISK_LEVEL_LOW, "MIDDLE": report_pb2.RISK_LEVEL_MIDDLE,
               "HIGH": report_pb2.RISK_LEVEL_HIGH}
ORCHESTRATOR_ENV = "PRIVAUDIT_ORCHESTRATOR"


class UsageError(Exception):
    """The command line is incomplete or contradictory."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="privaudit", description="Membership-inference audits of Paddle models.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the audit a task file describes and print its report")
    add_run_arguments(run)
    run.set_defaults(handler=run_command)

    for name, handler, text in (
        ("status", status_command, "an audit's state and results so far"),
        ("watch", watch_command, "follow an audit's progress and print its report"),
        ("cancel", cancel_command, "cancel an audit"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("task_id", help="the audit's id, as `privaudit run` or `privaudit list` shows it")
        _add_orchestrator(sub, required=True)
        sub.set_defaults(handler=handler)
        if name == "watch":
            sub.add_argument("--from", dest="from_sequence", type=int, default=0, help="first event number (0)")
            sub.add_argument("--output", type=Path, help="write the report to this file")
            sub.add_argument("--quiet", action="store_true", help="print no progress")
            _add_outputs(sub)

    validate = commands.add_parser("validate", help="check a task file without running it")
    validate.add_argument("task", type=Path, help="the task file")
    validate.add_argument("--storage-root", type=Path, default=Path.cwd(),
                          help="check that the task's folders exist under this root (default: here)")
    validate.set_defaults(handler=validate_command)

    attacks = commands.add_parser("attacks", help="the attacks a task may name, with arguments and defaults")
    _add_orchestrator(attacks, required=False)
    attacks.set_defaults(handler=attacks_command)

    listing = commands.add_parser("list", help="the audits an orchestrator knows, newest first")
    _add_orchestrator(listing, required=True)
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=list_command)

    cluster = commands.add_parser("cluster", help="a local cluster of service processes that outlives the command")
    actions = cluster.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start orchestrator, reporter and N workers; write STATE_DIR/cluster.json")
    _add_pool_shape(up)
    up.add_argument("--state-dir", type=Path, required=True, help="folder for state, logs and cluster.json")
    up.add_argument("--storage-root", type=Path, default=Path.cwd(), help="models' and datasets' root (here)")
    _add_job_limits(up)
    up.set_defaults(handler=cluster_up_command)
    down = actions.add_parser("down", help="stop the cluster recorded in STATE_DIR")
    down.add_argument("--state-dir", type=Path, required=True)
    down.set_defaults(handler=cluster_down_command)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", type=Path, help="the task file (YAML list of attacks)")
    _add_orchestrator(parser, required=False)
    parser.add_argument("--storage-root", type=Path, default=Path.cwd(),
                        help="folder the task's paths are relative to (local cluster only; default: here)")
    _add_pool_shape(parser)
    _add_job_limits(parser)
    parser.add_argument("--format", choices=sorted(FORMATS), default="text", help="report format (default text)")
    parser.add_argument("--output", type=Path, help="write the report to this file instead of standard output")
    parser.add_argument("--seed", type=int, help="seed for every random choice (default: fixed)")
    parser.add_argument("--quiet", action="store_true", help="print no progress")
    _add_outputs(parser)


def _add_pool_shape(parser: argparse.ArgumentParser) -> None:
    """How many workers the local cluster starts, and how many jobs each runs at once."""
    parser.add_argument("--workers", type=int, default=1,
                        help="attack worker processes of the local cluster (default 1: each imports Paddle once, "
                             "in its job launcher, so more workers cost memory and start-up time)")
    parser.add_argument("--slots", type=int, default=None,
                        help="jobs each worker runs at once, each its own process forked from the worker's launcher "
                             "(default: the machine's cores divided among the workers); the cores are split among "
                             "all the jobs")


def pool_shape(args: argparse.Namespace) -> dict[str, int]:
    """LocalCluster's `workers` and `slots` from --workers and --slots."""
    if args.workers < 1:
        raise UsageError("--workers: must be at least 1")
    slots = args.slots if args.slots is not None else max(1, (os.cpu_count() or 1) // args.workers)
    if slots < 1:
        raise UsageError("--slots: must be at least 1")
    return {"workers": args.workers, "slots": slots}


def _add_job_limits(parser: argparse.ArgumentParser) -> None:
    """The local cluster's job limits: its workers' --job-timeout-s and --job-memory-mb."""
    parser.add_argument("--job-timeout-s", type=float, metavar="SECONDS",
                        help=f"wall-time limit of each attack job on the local cluster's workers (default "
                             f"{JobLimits.timeout_s:g}); a job past it fails, naming the limit")
    parser.add_argument("--job-memory-mb", type=int, metavar="MB",
                        help=f"memory (address-space) limit of each attack job's process on the local cluster's "
                             f"workers (default {JobLimits.memory_mb}); a job past it fails, naming the limit")


def _job_limits(args: argparse.Namespace) -> dict[str, float | int]:
    """The LocalCluster arguments for the job limits given; refuses them for a running orchestrator,
    whose workers have their own (`python -m services.attack_worker --job-timeout-s ...`)."""
    given = {name: value for name in ("job_timeout_s", "job_memory_mb")
             if (value := getattr(args, name, None)) is not None}
    flags = " and ".join(f"--{name.replace('_', '-')}" for name in given)
    if given and getattr(args, "orchestrator", None):
        raise UsageError(f"{flags}: set the local cluster's workers; the workers of --orchestrator have their own "
                         "(python -m services.attack_worker --job-timeout-s / --job-memory-mb)")
    for name, value in given.items():  # the workers check their own minimums
        if value <= 0:
            raise UsageError(f"--{name.replace('_', '-')}: must be positive, got {value:g}")
    return given


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    """What run and watch deliver besides the report: the scores file and the exit-code gate."""
    parser.add_argument("--scores", type=_scores_path, metavar="FILE.csv|FILE.npz",
                        help="also write every audited record's score: attack, dataset, record index, membership, "
                             "label, score, decision, evaluated")
    parser.add_argument("--fail-on", choices=list(RISK_LEVELS), metavar="LOW|MIDDLE|HIGH",
                        help=f"exit {EXIT_RISKY} when the overall risk reaches this level (to gate a release); "
                             f"exit {EXIT_INCOMPLETE} when an attack failed")


def _scores_path(value: str) -> Path:
    from client.scores_export import SUFFIXES  # numpy: imported only when scores are asked for

    path = Path(value)
    if path.suffix not in SUFFIXES:
        raise argparse.ArgumentTypeError(f"{value!r}: the file name must end in {' or '.join(SUFFIXES)}")
    return path


def _add_orchestrator(parser: argparse.ArgumentParser, required: bool) -> None:
    """--orchestrator, and how to connect to it: TLS and the bearer token."""
    what = "the orchestrator" if required else "a running orchestrator; without it, a local cluster is started"
    parser.add_argument("--orchestrator", metavar="HOST:PORT", default=os.environ.get(ORCHESTRATOR_ENV),
                        help=f"{what} (env {ORCHESTRATOR_ENV})")
    parser.set_defaults(orchestrator_required=required)
    add_client_tls_flags(parser, "--tls", "PRIVAUDIT_CLIENT_TLS", "the orchestrator")
    flag(parser, "--token-file", "PRIVAUDIT_CLIENT_TOKEN_FILE", None, type=Path,
         help="file whose first line (not blank, not a # comment) is the bearer token sent to the orchestrator")


def main(argv: list[str] | None = None) -> int:
    return _dispatch(build_parser().parse_args(sys.argv[1:] if argv is None else argv))


def main_seed(argv: list[str] | None = None) -> int:
    """`python3 main.py TASK.yaml [options]`: the seed's command, same as `privaudit run`."""
    parser = argparse.ArgumentParser(prog="main.py", description="Run a privaudit task file.")
    add_run_arguments(parser)
    parser.set_defaults(handler=run_command)
    return _dispatch(parser.parse_args(sys.argv[1:] if argv is None else argv))


def _dispatch(args: argparse.Namespace) -> int:
    """Runs the command's handler and turns its failures into messages and exit codes."""
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        if getattr(args, "orchestrator_required", False) and not args.orchestrator:
            raise UsageError(f"--orchestrator: give the orchestrator's HOST:PORT (or set {ORCHESTRATOR_ENV})")
        return handler(args)
    except UsageError as error:
        print(f"privaudit: {error}", file=sys.stderr)
        return EXIT_INVALID
    except TaskError as error:
        print("privaudit: invalid task:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    except (TLSConfigError, TokenFileError) as error:
        print(f"privaudit: {error}", file=sys.stderr)
        return EXIT_INVALID
    except (AuditError, ClusterError) as error:
        print(f"privaudit: {error}", file=sys.stderr)
        return EXIT_FAILED


# ---------------------------------------------------------------- commands


def run_command(args: argparse.Namespace) -> int:
    task_text = _read_task(args.task)
    # Refuse a bad task at once, before any service starts; the orchestrator checks again.
    task_spec.parse_yaml(task_text, args.seed)
    limits = _job_limits(args)
    if args.orchestrator:
        with _client(args) as auditor, _progress(args) as display:
            outcome = auditor.run(task_text, args.format, args.seed, on_event=display)
        return _deliver(outcome, args)
    shape = pool_shape(args)
    _say(args, f"starting a local cluster: orchestrator, reporter, {shape['workers']} worker(s) x "
               f"{shape['slots']} job slot(s) ...")
    # Submitted as soon as the orchestrator can queue the audit: the workers join as they serve.
    with LocalCluster(storage_root=args.storage_root, wait_for_workers=False, **shape, **limits) as cluster:
        with AuditClient(cluster.address) as auditor, _progress(args) as display:
            outcome = auditor.run(task_text, args.format, args.seed, on_event=display)
        return _deliver(outcome, args)  # before the cluster stops: its stopping takes seconds


def watch_command(args: argparse.Namespace) -> int:
    with _client(args) as auditor, _progress(args) as display:
        outcome = auditor.collect(auditor.watch(args.task_id, args.from_sequence), on_event=display)
    return _deliver(outcome, args)


def validate_command(args: argparse.Namespace) -> int:
    spec = task_spec.parse_yaml(_read_task(args.task))
    root = args.storage_root.resolve()
    missing = [Problem(f"attacks[{index}].args.{field}", f"no folder {path!r} under the storage root {root}")
               for index, attack in enumerate(spec.attacks) for field, path in attack.storage_paths()
               if not (root / path).is_dir()]
    if missing:
        raise TaskError(missing)
    print(f"{args.task}: valid, {len(spec.attacks)} attack(s): {', '.join(a.name for a in spec.attacks)}; "
          f"seed {spec.seed}; every folder exists under {root}")
    return EXIT_OK


def attacks_command(args: argparse.Namespace) -> int:
    if args.orchestrator:
        with _client(args) as auditor:
            described = [json_format.MessageToDict(a, preserving_proto_field_name=True) for a in auditor.attacks()]
    else:  # the same schema the orchestrator serves, from this client's copy
        described = [{**a, "arguments": [{**g, "default_value": g["default"]} for g in a["arguments"]]}
                     for a in task_spec.describe_attacks()]
    for attack in described:
        print(f"{attack['name']}: {attack['description']}")
        for argument in attack.get("arguments", []):
            default = "required" if argument.get("required") else f"default {argument.get('default_value')}"
            print(f"    {argument['name']:<20} {argument['type']:<24} {default:<18} {argument['description']}")
    return EXIT_OK


def status_command(args: argparse.Namespace) -> int:
    with _client(args) as auditor:
        status = auditor.status(args.task_id)
    for result in status.results:  # every record's score is for --scores, not for reading on a terminal
        result.ClearField("record_scores")
    print(json.dumps(json_format.MessageToDict(status, preserving_proto_field_name=True), indent=2))
    return EXIT_OK


def cancel_command(args: argparse.Namespace) -> int:
    with _client(args) as auditor:
        status = auditor.cancel(args.task_id)
    print(f"{status.task_id}: {_state(status)}")
    return EXIT_OK


def list_command(args: argparse.Namespace) -> int:
    with _client(args) as auditor:
        audits = auditor.list(args.limit)
    for audit in audits:
        risk = risk_word(audit.summary.overall_risk)
        print(f"{audit.task_id}  {audit.created.ToDatetime():%Y-%m-%d %H:%M:%S}  {_state(audit):<9}  "
              f"risk {risk:<11}  {', '.join(audit.attack_names)}")
    return EXIT_OK


def cluster_up_command(args: argparse.Namespace) -> int:
    cluster = LocalCluster(storage_root=args.storage_root, state_dir=args.state_dir, **pool_shape(args),
                           detached=True, **_job_limits(args))
    cluster.start()
    print(f"cluster up: orchestrator at {cluster.address}; {args.state_dir / 'cluster.json'} has every process")
    print(f"submit with: privaudit run TASK.yaml --orchestrator {cluster.address}")
    return EXIT_OK


def cluster_down_command(args: argparse.Namespace) -> int:
    stopped = LocalCluster.stop_recorded(args.state_dir)
    print(f"cluster down: {stopped} process(es) stopped")
    return EXIT_OK


# ---------------------------------------------------------------- helpers


def _read_task(path: Path) -> str:
    """The task file's text (TaskError when too large or not UTF-8)."""
    try:
        return task_spec.read_task_file(path)
    except OSError as error:
        raise UsageError(f"cannot read the task file: {error}") from None


def _client(args: argparse.Namespace) -> AuditClient:
    """A client of `--orchestrator`, connected as the TLS and token flags say."""
    return AuditClient(args.orchestrator, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                       tls_server_name=args.tls_server_name, token_file=args.token_file)


def _deliver(outcome: AuditOutcome, args: argparse.Namespace) -> int:
    assert outcome.done is not None
    if args.output:
        args.output.write_text(outcome.report, encoding="utf-8")
        _say(args, f"report written to {args.output}")
    else:
        sys.stdout.write(outcome.report)
        sys.stdout.flush()
    if args.scores:
        from client.scores_export import write_scores

        rows = write_scores(args.scores, outcome.results)
        _say(args, f"{rows} record scores written to {args.scores}")
    if outcome.done.cancelled:
        print(f"privaudit: audit {outcome.task_id} was cancelled", file=sys.stderr)
        return EXIT_FAILED
    if outcome.done.error:
        print(f"privaudit: {outcome.done.error}", file=sys.stderr)
        return EXIT_FAILED
    risk = outcome.summary.overall_risk if outcome.summary else report_pb2.RISK_LEVEL_UNSPECIFIED
    if args.fail_on and risk >= RISK_LEVELS[args.fail_on]:
        print(f"privaudit: overall risk {risk_word(risk)} reaches --fail-on {args.fail_on}", file=sys.stderr)
        return EXIT_RISKY
    failed = [r for r in outcome.results if r.status != results_pb2.ATTACK_STATUS_SUCCEEDED]
    if failed or not outcome.results:
        whose = "; ".join(f"{r.attack_name or f'attack {r.attack_index}'}: {from_attack_error(r.error).describe()}"
                          for r in failed)
        what = (f"{len(failed)} of {len(outcome.results)} attacks failed ({whose}; the report says why)"
                if outcome.results else "no attack result arrived")
        print(f"privaudit: the audit is incomplete: {what}; nothing they would have measured is in the risk",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK


def _progress(args: argparse.Namespace) -> AbstractContextManager:
    """The progress display: none with --quiet, live bars on a terminal, plain lines otherwise."""
    if args.quiet:
        return nullcontext(None)
    if sys.stderr.isatty():
        return LiveProgress(sys.stderr)
    return nullcontext(ProgressPrinter(sys.stderr))


def _state(status: orchestrator_pb2.AuditStatus) -> str:
    return orchestrator_pb2.AuditState.Name(status.state).removeprefix("AUDIT_STATE_")


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)
