"""Reports rendered on the client, with the reporter's own code, from the results an audit's
stream carried: the partial report of an audit that was cancelled or failed (so that `--output`
is never left empty), and `watch --format` in a format other than the one the audit was run with.

When the stream carried the typed report, the rendering keeps its risk policy, provenance and
comparison, so it says what the reporter's did; else (a partial report, an audit stored by an
older orchestrator) the risk is rated with the default risk policy
(services/reporter/risk_policy.yaml) and the provenance holds the seed alone.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Sequence

import grpc

from privaudit.client.api import AuditOutcome
from privaudit.v1 import report_pb2, results_pb2


def render(outcome: AuditOutcome, report_format: int, partial_reason: str = "") -> str:
    """The report of the outcome's results in `report_format` (a ReportFormat). With
    `partial_reason` the report is marked partial (by the renderers: the JSON's `partial` fields,
    a first line in text, a banner in HTML) and each attack without a result is listed as failed,
    saying it did not finish."""
    from privaudit.services.reporter.policy import load_policy  # the reporter's code: imported when needed
    from privaudit.services.reporter.report import build_report
    from privaudit.services.reporter.server import RENDERERS

    results = list(outcome.results)
    if partial_reason:
        results += unfinished(outcome.attack_names, results, partial_reason)
    if not results:
        return _empty(outcome.task_id, report_format, partial_reason or "no attack result arrived")
    typed = outcome.report
    provenance = report_pb2.ReportProvenance(seed=outcome.seed) if outcome.seed is not None else None
    report = build_report(outcome.task_id, results, typed.risk_policy if typed else load_policy(), provenance)
    if typed is not None:
        report = dataclasses.replace(report, provenance=typed.provenance, comparison=typed.comparison)
    if partial_reason:
        report = dataclasses.replace(report, partial_reason=partial_reason)
    return RENDERERS[report_format](report).decode()


def unfinished(attack_names: Sequence[str], results: Sequence[results_pb2.AttackResult],
               reason: str) -> list[results_pb2.AttackResult]:
    """A failed result for each attack of the task that has none, saying why it has none."""
    finished = {result.attack_index for result in results}
    return [results_pb2.AttackResult(
        attack_index=index, attack_name=name, status=results_pb2.ATTACK_STATUS_FAILED,
        error=results_pb2.AttackError(code=grpc.StatusCode.CANCELLED.name, message=f"did not finish: {reason}"))
        for index, name in enumerate(attack_names) if index not in finished]


def _empty(task_id: str, report_format: int, reason: str) -> str:
    """What a report says when there is nothing to report on at all."""
    if report_format == report_pb2.REPORT_FORMAT_JSON:
        return json.dumps({"task_id": task_id, "partial": True, "partial_reason": reason, "attacks": []},
                          indent=2) + "\n"
    text = f"PARTIAL REPORT: {reason}\n\nAudit {task_id or '(no id)'}: no attack finished.\n"
    if report_format == report_pb2.REPORT_FORMAT_HTML:
        return f"<!DOCTYPE html>\n<pre>{html.escape(text)}</pre>\n"
    return text
