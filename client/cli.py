"""The `privaudit` command (and `python3 main.py TASK.yaml`, the seed's form of `privaudit run`).

Exit codes: 0 every attack ran and no --fail-on level was reached; 2 the task or the command line is
invalid; 3 the overall risk reached `--fail-on`; 5 with `--fail-on-regression`, the report got measurably
worse than `--baseline` (or `compare`'s NEW than OLD); 4 an attack failed, so the audit is incomplete
(with --fail-on too: a gate must not pass on attacks that measured nothing); 3 takes precedence over 5,
and 5 over 4; 141 standard output was closed early (`privaudit status ID | head`: 128 + SIGPIPE, as the
shell reports for other commands a pipe cuts short); 1 anything else (cancelled, failed, unreachable).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import json_format

from privaudit.client import local_report
from privaudit.client.api import FORMATS, AuditClient, AuditError, AuditOutcome
from privaudit.client.local_cluster import ClusterError, LocalCluster
from privaudit.client.progress import Display, LiveProgress, ProgressPrinter
from privaudit.client.proto_data import message_data
from privaudit.client.status_view import list_line, risk_word, state_word, status_lines
from privaudit.services.attack_worker.settings import JobLimits
from privaudit.services.common import task_spec
from privaudit.services.common.auth import TokenFileError
from privaudit.services.common.config import add_client_tls_flags, flag
from privaudit.services.common.errors import TaskError, from_attack_error
from privaudit.services.common.tls import TLSConfigError
from privaudit.v1 import report_pb2, results_pb2

if TYPE_CHECKING:
    from privaudit.services.reporter.report_model import AuditReport

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_RISKY, EXIT_INCOMPLETE, EXIT_REGRESSED = 0, 1, 2, 3, 4, 5
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
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
        if name == "status":
            _add_json_flag(sub)
        if name == "watch":
            sub.add_argument("--from", dest="from_sequence", type=int, default=0, help="first event number (0)")
            sub.add_argument("--format", choices=sorted(FORMATS),
                             help="report format (default: the one the audit was run with; another is rendered "
                                  "here from the audit's results, with its report's risk policy and provenance)")
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
    _add_json_flag(listing)
    listing.set_defaults(handler=list_command)

    compare = commands.add_parser("compare", help="what changed between two audits' reports: per attack, AUC and "
                                                  "TPR@1%%FPR before and after, beyond noise or not, and the risk")
    compare.add_argument("old", help="the earlier report: a JSON report file (--format json) or an audit id")
    compare.add_argument("new", help="the later report: a JSON report file or an audit id")
    _add_orchestrator(compare, required=False)
    compare.add_argument("--fail-on-regression", action="store_true",
                         help=f"exit {EXIT_REGRESSED} when NEW is measurably worse than OLD (an attack does better "
                              "beyond noise, or a risk rose)")
    _add_json_flag(compare)
    compare.set_defaults(handler=compare_command)

    cluster = commands.add_parser("cluster", help="a local cluster of service processes that outlives the command")
    actions = cluster.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start orchestrator, reporter and N workers; write STATE_DIR/cluster.json")
    _add_pool_shape(up)
    up.add_argument("--state-dir", type=Path, required=True, help="folder for state, logs and cluster.json")
    up.add_argument("--storage-root", type=Path, default=Path.cwd(), help="models' and datasets' root (here)")
    _add_job_limits(up)
    up.set_defaults(handler=cluster_up_command)
    down = actions.add_parser("down", help="stop the cluster recorded in STATE_DIR (nothing to stop: exit 0)")
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
    parser.add_argument("--baseline", type=Path, metavar="OLD.json",
                        help="an earlier JSON report of this task (--format json): the report compares its results "
                             "with it, per attack")
    _add_outputs(parser)


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print JSON for programs (every field, counts as numbers) instead of lines to read")


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
    whose workers have their own (`python -m privaudit.services.attack_worker --job-timeout-s ...`)."""
    given = {name: value for name in ("job_timeout_s", "job_memory_mb")
             if (value := getattr(args, name, None)) is not None}
    flags = " and ".join(f"--{name.replace('_', '-')}" for name in given)
    if given and getattr(args, "orchestrator", None):
        raise UsageError(f"{flags}: set the local cluster's workers; the workers of --orchestrator have their own "
                         "(python -m privaudit.services.attack_worker --job-timeout-s / --job-memory-mb)")
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
    parser.add_argument("--fail-on-regression", action="store_true",
                        help=f"exit {EXIT_REGRESSED} when the report is measurably worse than its baseline (run's "
                             "--baseline): an attack does better beyond noise, or a risk rose")


