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
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.transforms import ScaledTranslation

from privaudit.services.reporter.figures import score
from privaudit.services.reporter.views import OperatingPoints, ScoreHistogram

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
_HIST_WIDTH, _HIST_HEIGHT = 5.0, 3.1
# Bars of a histogram of distinct scores: their width in points, and up to how many values carry counts.
_BAR_POINTS, _COUNTED_VALUES = 5.0, 6


# The ROC figure: two square panels (linear, log-log) side by side, the legend under them; sizes in
# inches. Laid out by hand: matplotlib's constrained layout took half the HTML report's time.
_PANEL, _GAP, _LEFT, _RIGHT, _BOTTOM, _TOP, _LEGEND_ROW = 3.5, 0.85, 0.65, 0.2, 0.55, 0.35, 0.21
# FPRs the ROC marks with a guide line, and the points the table reads there (TPR at FPR <= guide).
GUIDE_FPRS = (0.01, 0.001)
# Curves with at most this many operating points get a marker on each; denser ones are steps alone.
MAX_MARKED_POINTS = 120


@dataclass(frozen=True)
class RocCurve:
    """One attack's operating points, its legend entry (name, AUC and interval) and the size of
    the evaluation set they were measured on."""

    label: str
    points: OperatingPoints
    num_members: int
    num_non_members: int

    def readings(self) -> list[tuple[float, float]]:
        """(guide FPR, TPR the table gives there) for each guide the set can resolve."""
        return [(fpr, self.points.tpr_at(fpr)) for fpr in GUIDE_FPRS if self.num_non_members * fpr >= 1]


def log_floor(curves: Sequence[RocCurve]) -> float:
    """The log axes' lower limit: half the finest resolution among the curves (1 / 2n), so a
    rate of 0 has a place to be drawn, at most 0.01 and at least 1e-6."""
    finest = max((max(c.num_members, c.num_non_members) for c in curves), default=1)
    return min(max(0.5 / finest, 1e-6), 0.01)


def roc_png(curves: Sequence[RocCurve]) -> str:
    """The curves as steps through their operating points, on linear and on log-log axes, with
    the chance diagonal, guide lines at 1% and 0.1% FPR and, on each, the point the table reads.
    On log axes rates of 0 are drawn on the lower edges."""
    floor = log_floor(curves)
    legend_rows = len(curves) + 3  # chance, the curves, the guides and the readings: one column
    width = _LEFT + 2 * _PANEL + _GAP + _RIGHT
    height = _BOTTOM + _PANEL + _TOP + legend_rows * _LEGEND_ROW + 0.1
    with rc_context(_STYLE):
        figure = Figure(figsize=(width, height))
        bottom = (height - _TOP - _PANEL) / height
        panels = [figure.add_axes(((_LEFT + i * (_PANEL + _GAP)) / width, bottom, _PANEL / width, _PANEL / height))
                  for i in range(2)]
        for axes, low, guides in zip(panels, (0.0, floor), (False, True), strict=True):
            _roc_panel(axes, curves, low, guides)
        panels[0].set(title="linear", ylabel="true-positive rate (members found)")
        panels[1].set(xscale="log", yscale="log", title="log-log (low FPR magnified)")
        panels[1].minorticks_off()  # a log axis's minor ticks took a quarter of the report's time
        panels[1].set_xlim(floor, 1)
        panels[1].set_ylim(floor, 1)
        handles, labels = panels[1].get_legend_handles_labels()
        figure.legend(handles, labels, loc="upper left", bbox_to_anchor=(_LEFT / width, bottom - _BOTTOM / height),
                      borderaxespad=0, handlelength=2.6)
        return _data_uri(figure)


def _roc_panel(axes: Axes, curves: Sequence[RocCurve], low: float, guides: bool) -> None:
    """The chance diagonal and the curves from `low`; with `guides`, the low-FPR guides and readings."""
    axes.plot([low, 1], [low, 1], linestyle="--", color=_MUTED, linewidth=1, label="chance (TPR = FPR)")
    if guides:
        for fpr in GUIDE_FPRS:
            axes.axvline(fpr, color=_INK, linestyle=":", linewidth=0.9, alpha=0.7)
    for i, curve in enumerate(curves):
        colour = ATTACK_COLOURS[i % len(ATTACK_COLOURS)]
        x, y = curve.points.steps()
        marked = len(curve.points.fpr) <= MAX_MARKED_POINTS
        axes.plot(np.maximum(x, low), np.maximum(y, low), linewidth=1.6, color=colour, label=_literal(curve.label),
                  marker="o" if marked else None, markersize=3, markevery=(0, 2) if marked else None)
        for fpr, tpr in curve.readings() if guides else ():
            axes.plot([fpr], [max(tpr, low)], marker="D", markersize=5.5, color=colour, markerfacecolor="white",
                      markeredgewidth=1.4, zorder=5)
    if guides:
        axes.plot([], [], linestyle=":", color=_INK, label="FPR 1% and 0.1%")
        axes.plot([], [], linestyle="none", marker="D", color=_INK, markerfacecolor="white",
                  label="the TPR the table gives at that FPR")
    axes.set(xlim=(low, 1), ylim=(low, 1), aspect="equal", xlabel="false-positive rate (non-members called members)")


