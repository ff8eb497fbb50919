"""The HTML report's figures: matplotlib (object API, Agg canvas) drawn to PNG data URIs, so
the page carries its images inside it.

Everything here is deterministic: the same inputs give byte-identical PNGs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from privaudit.v1 import results_pb2

MEMBER_COLOUR = "#c2410c"
NON_MEMBER_COLOUR = "#2563eb"
# One colour per attack on the ROC figure, in task order (repeating after the last).
ATTACK_COLOURS = ("#2563eb", "#c2410c", "#059669", "#7c3aed", "#be185d", "#0e7490", "#a16207")
_INK, _MUTED, _GRID = "#1f2937", "#6b7280", "#e5e7eb"
_STYLE = {
    "font.size": 9,
    "axes.edgecolor": _MUTED,
    "axes.labelcolor": _INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": _GRID,
    "grid.linewidth": 0.6,
    "xtick.color": _MUTED,
    "ytick.color": _MUTED,
    "legend.frameon": False,
}
_DPI = 160


@dataclass(frozen=True)
class RocCurve:
    """One attack's ROC curve and the evaluation set it was measured on."""

    label: str
    fpr: Sequence[float]
    tpr: Sequence[float]
    num_members: int
    num_non_members: int


def log_floor(curves: Sequence[RocCurve]) -> float:
    """The log axes' lower limit: half the finest resolution among the curves (1 / 2n), so a
    rate of 0 has a place to be drawn, at most 0.01 and at least 1e-6."""
    finest = max((max(c.num_members, c.num_non_members) for c in curves), default=1)
    return min(max(0.5 / finest, 1e-6), 0.01)


def roc_png(curves: Sequence[RocCurve]) -> str:
    """ROC curves on log-log axes with the chance diagonal; rates of 0 drawn on the lower edges."""
    floor = log_floor(curves)
    with rc_context(_STYLE):
        figure = Figure(figsize=(6.4, 4.6), layout="constrained")
        axes = figure.add_subplot()
        axes.plot([floor, 1], [floor, 1], linestyle="--", color=_MUTED, linewidth=1, label="chance (TPR = FPR)")
        for i, curve in enumerate(curves):
            axes.plot(np.clip(curve.fpr, floor, 1), np.clip(curve.tpr, floor, 1), linewidth=1.8,
                      color=ATTACK_COLOURS[i % len(ATTACK_COLOURS)], label=_literal(curve.label))
        axes.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1), aspect="equal",
                 xlabel="false-positive rate (non-members called members)",
                 ylabel="true-positive rate (members found)")
        axes.legend(loc="lower right")
        return _data_uri(figure)


def histogram_png(histogram: results_pb2.ScoreHistogram, threshold: float) -> str:
    """Member and non-member score counts over the same bins, and the decision threshold."""
    edges = np.asarray(histogram.edges)
    with rc_context(_STYLE):
        figure = Figure(figsize=(5.0, 3.0), layout="constrained")
        axes = figure.add_subplot()
        for counts, colour, label in ((histogram.non_member_counts, NON_MEMBER_COLOUR, "non-members"),
                                      (histogram.member_counts, MEMBER_COLOUR, "members")):
            axes.stairs(counts, edges, fill=True, color=colour, alpha=0.28)
            axes.stairs(counts, edges, color=colour, linewidth=1.4, label=label)
        if edges[0] <= threshold <= edges[-1]:
            axes.axvline(threshold, color=_INK, linestyle=":", linewidth=1.2, label=f"decision threshold {threshold:g}")
        axes.set(xlabel="membership score", ylabel="records", xlim=(edges[0], edges[-1]))
        axes.set_ylim(bottom=0)
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=3, borderaxespad=0.2)
        return _data_uri(figure)


def _literal(text: str) -> str:
    """`text` as matplotlib should print it: a `$` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
