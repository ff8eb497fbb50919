"""Membership-inference metrics from an attack's scores (numpy, scipy and scikit-learn only).

Members are the positive class. Everything is measured on a balanced evaluation
set: the larger of the member / non-member score sets is subsampled, with the
job's seed, to the size of the smaller, so that guessing "member" for everyone
scores accuracy 0.5 whatever the datasets' sizes.

Accuracy, precision and recall share one decision rule: member iff
`score >= threshold`. Precision with no record called a member is 0.0 (no
correct member calls were made), as scikit-learn's `zero_division=0`. The AUC is
the midrank one DeLong's interval is built around (scikit-learn's, to rounding).

The ROC curve has one point per distinct score, so records with tied scores
form one step: a low-FPR figure is read only at real points of the curve,
never interpolated into the middle of a tie (which would flatter it) nor
dropped because the tie straddles the FPR bound (the point below it counts).
A TPR at an FPR bound below 1/#non-members cannot be measured and is None.

Every figure that risk is read from carries a 95% interval and a chance p-value
(`intervals`): the AUC, and each TPR at a fixed FPR when it is measurable. When the
records' class labels are known, the AUC and TPR at 1% FPR are also given per class.

Views of the scores go with the metrics: the members the attack exposes most (ranked
over the whole member set, whose records `Scores.members` holds in dataset order, or over
those it scored when it scored only the evaluation set's), a
histogram of the balanced set's member and non-member scores, and every record's score
with whether the balanced set kept it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from privaudit.services.attack_worker.attacks.base import Scores, balanced_indices
from privaudit.services.attack_worker.intervals import (
    Interval,
    auc_p_value,
    auc_with_interval,
    tpr_interval,
    tpr_p_value,
    true_positives_within,
)
from privaudit.v1 import results_pb2

# The ROC curve sent with a result is thinned to at most this many points.
MAX_ROC_POINTS = 300
# Low-FPR bounds, as 1/denominator so the "measurable" test is exact integer arithmetic.
FPR_1PCT = 100
FPR_0_1PCT = 1000
# How many of the highest-scoring members a result names, and the histogram's bins.
MOST_EXPOSED = 20
HISTOGRAM_BINS = 30


@dataclass(frozen=True)
class Histogram:
    """Member and non-member counts over shared bins: `edges` has one more entry than each count list."""

    edges: tuple[float, ...]
    member_counts: tuple[int, ...]
    non_member_counts: tuple[int, ...]


@dataclass(frozen=True)
class LowFprFigure:
    """The TPR at FPR <= 1/denominator, its 95% interval and its chance p-value."""

    tpr: float
    interval: Interval
    p_value: float


@dataclass(frozen=True)
class ClassEvaluation:
    """The figures of the balanced set's records of one class label."""

    label: int
    num_members: int
    num_non_members: int
    auc: float
    auc_interval: Interval
    tpr_at_1pct_fpr: float | None  # None: fewer than 100 non-members of this label


