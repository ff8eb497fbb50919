"""Rating attacks by the risk policy: one `Assessment` per attack and the overall risk."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from privaudit.v1 import report_pb2, results_pb2
from services.reporter.figures import AUC, LOW_FPR_FIGURES, RISK_FIGURES, TPR_AT_1PCT_FPR, decimal
from services.reporter.policy import Policy, Thresholds

# Figures are compared at this many decimals, so that an AUC of 0.55 computed as
# 0.5499999999999999 counts as 0.55 and the reason never reads "0.5500 < 0.55".
_COMPARE_DECIMALS = 9


class Risk(IntEnum):
    """A risk level, ordered from least to most severe; values are the proto's."""

    LOW = report_pb2.RISK_LEVEL_LOW
    MIDDLE = report_pb2.RISK_LEVEL_MIDDLE
    HIGH = report_pb2.RISK_LEVEL_HIGH


@dataclass(frozen=True)
class Assessment:
    """The rating of one attack; `risk` is None when the attack failed and was not rated."""

    attack_index: int
    attack_name: str
    risk: Risk | None
    reason: str

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
    """Rates one attack: the highest level any of its measured figures reaches."""
    if result.status != results_pb2.ATTACK_STATUS_SUCCEEDED:
        return Assessment(result.attack_index, result.attack_name, None, _failure_reason(result.error))
    risk, reason = rate(result.metrics, policy)
    return Assessment(result.attack_index, result.attack_name, risk, reason)


def rate(metrics: results_pb2.Metrics, policy: Policy) -> tuple[Risk, str]:
    """The level and the one-sentence evidence for it, e.g. (HIGH, "AUC 0.7100 >= 0.65")."""
    measured = [(figure, value) for figure in RISK_FIGURES if (value := figure.value(metrics)) is not None]
    caveat = _unmeasured_caveat(metrics)
    for risk, thresholds in ((Risk.HIGH, policy.levels.high), (Risk.MIDDLE, policy.levels.middle)):
        reached = [
            f"{figure.label} {decimal(value)} >= {_threshold(thresholds, figure.field)}"
            for figure, value in measured
            if round(value, _COMPARE_DECIMALS) >= getattr(thresholds, figure.field)
        ]
        if reached:
            return risk, " and ".join(reached) + caveat
    below = [
        f"{figure.label} {decimal(value)} < {_threshold(policy.levels.middle, figure.field)}"
        for figure, value in measured
    ]
    return Risk.LOW, "below every MIDDLE threshold: " + ", ".join(below) + caveat


def overall_risk(assessments: Iterable[Assessment]) -> Risk | None:
    """The worst level among the rated (succeeded) attacks; None when none was rated."""
    return max((a.risk for a in assessments if a.risk is not None), default=None)


def _threshold(thresholds: Thresholds, field: str) -> str:
    return f"{getattr(thresholds, field):g}"


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
    where = f" at {error.field}" if error.field else ""
    return f"not rated: the attack failed ({error.code or 'UNKNOWN'}{where})"
