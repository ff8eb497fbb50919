"""The metrics the risk policy reads, how they are named in reports and how numbers and the
epsilon bound are written."""

from __future__ import annotations

from dataclasses import dataclass

from privaudit.v1 import results_pb2
from services.reporter.epsilon import CONFIDENCE, EpsilonBound


def decimal(value: float) -> str:
    """A figure as reports print it: four decimals."""
    return f"{value:.4f}"


def epsilon_value(bound: EpsilonBound) -> str:
    """The bound's epsilon as reports print it: four decimals, or `0` when it rules out nothing."""
    return decimal(bound.epsilon) if bound.epsilon else "0"


def epsilon_claim(bound: EpsilonBound) -> str:
    """What the bound says, e.g. `epsilon >= 0.7312 at delta = 1e-05`."""
    return f"epsilon >= {epsilon_value(bound)} at delta = {bound.delta:g}"


def epsilon_basis(bound: EpsilonBound) -> str:
    """Where the bound comes from, e.g. `from FPR 0.0100 and TPR 0.3000, 95% Clopper-Pearson intervals`."""
    confidence = f"{CONFIDENCE:.0%} Clopper-Pearson intervals"
    if not bound.epsilon:
        return f"no point of the ROC curve rules out any epsilon with {confidence}"
    return f"from FPR {decimal(bound.fpr)} and TPR {decimal(bound.tpr)}, {confidence}"


@dataclass(frozen=True)
class Figure:
    """A `Metrics` field that is risk evidence. `field` is also its key in the policy file;
    `fpr` is the false-positive rate a TPR figure is read at (None for AUC)."""

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

    def not_measurable(self, metrics: results_pb2.Metrics) -> str:
        """Why the figure is missing, e.g. `needs >= 1000 non-members, had 500`."""
        return f"needs >= {self.min_non_members} non-members, had {metrics.num_non_members}"


AUC = Figure("auc", "AUC")
TPR_AT_1PCT_FPR = Figure("tpr_at_1pct_fpr", "TPR@1%FPR", fpr=0.01)
TPR_AT_0_1PCT_FPR = Figure("tpr_at_0_1pct_fpr", "TPR@0.1%FPR", fpr=0.001)
# The evidence of a rating, in the order reasons mention it.
RISK_FIGURES = (AUC, TPR_AT_1PCT_FPR, TPR_AT_0_1PCT_FPR)
LOW_FPR_FIGURES = (TPR_AT_1PCT_FPR, TPR_AT_0_1PCT_FPR)
