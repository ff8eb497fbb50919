"""`privaudit compare OLD NEW` for people: per attack, the change in AUC and TPR@1%FPR, whether
it is beyond noise, and the risk before and after."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from privaudit.services.reporter.report_model import AuditReport, Comparison, FigureChange


def comparison_lines(comparison: Comparison, new: AuditReport) -> list[str]:
    """The comparison of `new` with its baseline, a line per attack compared."""
    lines = [f"baseline: audit {comparison.baseline_task_id or '(no id)'}"
             + (f" of {comparison.baseline_generated_at:%Y-%m-%d %H:%M:%S} UTC"
                if comparison.baseline_generated_at else ""),
             f"new:      audit {new.task_id or '(no id)'} of {new.provenance.generated_at:%Y-%m-%d %H:%M:%S} UTC",
             f"{'attack':<18} {'AUC old -> new (change)':<44} {'TPR@1%FPR old -> new (change)':<44} risk"]
    for attack in comparison.attacks:
        risk = (attack.risk_before if attack.risk_before == attack.risk_after
                else f"{attack.risk_before} -> {attack.risk_after}")
        lines.append(f"{attack.index + 1} {attack.name:<16} {figure_words(attack.auc):<44} "
                     f"{figure_words(attack.tpr_at_1pct_fpr):<44} {risk}"
                     + ("  REGRESSED" if attack.regressed else ""))
    lines += [f"not compared: {name}" for name in comparison.unmatched]
    verdict = ("REGRESSED: some attack does measurably better, or a risk rose" if comparison.regressed
               else "no regression beyond noise")
    lines += [verdict, f"beyond noise: {comparison.method}"]
    return lines


def figure_words(change: FigureChange) -> str:
    """`0.6100 -> 0.5400 (-0.0700, better)`; `within noise` when the change is not beyond it."""
    if change.old is None or change.new is None or change.delta is None:
        return f"{_number(change.old)} -> {_number(change.new)} (not measured on both)"
    verdict = change.direction if change.beyond_noise else "within noise"
    return f"{change.old:.4f} -> {change.new:.4f} ({change.delta:+.4f}, {verdict})"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
