"""What the client prints and writes, without services: status/list lines and JSON, partial
reports of audits that did not finish, reports in another format, a closed pipe, cluster down
twice."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf import json_format
from import_footprint import heavy_imports
from test_reporter_fixtures import succeeded

from privaudit.client import cli, local_report
from privaudit.client.api import AuditOutcome
from privaudit.client.proto_data import message_data
from privaudit.client.status_view import list_line, status_lines
from privaudit.services.reporter.report_model import AuditReport
from privaudit.v1 import orchestrator_pb2, report_pb2, results_pb2

REPO = Path(__file__).resolve().parents[1]
PRIVAUDIT = [sys.executable, "-c", "import sys; from privaudit.client.cli import main; sys.exit(main())"]


def audit_status(state: int, *, summary: int | None = None, results=()) -> orchestrator_pb2.AuditStatus:
    status = orchestrator_pb2.AuditStatus(task_id="a" * 32, state=state, attack_names=["BASELINE", "LIRA"],
                                          event_count=2**40 + 3, results=list(results))
    status.created.FromSeconds(1_796_000_000)
    if summary is not None:
        status.summary.overall_risk = summary
        status.summary.attacks.add(attack_index=0, attack_name="BASELINE", risk=summary)
    return status


# ---------------------------------------------------------------- status and list


def test_status_json_keeps_counts_as_numbers_and_every_default_field():
    result = succeeded(0)
    result.roc.insert(0, results_pb2.RocPoint())  # (0, 0): proto3 JSON prints it as {}
    result.metrics.ClearField("tpr_at_1pct_fpr")
    data = message_data(audit_status(orchestrator_pb2.AUDIT_STATE_SUCCEEDED, summary=report_pb2.RISK_LEVEL_LOW,
                                     results=[result]))
    assert data["event_count"] == 2**40 + 3 and data["results"][0]["metrics"]["num_members"] == 1000
    assert data["results"][0]["roc"][0] == {"fpr": 0.0, "tpr": 0.0}
    assert data["results"][0]["metrics"]["tpr_at_1pct_fpr"] is None  # optional and unset: null, not absent
    assert data["error"] == "" and data["state"] == "SUCCEEDED" and data["summary"]["overall_risk"] == "LOW"
    assert datetime.fromisoformat(data["created"]) == datetime.fromtimestamp(1_796_000_000, UTC)
    # Every field the proto JSON mapping prints (with defaults) is here, with the same number.
    reference = json_format.MessageToDict(result, preserving_proto_field_name=True,
                                          always_print_fields_with_no_presence=True)
    assert set(reference) <= set(data["results"][0])
    assert float(reference["metrics"]["num_non_members"]) == data["results"][0]["metrics"]["num_non_members"]
    json.dumps(data, allow_nan=False)


def test_a_float_that_is_not_finite_is_null_and_an_unrated_risk_is_unrated():
    status = audit_status(orchestrator_pb2.AUDIT_STATE_SUCCEEDED, summary=report_pb2.RISK_LEVEL_UNSPECIFIED,
                          results=[succeeded(0)])
    status.results[0].metrics.auc = math.nan
    data = message_data(status)
    assert data["results"][0]["metrics"]["auc"] is None and data["summary"]["overall_risk"] == "UNRATED"


@pytest.mark.parametrize(("state", "summary", "risk"), [
    (orchestrator_pb2.AUDIT_STATE_SUCCEEDED, report_pb2.RISK_LEVEL_HIGH, "HIGH"),
    (orchestrator_pb2.AUDIT_STATE_SUCCEEDED, report_pb2.RISK_LEVEL_UNSPECIFIED, "UNRATED"),
    (orchestrator_pb2.AUDIT_STATE_RUNNING, None, "pending"),
    (orchestrator_pb2.AUDIT_STATE_CANCELLED, None, "none"),
])
def test_list_shows_the_real_risk_never_unspecified(state, summary, risk):
    line = list_line(audit_status(state, summary=summary))
    assert f"risk {risk}" in line and "UNSPECIFIED" not in line
    assert f"{datetime.fromtimestamp(1_796_000_000, UTC):%Y-%m-%d %H:%M:%S}" in line and "BASELINE, LIRA" in line


def test_status_lines_give_each_attack_its_result_or_none_yet():
    lines = status_lines(audit_status(orchestrator_pb2.AUDIT_STATE_RUNNING, results=[succeeded(0, auc=0.75)]))
    assert lines[0].startswith(f"audit {'a' * 32}: RUNNING")
    assert lines[1] == "overall risk: pending"
    assert "1/2 BASELINE" in lines[2] and "auc 0.7500 [0.7100, 0.7900]" in lines[2]
    assert "2/2 LIRA" in lines[3] and "no result yet" in lines[3]


# ---------------------------------------------------------------- reports of audits that did not finish


def outcome_of(*, cancelled: bool = False, error: str = "") -> AuditOutcome:
    return AuditOutcome(task_id="t" * 32, attack_names=["BASELINE", "LIRA"], results=[succeeded(0)],
                        done=orchestrator_pb2.AuditDone(cancelled=cancelled, error=error, succeeded_attacks=1))


def run_args(tmp_path: Path, report_format: str | None, **extra) -> argparse.Namespace:
    return argparse.Namespace(output=tmp_path / "report.out", format=report_format, scores=None, fail_on=None,
                              fail_on_regression=False, quiet=True, **extra)


@pytest.mark.parametrize("done", [{"cancelled": True}, {"error": "the reporter was unreachable"}])
def test_a_cancelled_or_failed_audit_leaves_a_partial_json_report_not_an_empty_file(tmp_path, done):
    args = run_args(tmp_path, "json")
    assert cli._deliver(outcome_of(**done), args) == cli.EXIT_FAILED
    report = AuditReport.model_validate_json(args.output.read_text())
    assert report.partial and ("cancelled" in report.partial_reason or "unreachable" in report.partial_reason)
    assert "1 of 2 attacks had finished" in report.partial_reason
    assert [a.status for a in report.attacks] == ["succeeded", "failed"]
    assert report.attacks[1].error.message.startswith("did not finish: ")


def test_the_partial_text_and_html_reports_say_so_at_the_top(tmp_path):
    args = run_args(tmp_path, "text")
    cli._deliver(outcome_of(cancelled=True), args)
    assert args.output.read_text().startswith(f"PARTIAL REPORT: audit {'t' * 32} was cancelled")
    html = local_report.render(outcome_of(cancelled=True), report_pb2.REPORT_FORMAT_HTML, "cancelled")
    body = html[html.index("<body"):]
    assert body.index("Partial report:") < body.index("BASELINE")


def test_a_stream_that_breaks_off_still_leaves_the_partial_report(tmp_path):
    from privaudit.client.api import AuditError

    args = run_args(tmp_path, "text")

    def audit(outcome: AuditOutcome, display) -> None:
        outcome.task_id, outcome.attack_names, outcome.results = "t" * 32, ["BASELINE", "LIRA"], [succeeded(0)]
        raise AuditError("gone")

    with pytest.raises(AuditError):
        cli._follow(args, audit)
    text = args.output.read_text()
    assert text.startswith("PARTIAL REPORT: the stream of the audit broke off") and "BASELINE" in text


def test_ctrl_c_leaves_the_partial_report_and_exits_130(tmp_path, capsys):
    args = run_args(tmp_path, "json", orchestrator="127.0.0.1:1")

    def audit(outcome: AuditOutcome, display) -> None:
        outcome.task_id, outcome.attack_names, outcome.results = "t" * 32, ["BASELINE", "LIRA"], [succeeded(0)]
        raise KeyboardInterrupt

    args.handler = lambda parsed: cli._follow(parsed, audit)
    assert cli._dispatch(args) == 130
    report = AuditReport.model_validate_json(args.output.read_text())
    assert report.partial and report.partial_reason.startswith("interrupted (Ctrl-C)")
    assert f"privaudit watch {'t' * 32}" in capsys.readouterr().err  # a remote audit goes on


def test_watch_renders_another_format_from_the_results(tmp_path):
    outcome = outcome_of()
    outcome.results.append(succeeded(1, "LIRA", auc=0.9))
    outcome.renderings = {report_pb2.REPORT_FORMAT_TEXT: "the text report\n"}
    args = run_args(tmp_path, "json")
    assert cli._deliver(outcome, args) == cli.EXIT_OK
    report = AuditReport.model_validate_json(args.output.read_text())
    assert not report.partial and [a.name for a in report.attacks] == ["BASELINE", "LIRA"]
    assert report.attacks[1].metrics.auc == 0.9
    same = run_args(tmp_path, None)
    cli._deliver(outcome, same)
    assert same.output.read_text() == "the text report\n"


# ---------------------------------------------------------------- the command line


def test_a_closed_pipe_ends_quietly_with_141():
    """`privaudit attacks | head -1`, with the reader gone before the first write."""
    process = subprocess.Popen([*PRIVAUDIT, "attacks"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(60) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_cluster_down_twice_exits_0_saying_nothing_was_running(tmp_path):
    down = subprocess.run([*PRIVAUDIT, "cluster", "down", "--state-dir", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert "nothing was running" in down.stdout
    mistyped = subprocess.run([*PRIVAUDIT, "cluster", "down", "--state-dir", str(tmp_path / "no")], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    assert mistyped.returncode == 1 and "there is no such folder" in mistyped.stderr


def test_fail_on_regression_needs_a_baseline_and_a_baseline_must_be_a_report(tmp_path):
    task = str(REPO / "example/tasks/mem_inf.yaml")
    alone = subprocess.run([*PRIVAUDIT, "run", task, "--fail-on-regression"], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert alone.returncode == 2 and "--fail-on-regression: give the report to compare with" in alone.stderr
    (tmp_path / "old.json").write_text('{"schema_version": "2.0"}')
    wrong = subprocess.run([*PRIVAUDIT, "run", task, "--baseline", str(tmp_path / "old.json")], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "is not a JSON report of this privaudit" in wrong.stderr


# ---------------------------------------------------------------- compare and --fail-on-regression


def typed(*results: results_pb2.AttackResult, task_id: str) -> AuditReport:
    from test_reporter_fixtures import make_report

    from privaudit.services.reporter import render_json

    return AuditReport.model_validate_json(render_json.render(make_report(*results, task_id=task_id)))


def test_compare_prints_each_attacks_change_and_whether_it_is_beyond_noise():
    from privaudit.client.compare_view import comparison_lines
    from privaudit.services.reporter.compare import compare

    old = typed(succeeded(0, auc=0.6), succeeded(1, "LIRA", auc=0.7), task_id="o" * 32)
    new = typed(succeeded(0, auc=0.9), succeeded(1, "LIRA", auc=0.7), task_id="n" * 32)
    lines = comparison_lines(compare(old, new), new)
    assert lines[0].startswith(f"baseline: audit {'o' * 32} of ") and lines[1].startswith(f"new:      audit {'n' * 32}")
    baseline = next(line for line in lines if line.startswith("1 BASELINE"))
    assert "0.6000 -> 0.9000 (+0.3000, worse)" in baseline and baseline.endswith("REGRESSED")
    lira = next(line for line in lines if line.startswith("2 LIRA"))
    assert "0.7000 -> 0.7000 (+0.0000, within noise)" in lira and "REGRESSED" not in lira
    assert "REGRESSED: some attack does measurably better, or a risk rose" in lines


@pytest.mark.parametrize(("fail_on", "expected"), [(None, cli.EXIT_REGRESSED), ("LOW", cli.EXIT_RISKY)])
def test_fail_on_regression_exits_5_unless_the_risk_gate_took_precedence(tmp_path, fail_on, expected):
    from privaudit.services.reporter.compare import compare

    old = typed(succeeded(0, auc=0.6), succeeded(1, "LIRA", auc=0.7), task_id="o" * 32)
    new = typed(succeeded(0, auc=0.9), succeeded(1, "LIRA", auc=0.7), task_id="n" * 32)
    outcome = outcome_of()
    outcome.results.append(succeeded(1, "LIRA", auc=0.7))
    outcome.summary = report_pb2.ReportSummary(overall_risk=report_pb2.RISK_LEVEL_HIGH)
    outcome.renderings = {report_pb2.REPORT_FORMAT_TEXT: "report\n"}
    outcome.report = new.model_copy(update={"comparison": compare(old, new)})
    args = run_args(tmp_path, "text")
    args.fail_on, args.fail_on_regression = fail_on, True
    assert cli._deliver(outcome, args) == expected
    outcome.report = new.model_copy(update={"comparison": compare(new, new)})
    args.fail_on = None
    assert cli._deliver(outcome, args) == cli.EXIT_OK
    outcome.report = new  # an orchestrator that did not compare: the gate cannot pass
    assert cli._deliver(outcome, args) == cli.EXIT_FAILED


def test_risk_words_are_the_typed_reports():
    from privaudit.client.status_view import risk_word
    from privaudit.services.reporter.report_model import risk_name

    assert [risk_word(level) for level in report_pb2.RiskLevel.values()] == \
        [risk_name(level) for level in report_pb2.RiskLevel.values()] == ["UNRATED", "LOW", "MIDDLE", "HIGH"]


def test_another_format_keeps_the_typed_reports_policy_provenance_and_comparison(tmp_path):
    from privaudit.services.reporter.compare import compare

    old = typed(succeeded(0, auc=0.6), succeeded(1, "LIRA", auc=0.7), task_id="o" * 32)
    new = typed(succeeded(0, auc=0.9), succeeded(1, "LIRA", auc=0.7), task_id="t" * 32)
    outcome = outcome_of()
    outcome.results = [succeeded(0, auc=0.9), succeeded(1, "LIRA", auc=0.7)]
    outcome.report = new.model_copy(update={"comparison": compare(old, new)})
    outcome.renderings = {report_pb2.REPORT_FORMAT_JSON: outcome.report.model_dump_json()}
    args = run_args(tmp_path, "text")
    cli._deliver(outcome, args)
    text = args.output.read_text()
    assert "Comparison:" in text and f"baseline: task {'o' * 32}" in text
    assert outcome.report.provenance.task_digest in text  # the reporter's provenance, not one made up here


def test_the_client_and_the_report_model_it_reads_reports_with_import_nothing_heavy():
    """Issue 17: the client's process stays light, and reading the typed report at the end of an audit
    costs no numpy or scipy import (it once cost 0.3 s of the report's delivery, through epsilon)."""
    modules = ("privaudit.client.cli", "privaudit.client.api", "privaudit.services.reporter.report_model")
    assert heavy_imports(modules, ("paddle", "sklearn", "numpy", "scipy", "matplotlib", "jinja2")) == []
