"""The HTML report's pictures agree with its tables: the ROC's plotted steps give the table's TPR
at 1% and 0.1% FPR (tied scores included), histograms separate what the scores separate and show
ties as ties, and nothing is cut off. The data checked is what matplotlib was given to draw."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve
from test_reporter_fixtures import make_report, succeeded

from privaudit.services.attack_worker import metrics
from privaudit.services.attack_worker.attacks.base import Scores
from privaudit.services.reporter import plots, render_html
from privaudit.services.reporter.views import operating_points, score_histogram
from privaudit.v1 import results_pb2


def _result(members: np.ndarray, non_members: np.ndarray, name: str = "LOSS", index: int = 0,
            threshold: float = 0.5) -> results_pb2.AttackResult:
    """A succeeded attack whose measurements the worker's own metrics computed from these scores."""
    result = succeeded(index, name, separation=None)
    for field in ("metrics", "roc", "most_exposed", "score_histogram"):
        result.ClearField(field)
    result.MergeFrom(metrics.to_proto(metrics.evaluate(Scores(members, non_members, threshold=threshold), seed=3)))
    return result


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure the report draws, kept as matplotlib had it when it was saved."""
    figures: list[Figure] = []
    save = plots._data_uri

    def keep(figure: Figure) -> str:
        figures.append(figure)
        return save(figure)

    monkeypatch.setattr(plots, "_data_uri", keep)
    return figures


def _path_tpr_at(xy: np.ndarray, fpr: float) -> float:
    """A drawn ROC path read at `fpr` as a staircase is read: the highest TPR it reaches at or before it."""
    return float(xy[xy[:, 0] <= fpr + 1e-12, 1].max())


def _two_levels(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASELINE's scores: 1 for a correctly labelled record (every member, 59% of non-members), else 0."""
    return np.ones(n), (rng.random(n) < 0.59).astype(np.float64)