def histogram_png(histogram: ScoreHistogram, threshold: float) -> str:
    """Member and non-member counts, per bin or per distinct score, and the decision threshold."""
    with rc_context(_STYLE):
        figure = Figure(figsize=(_HIST_WIDTH, _HIST_HEIGHT))
        axes = figure.add_axes((0.7 / _HIST_WIDTH, 0.55 / _HIST_HEIGHT, (_HIST_WIDTH - 0.85) / _HIST_WIDTH,
                                (_HIST_HEIGHT - 0.95) / _HIST_HEIGHT))
        sides = ((histogram.non_member_counts, NON_MEMBER_COLOUR, "non-members", -1),
                 (histogram.member_counts, MEMBER_COLOUR, "members", 1))
        if histogram.values is not None:
            _value_bars(figure, axes, histogram.values, sides)
        else:
            for counts, colour, label, _ in sides:
                axes.stairs(counts, histogram.edges, fill=True, color=colour, alpha=0.28)
                axes.stairs(counts, histogram.edges, color=colour, linewidth=1.4, label=label)
            axes.set_xlim(*histogram.span)
        if histogram.loss:
            axes.set_xscale("log")
            axes.minorticks_off()
        x = histogram.x(threshold)
        low, high = axes.get_xlim()
        shown = low <= x <= high
        axes.axvline(x if shown else low, color=_INK, linestyle=":", linewidth=1.2, visible=shown,
                     label=f"threshold {score(threshold)}" + ("" if shown else " (off the axis)"))
        axes.set(xlabel="loss = \u2212score (log scale)" if histogram.loss else "membership score", ylabel="records")
        axes.set_ylim(bottom=0)
        _legend_within(figure, bbox_to_anchor=(0.7 / _HIST_WIDTH, 1 - 0.05 / _HIST_HEIGHT), borderaxespad=0,
                       columnspacing=1.2, handlelength=1.8)
        return _data_uri(figure)


def _legend_within(figure: Figure, **options: object) -> Legend:
    """The figure's legend on one row, or on as many as it needs to end inside the figure's width
    (labels such as a threshold's value have any length), anchored at its upper left."""
    entries = len(figure.axes[0].get_legend_handles_labels()[0])
    renderer = FigureCanvasAgg(figure).get_renderer()
    for columns in range(entries, 1, -1):
        legend = figure.legend(loc="upper left", ncols=columns, **options)
        if legend.get_window_extent(renderer).x1 <= figure.bbox.x1:
            return legend
        legend.remove()
    return figure.legend(loc="upper left", ncols=1, **options)


def _value_bars(figure: Figure, axes: Axes, values: np.ndarray, sides: Sequence[tuple]) -> None:
    """One bar per distinct score and side, the two sides' bars next to each other: records tied
    on a score are one bar. With a handful of values each bar carries its count."""
    for counts, colour, label, side in sides:
        shift = axes.transData + ScaledTranslation(side * _BAR_POINTS / 144, 0, figure.dpi_scale_trans)
        axes.vlines(values, 0, counts, colors=colour, linewidth=_BAR_POINTS, transform=shift, label=label, alpha=0.8)
        if len(values) <= _COUNTED_VALUES:
            for value, count in zip(values, counts, strict=True):
                axes.annotate(str(count), (value, count), xytext=(side * _BAR_POINTS, 2), textcoords="offset points",
                              ha="left" if side > 0 else "right", va="bottom", fontsize=8, color=colour)
    low, high = float(values[0]), float(values[-1])
    pad = 0.12 * (high - low) or 0.5  # room for the counts
    axes.set_xlim(low - pad, high + pad)
    axes.set_ylim(0, 1.15 * max(max(counts) for counts, *_ in sides))  # the shifted bars do not autoscale


def _literal(text: str) -> str:
    """`text` as matplotlib should print it: a `$` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