@dataclass(frozen=True, eq=False)
class RecordScores:
    """Every member's and non-member's score and label in dataset order (labels None when
    unknown), and whether the balanced evaluation set kept it."""

    members: np.ndarray
    non_members: np.ndarray
    member_labels: np.ndarray | None
    non_member_labels: np.ndarray | None
    member_evaluated: np.ndarray  # bool, one per member
    non_member_evaluated: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one attack on its balanced evaluation set."""

    num_members: int
    num_non_members: int
    accuracy: float
    precision: float
    recall: float
    auc: float
    auc_interval: Interval
    auc_p_value: float
    advantage: float  # max over the ROC of TPR - FPR
    at_1pct_fpr: LowFprFigure | None  # None: fewer than 100 non-members
    at_0_1pct_fpr: LowFprFigure | None  # None: fewer than 1000 non-members
    threshold: float
    threshold_source: str
    roc_fpr: tuple[float, ...]  # thinned ROC, increasing FPR, from (0, 0) to (1, 1)
    roc_tpr: tuple[float, ...]
    most_exposed: tuple[tuple[int, float], ...]  # (index in the member dataset, score), highest score first
    histogram: Histogram
    per_class: tuple[ClassEvaluation, ...]  # by increasing label; empty when labels are unknown
    record_scores: RecordScores
    warnings: tuple[str, ...]

    @property
    def tpr_at_1pct_fpr(self) -> float | None:
        return self.at_1pct_fpr.tpr if self.at_1pct_fpr else None

    @property
    def tpr_at_0_1pct_fpr(self) -> float | None:
        return self.at_0_1pct_fpr.tpr if self.at_0_1pct_fpr else None


def evaluate(scores: Scores, seed: int) -> Evaluation:
    """The metrics of `scores` on a member/non-member set balanced with `seed`."""
    all_members = np.asarray(scores.members, dtype=np.float64)
    all_non_members = np.asarray(scores.non_members, dtype=np.float64)
    member_labels = _labels(scores.member_labels, len(all_members))
    non_member_labels = _labels(scores.non_member_labels, len(all_non_members))
    member_kept, non_member_kept = balanced_indices(len(all_members), len(all_non_members), seed)
    members, non_members = all_members[member_kept], all_non_members[non_member_kept]
    if not (np.isfinite(members).all() and np.isfinite(non_members).all()
            and not np.isinf(all_members).any() and not np.isinf(all_non_members).any()):
        raise ValueError("membership scores must be finite numbers (NaN only for a record left out of the "
                         "balanced evaluation set)")
    y_true = np.concatenate([np.ones(len(members), dtype=np.int8), np.zeros(len(non_members), dtype=np.int8)])
    y_score = np.concatenate([members, non_members])

    called = y_score >= scores.threshold
    true_positives = int(np.sum(called & (y_true == 1)))
    fpr, tpr, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    shown = thin(len(fpr))
    auc, auc_interval = auc_with_interval(members, non_members)
    sorted_members, descending_non_members = np.sort(members), np.sort(non_members)[::-1]
    classes = () if member_labels is None or non_member_labels is None else per_class(
        members, non_members, member_labels[member_kept], non_member_labels[non_member_kept])
    return Evaluation(
        num_members=len(members),
        num_non_members=len(non_members),
        accuracy=float(np.mean(called == (y_true == 1))),
        precision=true_positives / int(called.sum()) if called.any() else 0.0,
        recall=true_positives / len(members),
        auc=auc,
        auc_interval=auc_interval,
        auc_p_value=auc_p_value(members, non_members),
        advantage=float(np.max(tpr - fpr)),
        at_1pct_fpr=low_fpr_figure(sorted_members, descending_non_members, FPR_1PCT, seed),
        at_0_1pct_fpr=low_fpr_figure(sorted_members, descending_non_members, FPR_0_1PCT, seed),
        threshold=float(scores.threshold),
        threshold_source=scores.threshold_source,
        roc_fpr=tuple(fpr[shown].tolist()),
        roc_tpr=tuple(tpr[shown].tolist()),
        most_exposed=most_exposed(all_members),
        histogram=histogram(members, non_members),
        per_class=classes,
        record_scores=RecordScores(
            members=all_members, non_members=all_non_members,
            member_labels=member_labels, non_member_labels=non_member_labels,
            member_evaluated=_flags(member_kept, len(all_members)),
            non_member_evaluated=_flags(non_member_kept, len(all_non_members))),
        warnings=tuple(scores.warnings),
    )


def low_fpr_figure(sorted_members: np.ndarray, descending_non_members: np.ndarray, denominator: int,
                   seed: int) -> LowFprFigure | None:
    """The TPR at FPR <= 1/denominator with its interval and p-value; None below the set's
    resolution (fewer than `denominator` non-members)."""
    budget = _false_positive_budget(len(descending_non_members), denominator)
    if budget is None:
        return None
    true_positives = true_positives_within(sorted_members, descending_non_members, budget)
    return LowFprFigure(
        tpr=true_positives / len(sorted_members),
        interval=tpr_interval(sorted_members, descending_non_members, 1 / denominator, seed),
        p_value=tpr_p_value(true_positives, len(sorted_members), len(descending_non_members), budget),
    )


def per_class(members: np.ndarray, non_members: np.ndarray, member_labels: np.ndarray,
              non_member_labels: np.ndarray) -> tuple[ClassEvaluation, ...]:
    """AUC (with its interval) and TPR at 1% FPR of each label's records, by increasing label;
    a label without a member or without a non-member is left out."""
    member_groups, non_member_groups = _by_label(members, member_labels), _by_label(non_members, non_member_labels)
    figures = []
    for label in sorted(member_groups.keys() & non_member_groups.keys()):
        class_members, class_non_members = member_groups[label], non_member_groups[label]
        auc, interval = auc_with_interval(class_members, class_non_members)
        budget = _false_positive_budget(len(class_non_members), FPR_1PCT)
        tpr = None if budget is None else true_positives_within(
            np.sort(class_members), np.sort(class_non_members)[::-1], budget) / len(class_members)
        figures.append(ClassEvaluation(label=label, num_members=len(class_members),
                                       num_non_members=len(class_non_members), auc=auc, auc_interval=interval,
                                       tpr_at_1pct_fpr=tpr))
    return tuple(figures)


def thin(n: int, limit: int = MAX_ROC_POINTS) -> np.ndarray:
    """Increasing indices into n ROC points, at most `limit`, always the first and last.
    Half are evenly spaced, half geometrically (dense near index 0, the low-FPR end that
    log-log plots magnify)."""
    if n <= limit:
        return np.arange(n)
    even = np.linspace(0, n - 1, limit // 2)
    low_end = np.geomspace(1, n - 1, limit - limit // 2)
    return np.unique(np.rint(np.concatenate([even, low_end])).astype(np.int64))


def most_exposed(member_scores: np.ndarray, count: int = MOST_EXPOSED) -> tuple[tuple[int, float], ...]:
    """The `count` highest-scoring members as (index, score), highest first, ties by lower index;
    members the attack did not score (NaN) are not ranked."""
    scored = np.flatnonzero(~np.isnan(member_scores))
    order = scored[np.argsort(-member_scores[scored], kind="stable")][:count]
    return tuple((int(i), float(member_scores[i])) for i in order)


def histogram(members: np.ndarray, non_members: np.ndarray, bins: int = HISTOGRAM_BINS) -> Histogram:
    """Both score sets counted over `bins` equal bins spanning all their scores (numpy's rules:
    the last bin includes its right edge; a single distinct score gets a bin of width 1 around it)."""
    edges = np.histogram_bin_edges(np.concatenate([members, non_members]), bins=bins)
    return Histogram(
        edges=tuple(edges.tolist()),
        member_counts=tuple(np.histogram(members, edges)[0].tolist()),
        non_member_counts=tuple(np.histogram(non_members, edges)[0].tolist()),
    )


def _false_positive_budget(num_non_members: int, denominator: int) -> int | None:
    """The most false positives within FPR <= 1/denominator; None when not even one is
    (the figure is below the set's resolution)."""
    return num_non_members // denominator if num_non_members >= denominator else None


def _labels(labels: np.ndarray | None, count: int) -> np.ndarray | None:
    """Class labels as int64, checked to be one per record."""
    if labels is None:
        return None
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != count:
        raise ValueError(f"{len(labels)} class labels for {count} scores")
    return labels


def _by_label(values: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """`values` split by label, each group in its records' order."""
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    return dict(zip(present.tolist(), np.split(values[order], starts[1:]), strict=True))


def _flags(indices: np.ndarray, count: int) -> np.ndarray:
    flags = np.zeros(count, dtype=bool)
    flags[indices] = True
    return flags


def to_proto(evaluation: Evaluation) -> results_pb2.AttackResult:
    """The evaluation as the measurement fields of a result (metrics, roc, most_exposed,
    score_histogram, warnings, per_class, record_scores), to merge into it; a not-measurable
    figure stays unset, with its interval and p-value."""
    metrics = results_pb2.Metrics(
        num_members=evaluation.num_members,
        num_non_members=evaluation.num_non_members,
        accuracy=evaluation.accuracy,
        precision=evaluation.precision,
        recall=evaluation.recall,
        auc=evaluation.auc,
        auc_interval=_interval(evaluation.auc_interval),
        auc_p_value=evaluation.auc_p_value,
        advantage=evaluation.advantage,
        decision_threshold=evaluation.threshold,
        threshold_source=evaluation.threshold_source,
        **_low_fpr_fields("tpr_at_1pct_fpr", evaluation.at_1pct_fpr),
        **_low_fpr_fields("tpr_at_0_1pct_fpr", evaluation.at_0_1pct_fpr),
    )
    histogram = evaluation.histogram
    records = evaluation.record_scores
    return results_pb2.AttackResult(
        metrics=metrics,
        roc=[results_pb2.RocPoint(fpr=f, tpr=t) for f, t in zip(evaluation.roc_fpr, evaluation.roc_tpr, strict=True)],
        most_exposed=[results_pb2.ExposedRecord(index=i, score=s) for i, s in evaluation.most_exposed],
        score_histogram=results_pb2.ScoreHistogram(edges=histogram.edges, member_counts=histogram.member_counts,
                                                   non_member_counts=histogram.non_member_counts),
        warnings=evaluation.warnings,
        per_class=[
            results_pb2.ClassMetrics(label=c.label, num_members=c.num_members, num_non_members=c.num_non_members,
                                     auc=c.auc, auc_interval=_interval(c.auc_interval),
                                     tpr_at_1pct_fpr=c.tpr_at_1pct_fpr)
            for c in evaluation.per_class
        ],
        record_scores=results_pb2.RecordScores(
            members=records.members.tolist(), non_members=records.non_members.tolist(),
            member_labels=[] if records.member_labels is None else records.member_labels.tolist(),
            non_member_labels=[] if records.non_member_labels is None else records.non_member_labels.tolist(),
            member_evaluated=records.member_evaluated.tolist(),
            non_member_evaluated=records.non_member_evaluated.tolist()),
    )


def _low_fpr_fields(name: str, figure: LowFprFigure | None) -> dict[str, object]:
    """The Metrics fields `name`, `name_interval` and `name_p_value` of a figure; none when it
    is not measurable."""
    if figure is None:
        return {}
    return {name: figure.tpr, f"{name}_interval": _interval(figure.interval), f"{name}_p_value": figure.p_value}


def _interval(interval: Interval) -> results_pb2.Interval:
    return results_pb2.Interval(lower=interval.lower, upper=interval.upper)
