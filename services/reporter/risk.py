"""Rating attacks by the risk policy: one `Assessment` per attack and the overall risk."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from privaudit.services.common.errors import failure_summary
from privaudit.services.reporter.figures import (
    AUC,
    LOW_FPR_FIGURES,
    RISK_FIGURES,
    TPR_AT_1PCT_FPR,
    Figure,
    p_equals,
    probability,
)
from privaudit.services.reporter.policy import Policy
from privaudit.v1 import report_pb2, results_pb2

# Figures are compared at this many decimals, so that an AUC of 0.55 computed as
# 0.5499999999999999 counts as 0.55 and the reason never reads "0.5500 < 0.55".
_COMPARE_DECIMALS = 9
# A p-value equal to alpha / m counts as beyond chance even when the division rounds it below.
_RELATIVE_SLACK = 1e-9


class Risk(IntEnum):
    """A risk level, ordered from least to most severe; values are the proto's."""

    LOW = report_pb2.RISK_LEVEL_LOW
    MIDDLE = report_pb2.RISK_LEVEL_MIDDLE
    HIGH = report_pb2.RISK_LEVEL_HIGH


@dataclass(frozen=True)
class Assessment:
    """The rating of one attack; `risk` is None when the attack failed and was not rated.
    `significance` is the p-value at or below which its figures count as beyond chance."""

    attack_index: int
    attack_name: str
    risk: Risk | None
    reason: str
    significance: float | None = None

    @property
    def is_risky(self) -> bool:
        """Rated MIDDLE or HIGH: what the summary warns about."""
        return self.risk is not None and self.risk >= Risk.MIDDLE

    @property
    def label(self) -> str:
        """How reports name the attack: `ML-LEAK (attacks[1])`, unambiguous when a name repeats."""
        return f"{self.attack_name} (attacks[{self.attack_index}])"

    def to_proto(self) -> report_pb2.AttackAssessment:
        return report_pb2.AttackAssessment(
            attack_index=self.attack_index,
            attack_name=self.attack_name,
            risk=self.risk if self.risk is not None else report_pb2.RISK_LEVEL_UNSPECIFIED,
            reason=self.reason,
        )


def assess(result: results_pb2.AttackResult, policy: Policy) -> Assessment:
    """Rates one attack: the highest level any of its measured figures reaches beyond chance."""
    if result.status != results_pb2.ATTACK_STATUS_SUCCEEDED:
        return Assessment(result.attack_index, result.attack_name, None, _failure_reason(result.error))
    risk, reason = rate(result.metrics, policy)
    return Assessment(result.attack_index, result.attack_name, risk, reason, significance(result.metrics, policy))


def significance(metrics: results_pb2.Metrics, policy: Policy) -> float:
    """The p-value at or below which a figure of this attack is beyond chance: alpha / m, m the
    number of figures measured (Bonferroni over the attack's figures)."""
    measured = sum(figure.value(metrics) is not None for figure in RISK_FIGURES)
    return policy.beyond_chance.alpha / measured


@dataclass(frozen=True)
class _Finding:
    """One measured figure: the highest level whose threshold it reaches (LOW: none) and
    whether it is beyond chance."""

    figure: Figure
    evidence: str
    reached: Risk
    threshold: float | None  # of `reached`; None when LOW
    p_value: float | None
    beyond_chance: bool


def rate(metrics: results_pb2.Metrics, policy: Policy) -> tuple[Risk, str]:
    """The level and the one-sentence evidence for it, e.g.
    (HIGH, "AUC 0.7100 [0.6700, 0.7500] >= 0.65, beyond chance (p = 3e-12)")."""
    level_of_chance = significance(metrics, policy)
    findings = [_finding(figure, metrics, policy, level_of_chance) for figure in RISK_FIGURES
                if figure.value(metrics) is not None]
    risk = max((f.reached for f in findings if f.beyond_chance), default=Risk.LOW)
    held_back = [_within_chance(f, level_of_chance) for f in findings if not f.beyond_chance and f.reached > risk]
    caveat = _unmeasured_caveat(metrics)
    if risk is not Risk.LOW:
        reached = [f"{f.evidence} >= {f.threshold:g}, beyond chance ({p_equals(f.p_value)})"
                   for f in findings if f.beyond_chance and f.reached is risk]
        return risk, "; ".join([" and ".join(reached), *held_back]) + caveat
    middle = policy.levels.middle
    parts = [_within_chance(f, level_of_chance) if f.reached > Risk.LOW
             else f"{f.evidence} < {getattr(middle, f.figure.field):g}" for f in findings]
    opening = "nothing reaches MIDDLE beyond chance: " if held_back else "below every MIDDLE threshold: "
    return Risk.LOW, opening + ", ".join(parts) + caveat


def overall_risk(assessments: Iterable[Assessment]) -> Risk | None:
    """The worst level among the rated (succeeded) attacks; None when none was rated."""
    return max((a.risk for a in assessments if a.risk is not None), default=None)


def _finding(figure: Figure, metrics: results_pb2.Metrics, policy: Policy, level_of_chance: float) -> _Finding:
    value = round(figure.value(metrics), _COMPARE_DECIMALS)
    reached, threshold = Risk.LOW, None
    for risk, thresholds in ((Risk.HIGH, policy.levels.high), (Risk.MIDDLE, policy.levels.middle)):
        if value >= getattr(thresholds, figure.field):
            reached, threshold = risk, getattr(thresholds, figure.field)
            break
    p_value = figure.p_value(metrics)
    beyond = p_value is not None and p_value <= level_of_chance * (1 + _RELATIVE_SLACK)
    return _Finding(figure, figure.evidence(metrics), reached, threshold, p_value, beyond)


def _within_chance(finding: _Finding, level_of_chance: float) -> str:
    """Why a figure at or above a threshold did not count."""
    reaches = f"{finding.evidence} reaches {finding.threshold:g} but"
    if finding.p_value is None:
        return (f"{reaches} has no chance p-value (the result comes from a worker older than that field), "
                "so it does not count as beyond chance")
    return (f"{reaches} is within chance at this size "
            f"({p_equals(finding.p_value)} > {probability(level_of_chance)})")


def _unmeasured_caveat(metrics: results_pb2.Metrics) -> str:
    """What the rating could not use, as the end of the reason sentence."""
    missing = [figure for figure in LOW_FPR_FIGURES if figure.value(metrics) is None]
    if not missing:
        return ""
    if len(missing) == len(LOW_FPR_FIGURES):
        return (f"; rated on {AUC.label} alone: no TPR at low FPR is measurable "
                f"({TPR_AT_1PCT_FPR.not_measurable(metrics)})")
    (figure,) = missing
    (fallback,) = (other for other in LOW_FPR_FIGURES if other is not figure)
    return (f"; {figure.label} not measurable ({figure.not_measurable(metrics)}), "
            f"so low FPR is judged by {fallback.label}")


def _failure_reason(error: results_pb2.AttackError) -> str:
    return f"not rated: the attack failed ({failure_summary(error)})"