def _rounded(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Heavy ties: normal scores rounded to one decimal."""
    return np.round(rng.normal(0.4, 1, n), 1), np.round(rng.normal(0, 1, n), 1)


def _distinct(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(0.8, 1, n), rng.normal(0, 1, n)


@pytest.mark.parametrize("scores", [_two_levels, _rounded, _distinct])
@pytest.mark.parametrize("n", [400, 2500])
def test_the_plotted_roc_reads_the_tables_tpr_at_each_guide(drawn: list[Figure], scores, n: int) -> None:
    rng = np.random.default_rng(n)
    result = _result(*scores(rng, n), name="BASELINE")
    render_html.render(make_report(result))
    roc = drawn[0]
    (label,) = {line.get_label() for line in roc.axes[1].lines if line.get_label().startswith("BASELINE")}
    (path,) = [line.get_xydata() for line in roc.axes[1].lines if line.get_label() == label]
    floor = roc.axes[1].get_ylim()[0]
    table = {0.01: result.metrics.tpr_at_1pct_fpr, 0.001: result.metrics.tpr_at_0_1pct_fpr}
    for fpr in plots.GUIDE_FPRS if n >= 1000 else (0.01,):
        assert _path_tpr_at(path, fpr) == pytest.approx(max(table[fpr], floor), abs=1e-12), fpr
    # Steps only: every segment is horizontal or vertical, nothing interpolated between two points.
    moves = np.diff(path, axis=0)
    assert np.all((moves[:, 0] == 0) | (moves[:, 1] == 0))
    assert f"AUC {result.metrics.auc:.4f} [" in label


def test_baselines_two_score_levels_give_tpr_0_at_1pct_fpr_where_a_straight_line_gave_more(
        drawn: list[Figure]) -> None:
    """The issue's case: three operating points; a line from (0, 0) to (0.59, 1) reads 0.017 at 1%."""
    result = _result(*_two_levels(np.random.default_rng(0), 400), name="BASELINE")
    assert result.metrics.tpr_at_1pct_fpr == 0
    points = operating_points(result)
    assert len(points.fpr) == 3
    assert points.tpr_at(0.01) == 0
    render_html.render(make_report(result))
    diamonds = [line.get_xydata()[0] for line in drawn[0].axes[1].lines if line.get_marker() == "D"
                and len(line.get_xydata())]
    assert [tuple(d) for d in diamonds] == [(0.01, drawn[0].axes[1].get_ylim()[0])]  # TPR 0, on the lower edge


def test_operating_points_are_scikit_learns_roc_one_point_per_distinct_score() -> None:
    rng = np.random.default_rng(7)
    members, non_members = np.round(rng.normal(0.5, 1, 700), 1), np.round(rng.normal(0, 1, 700), 1)
    points = operating_points(_result(members, non_members))
    fpr, tpr, _ = roc_curve(np.r_[np.ones(700), np.zeros(700)], np.r_[members, non_members],
                            drop_intermediate=False)
    assert points.from_records
    np.testing.assert_allclose(points.fpr, fpr)
    np.testing.assert_allclose(points.tpr, tpr)


def test_an_older_result_without_record_scores_draws_the_workers_curve() -> None:
    result = succeeded(0, roc_points=5, separation=None)
    points = operating_points(result)
    assert not points.from_records
    assert points.fpr.tolist() == [p.fpr for p in result.roc]


def test_a_spread_loss_is_drawn_on_a_log_loss_axis_that_separates_members(drawn: list[Figure]) -> None:
    """LOSS's scores are negated losses: members near 1e-4..1e-1, non-members up to 20. On 30 equal
    bins of the score every member fell in the bin next to 0."""
    rng = np.random.default_rng(1)
    members, non_members = -10 ** rng.uniform(-5, -1, 400), -10 ** rng.uniform(-3, 1.3, 400)
    result = _result(members, non_members, threshold=-0.05)
    histogram = score_histogram(result)
    assert histogram.loss and histogram.values is None
    assert sum(count > 0 for count in histogram.member_counts) >= 10
    assert histogram.member_counts.sum() == 400 and histogram.non_member_counts.sum() == 400
    render_html.render(make_report(result))
    axes = drawn[1].axes[0]
    assert axes.get_xscale() == "log"
    (threshold,) = [line for line in axes.lines if line.get_label().startswith("threshold")]
    assert threshold.get_xdata()[0] == pytest.approx(0.05)  # loss = -score


def test_few_distinct_scores_get_one_bar_each_with_every_tied_record_counted() -> None:
    members, non_members = _two_levels(np.random.default_rng(2), 400)
    histogram = score_histogram(_result(members, non_members))
    assert histogram.values.tolist() == [0.0, 1.0]
    assert histogram.member_counts.tolist() == [0, 400]
    assert histogram.non_member_counts.tolist() == [400 - non_members.sum(), non_members.sum()]


def test_outliers_are_counted_in_the_end_bins_of_a_range_that_shows_the_bulk() -> None:
    rng = np.random.default_rng(4)
    members = np.r_[rng.normal(1, 1, 395), np.full(5, 500.0)]
    non_members = np.r_[rng.normal(0, 1, 395), np.full(5, -500.0)]
    histogram = score_histogram(_result(members, non_members))
    low, high = histogram.span
    assert low > -10 and high < 10
    pooled = np.r_[members, non_members]
    assert histogram.below == (pooled < low).sum() >= 5 and histogram.above == (pooled > high).sum() >= 5
    assert histogram.member_counts.sum() == 400 and histogram.non_member_counts.sum() == 400


@pytest.mark.parametrize("threshold", [0.5, -0.000123456789, 123456.789])
def test_no_legend_is_cut_off(drawn: list[Figure], threshold: float) -> None:
    results = [_result(*_distinct(np.random.default_rng(i), 300), name=f"ATTACK-WITH-A-LONG-NAME-{i}", index=i,
                       threshold=threshold) for i in range(5)]
    render_html.render(make_report(*results))
    for figure in drawn:
        renderer = FigureCanvasAgg(figure).get_renderer()
        box = figure.bbox
        for legend in figure.legends:
            extent = legend.get_window_extent(renderer)
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1


@pytest.mark.parametrize("members, non_members", [
    ([1e308, -1e308, 0.0] * 4, [-1e308, 1e308, 5.0] * 4),  # few values, an axis matplotlib cannot tick
    (np.linspace(-1.7, 1.7, 50) * 1e308, np.linspace(-1.6, 1.6, 50) * 1e308),
    ([5e-324, 0.0] * 20, [0.0] * 40),  # subnormal steps
    ([-1e-320] * 3 + [-1e300] * 40, [-5e-324] * 43),  # a "loss" over 600 decades
], ids=["huge-values", "huge-bins", "subnormal", "huge-loss"])
def test_any_finite_scores_a_result_may_carry_render(members, non_members) -> None:
    """The reporter accepts any finite scores: the page renders, without a histogram it cannot draw."""
    result = succeeded(0, exposed=0, separation=None)
    result.metrics.num_members, result.metrics.num_non_members = len(members), len(non_members)
    scores = result.record_scores
    scores.members[:], scores.non_members[:] = members, non_members
    scores.member_evaluated[:], scores.non_member_evaluated[:] = [True] * len(members), [True] * len(non_members)
    html = render_html.render(make_report(result)).decode()
    assert html.count("data:image/png") in (1, 2)


def test_a_result_without_roc_points_renders() -> None:
    result = succeeded(0, separation=None)
    del result.roc[:]
    assert operating_points(result).tpr_at(0.01) == 0.0
    assert render_html.render(make_report(result)).startswith(b"<!DOCTYPE html>")
