"""A report against a baseline report: per attack, how AUC and TPR@1%FPR changed, whether the
change is beyond measurement noise, and the risk before and after.

The test of a figure's change: z = (new - old) / sqrt(se_old^2 + se_new^2), each standard error read
off the figure's 95% interval (half its width over 1.96; for an interval clipped at 0 or 1, the
unclipped side's distance from the figure), or, for a result without an interval, from the figure
alone (Hanley and McNeil's formula for an AUC, the binomial one for a TPR). A TPR's standard error
is at least that of two proportions pooled, so that a zero-width interval (a TPR of 0 with few
members) does not make any change significant. The evaluations are treated as independent; runs on
the same records are positively correlated, which makes the test conservative. A change is beyond
noise when |z| exceeds the two-sided critical value at `alpha` shared among the figures compared
(Bonferroni), so that comparing two runs of an unchanged model flags a change at most `alpha` of
the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import ndtri

from privaudit.services.reporter.report_model import (
    UNRATED,
    AttackComparison,
    AttackReport,
    AuditReport,
    Comparison,
    FigureChange,
    Interval,
    Metrics,
    RiskName,
)

ALPHA = 0.05
_Z_95 = float(-ndtri(0.025))  # the reports' intervals are 95%
_RISK_ORDER: dict[RiskName, int] = {"LOW": 0, "MIDDLE": 1, "HIGH": 2}


@dataclass(frozen=True)
class _Measured:
    """A figure of one attack in one report, with its standard error."""

    value: float
    se: float


def compare(old: AuditReport, new: AuditReport, alpha: float = ALPHA) -> Comparison:
    """`new` against the baseline `old`; attacks are paired by index and name."""
    old_attacks = {(a.index, a.name): a for a in old.attacks}
    new_keys = {(a.index, a.name) for a in new.attacks}
    pairs = [(old_attacks[(a.index, a.name)], a) for a in new.attacks if (a.index, a.name) in old_attacks]
    figures = [(_auc(o), _auc(n), False) for o, n in pairs] + [(_tpr(o), _tpr(n), True) for o, n in pairs]
    compared = sum(before is not None and after is not None for before, after, _ in figures)
    critical = float(-ndtri(alpha / (2 * max(compared, 1))))
    changes = [_change(before, after, critical, pooled) for before, after, pooled in figures]
    attacks = [_attack(o, n, auc, tpr) for (o, n), auc, tpr in zip(pairs, changes[:len(pairs)],
                                                                   changes[len(pairs):], strict=True)]
    unmatched = ([f"{a.name} (attacks[{a.index}]) only in the baseline" for a in old.attacks
                  if (a.index, a.name) not in new_keys]
                 + [f"{a.name} (attacks[{a.index}]) only in the new report" for a in new.attacks
                    if (a.index, a.name) not in old_attacks])
    return Comparison(
        baseline_task_id=old.task_id,
        baseline_generated_at=old.provenance.generated_at,
        attacks=attacks,
        unmatched=unmatched,
        regressed=any(a.regressed for a in attacks),
        method=(f"z = (new - old) / sqrt(se_old^2 + se_new^2), each standard error read off the figure's 95% "
                f"interval, the runs taken as independent (conservative for runs on the same records); beyond "
                f"noise when |z| > {critical:.2f}: two-sided, alpha {alpha:g} shared among the {compared} "
                f"figures compared (Bonferroni)"),
    )


def _attack(old: AttackReport, new: AttackReport, auc: FigureChange, tpr: FigureChange) -> AttackComparison:
    rose = old.risk != UNRATED and new.risk != UNRATED and _RISK_ORDER[new.risk] > _RISK_ORDER[old.risk]
    return AttackComparison(index=new.index, name=new.name, auc=auc, tpr_at_1pct_fpr=tpr, risk_before=old.risk,
                            risk_after=new.risk, regressed=rose or "worse" in (auc.direction, tpr.direction))


def _change(old: tuple[_Measured, Metrics] | None, new: tuple[_Measured, Metrics] | None, critical: float,
            pooled_floor: bool) -> FigureChange:
    if old is None or new is None:
        return FigureChange(old=old[0].value if old else None, new=new[0].value if new else None, delta=None, z=None,
                            beyond_noise=False, direction="unchanged")
    (before, old_metrics), (after, new_metrics) = old, new
    delta = after.value - before.value
    se = math.hypot(before.se, after.se)
    if pooled_floor:
        se = max(se, _pooled_se(before.value, old_metrics.num_members, after.value, new_metrics.num_members))
    if se == 0:  # both exact (zero-width intervals): any change is real, and has no z
        z, beyond = (0.0 if delta == 0 else None), delta != 0
    else:
        z = delta / se
        beyond = abs(z) > critical
    direction = "unchanged" if not beyond else "worse" if delta > 0 else "better"
    return FigureChange(old=before.value, new=after.value, delta=delta, z=z, beyond_noise=beyond, direction=direction)


def _auc(attack: AttackReport) -> tuple[_Measured, Metrics] | None:
    metrics = attack.metrics
    if metrics is None:
        return None
    se = (_interval_se(metrics.auc, metrics.auc_interval) if metrics.auc_interval is not None
          else _hanley_mcneil_se(metrics.auc, metrics.num_members, metrics.num_non_members))
    return _Measured(metrics.auc, se), metrics


def _tpr(attack: AttackReport) -> tuple[_Measured, Metrics] | None:
    metrics = attack.metrics
    if metrics is None or metrics.tpr_at_1pct_fpr is None:
        return None
    tpr, interval = metrics.tpr_at_1pct_fpr, metrics.tpr_at_1pct_fpr_interval
    se = (_interval_se(tpr, interval) if interval is not None
          else math.sqrt(tpr * (1 - tpr) / max(metrics.num_members, 1)))
    return _Measured(tpr, se), metrics


def _interval_se(value: float, interval: Interval) -> float:
    """The standard error a 95% normal interval around `value` implies; the side not clipped at 0
    or 1 (the wider one) gives the half-width."""
    return max(value - interval.lower, interval.upper - value) / _Z_95


def _hanley_mcneil_se(auc: float, members: int, non_members: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC, for results without an interval."""
    if members < 1 or non_members < 1:
        return 0.0
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (members - 1) * (q1 - auc * auc)
                + (non_members - 1) * (q2 - auc * auc)) / (members * non_members)
    return math.sqrt(max(variance, 0.0))


def _pooled_se(first: float, first_n: int, second: float, second_n: int) -> float:
    """The standard error of the difference of two proportions under their pooled rate."""
    if first_n < 1 or second_n < 1:
        return 0.0
    pooled = (first * first_n + second * second_n) / (first_n + second_n)
    return math.sqrt(pooled * (1 - pooled) * (1 / first_n + 1 / second_n))
