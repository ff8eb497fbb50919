"""Membership-inference metrics from an attack's scores (numpy and scikit-learn only).

Members are the positive class. Everything is measured on a balanced evaluation
set: the larger of the member / non-member score sets is subsampled, with the
job's seed, to the size of the smaller, so that guessing "member" for everyone
scores accuracy 0.5 whatever the datasets' sizes.

Accuracy, precision and recall share one decision rule: member iff
`score >= threshold`. Precision with no record called a member is 0.0 (no
correct member calls were made), as scikit-learn's `zero_division=0`.

The ROC curve has one point per distinct score, so records with tied scores
form one step: a low-FPR figure is read only at real points of the curve,
never interpolated into the middle of a tie (which would flatter it) nor
dropped because the tie straddles the FPR bound (the point below it counts).
A TPR at an FPR bound below 1/#non-members cannot be measured and is None.

Two views of the scores go with the metrics: the members the attack exposes most
(ranked over the whole member set, whose records `Scores.members` holds in dataset
order) and a histogram of the balanced set's member and non-member scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from privaudit.v1 import results_pb2
from services.attack_worker.attacks.base import Scores

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
class Evaluation:
    """The metrics of one attack on its balanced evaluation set."""

    num_members: int
    num_non_members: int
    accuracy: float
    precision: float
    recall: float
    auc: float
    advantage: float  # max over the ROC of TPR - FPR
    tpr_at_1pct_fpr: float | None  # None: fewer than 100 non-members
    tpr_at_0_1pct_fpr: float | None  # None: fewer than 1000 non-members
    threshold: float
    roc_fpr: tuple[float, ...]  # thinned ROC, increasing FPR, from (0, 0) to (1, 1)
    roc_tpr: tuple[float, ...]
    most_exposed: tuple[tuple[int, float], ...]  # (index in the member dataset, score), highest score first
    histogram: Histogram


def evaluate(scores: Scores, seed: int) -> Evaluation:
    """The metrics of `scores` on a member/non-member set balanced with `seed`."""
    all_members = np.asarray(scores.members, dtype=np.float64)
    all_non_members = np.asarray(scores.non_members, dtype=np.float64)
    if not (np.isfinite(all_members).all() and np.isfinite(all_non_members).all()):
        raise ValueError("membership scores must be finite numbers")
    members, non_members = balance(all_members, all_non_members, seed)
    y_true = np.concatenate([np.ones(len(members), dtype=np.int8), np.zeros(len(non_members), dtype=np.int8)])
    y_score = np.concatenate([members, non_members])

    called = y_score >= scores.threshold
    true_positives = int(np.sum(called & (y_true == 1)))
    fpr, tpr, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    false_positives = np.rint(fpr * len(non_members)).astype(np.int64)
    shown = thin(len(fpr))
    return Evaluation(
        num_members=len(members),
        num_non_members=len(non_members),
        accuracy=float(np.mean(called == (y_true == 1))),
        precision=true_positives / int(called.sum()) if called.any() else 0.0,
        recall=true_positives / len(members),
        auc=float(roc_auc_score(y_true, y_score)),
        advantage=float(np.max(tpr - fpr)),
        tpr_at_1pct_fpr=_tpr_at_fpr(tpr, false_positives, len(non_members), FPR_1PCT),
        tpr_at_0_1pct_fpr=_tpr_at_fpr(tpr, false_positives, len(non_members), FPR_0_1PCT),
        threshold=float(scores.threshold),
        roc_fpr=tuple(fpr[shown].tolist()),
        roc_tpr=tuple(tpr[shown].tolist()),
        most_exposed=most_exposed(all_members),
        histogram=histogram(members, non_members),
    )


def balance(members: np.ndarray, non_members: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets cut to the smaller one's size; the larger is subsampled without
    replacement by `numpy.random.default_rng(seed)`, keeping its records' order."""
    if len(members) == 0 or len(non_members) == 0:
        raise ValueError("membership metrics need at least one member and one non-member score")
    size = min(len(members), len(non_members))
    rng = np.random.default_rng(seed)

    def cut(values: np.ndarray) -> np.ndarray:
        return values if len(values) == size else values[np.sort(rng.choice(len(values), size, replace=False))]

    return cut(members), cut(non_members)


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
    """The `count` highest-scoring members as (index, score), highest first, ties by lower index."""
    order = np.argsort(-member_scores, kind="stable")[:count]
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


def _tpr_at_fpr(tpr: np.ndarray, false_positives: np.ndarray, num_non_members: int,
                denominator: int) -> float | None:
    """Largest TPR among ROC points with FPR <= 1/denominator; None below the set's resolution."""
    if num_non_members < denominator:
        return None
    within = false_positives * denominator <= num_non_members
    return float(tpr[within].max())


def to_proto(evaluation: Evaluation) -> results_pb2.AttackResult:
    """The evaluation as the measurement fields of a result (metrics, roc, most_exposed,
    score_histogram), to merge into it; a not-measurable figure stays unset."""
    metrics = results_pb2.Metrics(
        num_members=evaluation.num_members,
        num_non_members=evaluation.num_non_members,
        accuracy=evaluation.accuracy,
        precision=evaluation.precision,
        recall=evaluation.recall,
        auc=evaluation.auc,
        advantage=evaluation.advantage,
        tpr_at_1pct_fpr=evaluation.tpr_at_1pct_fpr,
        tpr_at_0_1pct_fpr=evaluation.tpr_at_0_1pct_fpr,
        decision_threshold=evaluation.threshold,
    )
    histogram = evaluation.histogram
    return results_pb2.AttackResult(
        metrics=metrics,
        roc=[results_pb2.RocPoint(fpr=f, tpr=t) for f, t in zip(evaluation.roc_fpr, evaluation.roc_tpr, strict=True)],
        most_exposed=[results_pb2.ExposedRecord(index=i, score=s) for i, s in evaluation.most_exposed],
        score_histogram=results_pb2.ScoreHistogram(edges=histogram.edges, member_counts=histogram.member_counts,
                                                   non_member_counts=histogram.non_member_counts),
    )
