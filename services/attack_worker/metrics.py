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


def evaluate(scores: Scores, seed: int) -> Evaluation:
    """The metrics of `scores` on a member/non-member set balanced with `seed`."""
    members, non_members = balance(np.asarray(scores.members, dtype=np.float64),
                                   np.asarray(scores.non_members, dtype=np.float64), seed)
    if not (np.isfinite(members).all() and np.isfinite(non_members).all()):
        raise ValueError("membership scores must be finite numbers")
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


def _tpr_at_fpr(tpr: np.ndarray, false_positives: np.ndarray, num_non_members: int,
                denominator: int) -> float | None:
    """Largest TPR among ROC points with FPR <= 1/denominator; None below the set's resolution."""
    if num_non_members < denominator:
        return None
    within = false_positives * denominator <= num_non_members
    return float(tpr[within].max())


def to_proto(evaluation: Evaluation) -> tuple[results_pb2.Metrics, list[results_pb2.RocPoint]]:
    """The evaluation as result messages; a not-measurable figure stays unset."""
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
    roc = [results_pb2.RocPoint(fpr=f, tpr=t) for f, t in zip(evaluation.roc_fpr, evaluation.roc_tpr, strict=True)]
    return metrics, roc
