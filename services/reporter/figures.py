"""The metrics the risk policy reads, how they are named in reports, and how numbers, intervals,
p-values and the epsilon estimate are written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from privaudit.services.reporter.epsilon_terms import CONFIDENCE
from privaudit.v1 import results_pb2

if TYPE_CHECKING:  # the estimator needs numpy and scipy; the report model reads this module without them
    from privaudit.services.reporter.epsilon import EpsilonEstimate

Interval = tuple[float, float]
# Below this a p-value computed in double precision may have underflowed to 0.
_SMALLEST_P = 1e-300


def decimal(value: float) -> str:
    """A figure as reports print it: four decimals."""
    return f"{value:.4f}"


def score(value: float) -> str:
    """A membership score or threshold as reports print it: four significant digits (scores have
    any scale: a negated loss of 9e-09 prints as `-9.073e-09`, never `-0.0000`); the JSON report keeps the
    exact value. A zero prints as `0` whatever its sign."""
    return f"{value + 0.0:.4g}"


def scores_apart(values: Sequence[float]) -> list[str]:
    """Scores as `score` prints them, with more significant digits where that is needed to tell
    two different scores apart (0.99691934 and 0.99691933, not 0.9969 twice); equal ones print alike."""
    distinct = len(set(values))
    for digits in range(4, 18):
        printed = [f"{value + 0.0:.{digits}g}" for value in values]
        if len(set(printed)) == distinct:
            return printed
    return [repr(value + 0.0) for value in values]


def timestamp(moment: datetime) -> str:
    """A UTC date and time as reports print it: `2026-12-03T16:40:00Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed(value: float) -> str:
    """A change as reports print it: four decimals with its sign, `+0.0125` or `-0.0550`."""
    return f"{value + 0.0:+.4f}"


def probability(value: float) -> str:
    """A p-value or significance level as reports print it: three significant digits (3e-12, 0.0167)."""
    return f"{value:.3g}"


def p_equals(p_value: float) -> str:
    """A chance p-value as reports state it: `p = 3e-12`, or `p < 1e-300` for one that underflowed to 0."""
    return f"p = {probability(p_value)}" if p_value > 0 else f"p < {probability(_SMALLEST_P)}"


def with_interval(value: float, interval: Interval | None) -> str:
    """`0.7050 [0.6700, 0.7400]`, or the value alone when the result carries no interval."""
    return decimal(value) + (f" [{decimal(interval[0])}, {decimal(interval[1])}]" if interval else "")


def interval_of(message: results_pb2.Metrics | results_pb2.ClassMetrics, field: str) -> Interval | None:
    """The `Interval` in `field` as (lower, upper); None when unset."""
    if not message.HasField(field):
        return None
    interval = getattr(message, field)
    return interval.lower, interval.upper


def threshold_source(metrics: results_pb2.Metrics) -> str:
    """Where the decision threshold comes from, on one line, or that the worker did not say."""
    return " ".join(metrics.threshold_source.split()) or "the worker did not say where it comes from"


def epsilon_value(estimate: EpsilonEstimate) -> str:
    """The estimate's epsilon as reports print it: four decimals, or `0` when it rules out nothing."""
    return decimal(estimate.epsilon) if estimate.epsilon else "0"


def epsilon_claim(estimate: EpsilonEstimate) -> str:
    """What the estimate says, e.g. `epsilon >= 0.7312 at delta = 1e-05, 95% confidence`."""
    return f"epsilon >= {epsilon_value(estimate)} at delta = {estimate.delta:g}, {CONFIDENCE:.0%} confidence"


def epsilon_basis(estimate: EpsilonEstimate) -> str:
    """Where the estimate comes from: the operating point, the half it was chosen on and the
    other half's rates with the limits used."""
    chosen_on = f"{estimate.choosing_members} + {estimate.choosing_non_members} records"
    if estimate.point is None or estimate.bounding is None:
        return f"no operating point on the {chosen_on} that choose it rules out any epsilon"
    measured = estimate.bounding
    return (f"threshold {score(estimate.point.threshold)} with {estimate.point.inequality}, chosen on {chosen_on}; "
            f"on the other {estimate.bounding_members} + {estimate.bounding_non_members}: "
            f"TPR {decimal(estimate.tpr)} >= {decimal(measured.tpr_lower)}, "
            f"FPR {decimal(estimate.fpr)} <= {decimal(measured.fpr_upper)}")


@dataclass(frozen=True)
class Figure:
    """A `Metrics` field that is risk evidence. `field` is also its key in the policy file;
    `fpr` is the false-positive rate a TPR figure is read at (None for AUC). Its interval and
    chance p-value are the fields `<field>_interval` and `<field>_p_value`."""

    field: str
    label: str
    fpr: float | None = None

    @property
    def min_non_members(self) -> int:
        """Non-members needed before one false positive is within the FPR (1 / fpr)."""
        assert self.fpr is not None, f"{self.label} is not read at an FPR"
        return round(1 / self.fpr)

    def value(self, metrics: results_pb2.Metrics) -> float | None:
        """The figure, or None when the evaluation set is too small to measure it."""
        if self.fpr is not None and not metrics.HasField(self.field):
            return None
        return getattr(metrics, self.field)

    def interval(self, metrics: results_pb2.Metrics) -> Interval | None:
        """Its 95% interval; None when unset (not measurable, or a result of an older worker)."""
        return interval_of(metrics, f"{self.field}_interval")

    def p_value(self, metrics: results_pb2.Metrics) -> float | None:
        """The chance that guessing does at least as well on this set; None when unset."""
        field = f"{self.field}_p_value"
        return getattr(metrics, field) if metrics.HasField(field) else None

    def evidence(self, metrics: results_pb2.Metrics) -> str:
        """The measured figure with its interval, e.g. `AUC 0.7100 [0.6700, 0.7500]`."""
        value = self.value(metrics)
        assert value is not None, f"{self.label} was not measured"
        return f"{self.label} {with_interval(value, self.interval(metrics))}"

    def shown(self, metrics: results_pb2.Metrics) -> str:
        """The figure with its interval, or `n/a (why)`."""
        value = self.value(metrics)
        if value is None:
            return f"n/a ({self.not_measurable(metrics)})"
        return with_interval(value, self.interval(metrics))

    def not_measurable(self, metrics: results_pb2.Metrics) -> str:
        """Why the figure is missing, e.g. `needs >= 1000 non-members, had 500`."""
        return f"needs >= {self.min_non_members} non-members, had {metrics.num_non_members}"


AUC = Figure("auc", "AUC")
TPR_AT_1PCT_FPR = Figure("tpr_at_1pct_fpr", "TPR@1%FPR", fpr=0.01)
TPR_AT_0_1PCT_FPR = Figure("tpr_at_0_1pct_fpr", "TPR@0.1%FPR", fpr=0.001)
# The evidence of a rating, in the order reasons mention it.
RISK_FIGURES = (AUC, TPR_AT_1PCT_FPR, TPR_AT_0_1PCT_FPR)
LOW_FPR_FIGURES = (TPR_AT_1PCT_FPR, TPR_AT_0_1PCT_FPR)
