"""`privaudit status` and `privaudit list` for people: lines to read, not JSON."""

from __future__ import annotations

from privaudit.client.proto_data import enum_word
from privaudit.v1 import orchestrator_pb2, report_pb2, results_pb2


def state_word(status: orchestrator_pb2.AuditStatus) -> str:
    return enum_word(orchestrator_pb2.AuditState.DESCRIPTOR, status.state)




def risk_word(risk: int) -> str:
    """A risk level as the typed report writes it: LOW, MIDDLE, HIGH, or UNRATED (the report
    model's `risk_name`, without importing the model: the commands that print this stay light)."""
    return enum_word(report_pb2.RiskLevel.DESCRIPTOR, risk)


def overall_risk_word(status: orchestrator_pb2.AuditStatus) -> str:
    """The audit's overall risk, or what stands in for it: `pending` until the report is built,
    `none` for an audit that ended without one (failed or cancelled), `UNRATED` when no attack
    was rated (every one failed)."""
    if status.HasField("summary"):
        return risk_word(status.summary.overall_risk)
    running = status.state in (orchestrator_pb2.AUDIT_STATE_QUEUED, orchestrator_pb2.AUDIT_STATE_RUNNING)
    return "pending" if running else "none"


def list_line(status: orchestrator_pb2.AuditStatus) -> str:
    return (f"{status.task_id}  {status.created.ToDatetime():%Y-%m-%d %H:%M:%S}  {state_word(status):<9}  "
            f"risk {overall_risk_word(status):<7}  {', '.join(status.attack_names)}")


def status_lines(status: orchestrator_pb2.AuditStatus) -> list[str]:
    """The audit, then one line per attack in task order: its result so far and its risk."""
    lines = [f"audit {status.task_id}: {state_word(status)}, created {status.created.ToDatetime():%Y-%m-%d %H:%M:%S} "
             f"UTC, {status.event_count} events",
             f"overall risk: {overall_risk_word(status)}"]
    if status.error:
        lines.append(f"error: {status.error}")
    results = {result.attack_index: result for result in status.results}
    risks = {attack.attack_index: attack for attack in status.summary.attacks}
    count = len(status.attack_names)
    for index, name in enumerate(status.attack_names):
        line = f"  {index + 1}/{count} {name:<12} {_result_words(results.get(index))}"
        if index in risks:
            line += f"; risk {risk_word(risks[index].risk)}"
        lines.append(line)
    return lines


def _result_words(result: results_pb2.AttackResult | None) -> str:
    if result is None:
        return "no result yet"
    if result.status != results_pb2.ATTACK_STATUS_SUCCEEDED:
        return f"FAILED: {result.error.message}"
    metrics = result.metrics
    words = f"auc {metrics.auc:.4f}{_interval(metrics, 'auc_interval')}"
    if metrics.HasField("tpr_at_1pct_fpr"):
        words += f", TPR@1%FPR {metrics.tpr_at_1pct_fpr:.4f}{_interval(metrics, 'tpr_at_1pct_fpr_interval')}"
    return words + f", advantage {metrics.advantage:.4f}"


def _interval(metrics: results_pb2.Metrics, name: str) -> str:
    if not metrics.HasField(name):
        return ""
    interval = getattr(metrics, name)
    return f" [{interval.lower:.4f}, {interval.upper:.4f}]"