def _scores_path(value: str) -> Path:
    from privaudit.client.scores_export import SUFFIXES  # numpy: imported only when scores are asked for

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
        code = handler(args)
        sys.stdout.flush()  # here, so that a closed pipe is met here and not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be said to it, and Python's flush of
        # standard output at exit must not meet the closed pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
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
    except KeyboardInterrupt:
        print("privaudit: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


# ---------------------------------------------------------------- commands


def run_command(args: argparse.Namespace) -> int:
    task_text = _read_task(args.task)
    # Refuse a bad task at once, before any service starts; the orchestrator checks again.
    spec = task_spec.parse_yaml(task_text, args.seed)
    limits = _job_limits(args)
    baseline = _baseline(args)
    if args.orchestrator:  # its storage root is not this client's to check
        with _client(args) as auditor:
            return _follow(args, lambda outcome, display: auditor.run(
                task_text, args.format, args.seed, display, baseline, outcome))
    _preflight(spec, args.storage_root)
    shape = pool_shape(args)
    cluster = LocalCluster(storage_root=args.storage_root, wait_for_workers=False, host_reporter=True,
                           **shape, **limits)

    def audit(outcome: AuditOutcome, display: Display | None) -> None:
        cluster.on_step = display.step if display else None
        # Submitted as soon as the orchestrator can queue the audit: the workers join as they serve.
        cluster.start()
        with AuditClient(cluster.address) as auditor:
            auditor.run(task_text, args.format, args.seed, display, baseline, outcome)

    try:
        return _follow(args, audit)  # the report is out before the cluster stops: its stopping takes seconds
    finally:
        cluster.close()


def watch_command(args: argparse.Namespace) -> int:
    with _client(args) as auditor:
        return _follow(args, lambda outcome, display: auditor.collect(
            auditor.watch(args.task_id, args.from_sequence), display, outcome))


def validate_command(args: argparse.Namespace) -> int:
    spec = task_spec.parse_yaml(_read_task(args.task))
    root = args.storage_root.resolve()
    _preflight(spec, root)
    print(f"{args.task}: valid, {len(spec.attacks)} attack(s): {', '.join(a.name for a in spec.attacks)}; "
          f"seed {spec.seed}; its folders, models and datasets under {root} checked")
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
    if args.json:
        print(json.dumps(message_data(status), indent=2, ensure_ascii=False))
    else:
        print("\n".join(status_lines(status)))
    return EXIT_OK


def cancel_command(args: argparse.Namespace) -> int:
    with _client(args) as auditor:
        status = auditor.cancel(args.task_id)
    print(f"{status.task_id}: {state_word(status)}")
    return EXIT_OK


def list_command(args: argparse.Namespace) -> int:
    with _client(args) as auditor:
        audits = auditor.list(args.limit)
    if args.json:
        print(json.dumps([message_data(audit) for audit in audits], indent=2, ensure_ascii=False))
    else:
        for audit in audits:
            print(list_line(audit))
    return EXIT_OK


def compare_command(args: argparse.Namespace) -> int:
    from privaudit.client.compare_view import comparison_lines
    from privaudit.services.reporter.compare import compare

    new = _report(args, args.new, "NEW")
    comparison = compare(_report(args, args.old, "OLD"), new)
    if args.json:
        print(comparison.model_dump_json(indent=2))
    else:
        print("\n".join(comparison_lines(comparison, new)))
    return EXIT_REGRESSED if args.fail_on_regression and comparison.regressed else EXIT_OK


def cluster_up_command(args: argparse.Namespace) -> int:
    cluster = LocalCluster(storage_root=args.storage_root, state_dir=args.state_dir, **pool_shape(args),
                           detached=True, **_job_limits(args))
    cluster.start()
    print(f"cluster up: orchestrator at {cluster.address}; {args.state_dir / 'cluster.json'} has every process")
    print(f"submit with: privaudit run TASK.yaml --orchestrator {cluster.address}")
    return EXIT_OK


def cluster_down_command(args: argparse.Namespace) -> int:
    stopped = LocalCluster.stop_recorded(args.state_dir)
    print(f"cluster down: {stopped} process(es) stopped" if stopped else
          f"cluster down: nothing was running (no cluster is recorded in {args.state_dir})")
    return EXIT_OK


# ---------------------------------------------------------------- helpers


def _read_task(path: Path) -> str:
    """The task file's text (TaskError when too large or not UTF-8)."""
    try:
        return task_spec.read_task_file(path)
    except OSError as error:
        raise UsageError(f"cannot read the task file: {error}") from None


def _preflight(spec: task_spec.TaskSpec, storage_root: Path) -> None:
    """Every problem of the task's folders, models and datasets under `storage_root`, at once, as
    a TaskError (before anything starts)."""
    from privaudit.services.common.preflight import preflight

    problems = preflight(spec, storage_root.resolve())
    if problems:
        raise task_spec.refusal(problems)


def _baseline(args: argparse.Namespace) -> str | None:
    """The --baseline report's JSON text, checked to be a report this client reads."""
    if args.fail_on_regression and not args.baseline:
        raise UsageError("--fail-on-regression: give the report to compare with (--baseline OLD.json)")
    if not args.baseline:
        return None
    text = _read_report_file(args.baseline, "--baseline")
    _parse_report(text, f"--baseline {args.baseline}")
    return text


def _report(args: argparse.Namespace, which: str, role: str) -> AuditReport:
    """`compare`'s OLD or NEW: a JSON report file, or the JSON report of an audit of --orchestrator."""
    path = Path(which)
    if path.exists():
        return _parse_report(_read_report_file(path, role), f"{role} {which}")
    if not args.orchestrator:
        raise UsageError(f"{role}: no file {which!r}; to compare an audit by its id, give --orchestrator "
                         f"(or set {ORCHESTRATOR_ENV})")
    with _client(args) as auditor:
        outcome = auditor.collect(auditor.watch(which))
    if outcome.report is None:
        raise UsageError(f"{role}: audit {which} has no JSON report (it did not finish, or an orchestrator "
                         "older than reports 3.0 ran it): run it again, or give its JSON report file")
    return outcome.report


def _read_report_file(path: Path, role: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{role}: cannot read the report: {error}") from None


def _parse_report(text: str, what: str) -> AuditReport:
    from pydantic import ValidationError

    from privaudit.services.reporter.report_model import AuditReport

    try:
        return AuditReport.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(the document)"
        raise UsageError(f"{what} is not a JSON report of this privaudit (privaudit run --format json; "
                         f"schema 3.0): {where}: {first['msg']}") from None


def _client(args: argparse.Namespace) -> AuditClient:
    """A client of `--orchestrator`, connected as the TLS and token flags say."""
    return AuditClient(args.orchestrator, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                       tls_server_name=args.tls_server_name, token_file=args.token_file)


def _follow(args: argparse.Namespace, audit: Callable[[AuditOutcome, Display | None], object]) -> int:
    """Runs `audit`, which fills the outcome it is given from an audit's stream (showing progress
    on the display), then delivers the report. When the stream breaks off or the user
    interrupts, --output still gets the report of what had finished, marked partial."""
    outcome = AuditOutcome()
    try:
        with _progress(args) as display:
            audit(outcome, display)
    except AuditError:
        _write_partial(outcome, args, "the stream of the audit broke off before it was done")
        raise
    except KeyboardInterrupt:
        _write_partial(outcome, args, "interrupted (Ctrl-C) before the audit was done")
        if outcome.task_id and args.orchestrator:
            print(f"privaudit: audit {outcome.task_id} goes on: privaudit watch {outcome.task_id} follows it, "
                  f"privaudit cancel {outcome.task_id} ends it", file=sys.stderr)
        raise
    return _deliver(outcome, args)


def _deliver(outcome: AuditOutcome, args: argparse.Namespace) -> int:
    assert outcome.done is not None
    reason = _unfinished_reason(outcome)
    wanted = FORMATS[args.format] if args.format else outcome.rendered_format or report_pb2.REPORT_FORMAT_TEXT
    if reason or not outcome.renderings:
        rendered = local_report.render(outcome, wanted, reason or "no report arrived")
    elif wanted not in outcome.renderings:
        rendered = local_report.render(outcome, wanted)
    else:
        rendered = outcome.renderings[wanted]
    _write_report(rendered, args)
    if args.scores:
        from privaudit.client.scores_export import write_scores

        rows = write_scores(args.scores, outcome.results)
        _say(args, f"{rows} record scores written to {args.scores}")
    if outcome.done.cancelled or outcome.done.error:
        print(f"privaudit: {reason}", file=sys.stderr)
        return EXIT_FAILED
    risk = outcome.summary.overall_risk if outcome.summary else report_pb2.RISK_LEVEL_UNSPECIFIED
    if args.fail_on and risk >= RISK_LEVELS[args.fail_on]:
        print(f"privaudit: overall risk {risk_word(risk)} reaches --fail-on {args.fail_on}", file=sys.stderr)
        return EXIT_RISKY
    if args.fail_on_regression:
        comparison = outcome.report.comparison if outcome.report is not None else None
        if comparison is None:
            print("privaudit: --fail-on-regression: the report carries no comparison with the baseline (an "
                  "orchestrator older than --baseline?)", file=sys.stderr)
            return EXIT_FAILED
        if comparison.regressed:
            print("privaudit: the report regressed against --baseline (see its comparison)", file=sys.stderr)
            return EXIT_REGRESSED
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


def _unfinished_reason(outcome: AuditOutcome) -> str:
    """Why the audit has no full report ("" when it finished)."""
    assert outcome.done is not None
    finished = f"{len(outcome.results)} of {len(outcome.attack_names)} attacks had finished"
    if outcome.done.cancelled:
        return f"audit {outcome.task_id} was cancelled; {finished}"
    if outcome.done.error:
        return f"audit {outcome.task_id} failed: {outcome.done.error}; {finished}"
    return ""


def _write_partial(outcome: AuditOutcome, args: argparse.Namespace, reason: str) -> None:
    """The report of what had finished, marked partial, to --output (standard output gets none:
    the audit did not end)."""
    if args.output:
        wanted = FORMATS[args.format] if args.format else outcome.rendered_format or report_pb2.REPORT_FORMAT_TEXT
        _write_report(local_report.render(outcome, wanted, reason), args)


def _write_report(rendered: str, args: argparse.Namespace) -> None:
    """To --output (whole or not at all: written aside, then renamed) or standard output."""
    if not args.output:
        sys.stdout.write(rendered)
        sys.stdout.flush()
        return
    aside = args.output.with_name(f".{args.output.name}.partial")
    aside.write_text(rendered, encoding="utf-8")
    os.replace(aside, args.output)
    _say(args, f"report written to {args.output}")


def _progress(args: argparse.Namespace) -> AbstractContextManager[Display | None]:
    """The progress display: none with --quiet, live bars on a terminal, plain lines otherwise."""
    if args.quiet:
        return nullcontext(None)
    if sys.stderr.isatty():
        return LiveProgress(sys.stderr)
    return nullcontext(ProgressPrinter(sys.stderr))


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)
