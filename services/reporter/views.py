"""What the text and HTML reports show that is derived from a result rather than read off it:
the ROC's operating points, the score histogram's bins and scale, tied most-exposed members and
datasets listed once with every role they play.

Where the result carries every record's score (`record_scores`), the views are computed from the
balanced evaluation set's scores, the records the table's figures are measured on; results of
older workers fall back to the worker's thinned curve and fixed bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from privaudit.v1 import results_pb2

# Up to this many distinct scores, the histogram counts each score on its own (ties drawn as ties).
MAX_DISTINCT_VALUES = 30
HISTOGRAM_BINS = 30
# The binned histogram spans these quantiles of all the scores; records beyond go in the end bins.
RANGE_QUANTILES = (0.01, 0.99)
# All scores <= 0 (a negated loss) spanning more decades than this (5th to 95th percentile of the
# losses) are drawn as losses on a log axis: on a linear one every member falls in the bin next to 0.
LOG_DECADES = 3.0
# Scores of larger magnitude get no histogram: matplotlib's ticks overflow on such axes (no attack
# scores so; a corrupted result can).
MAX_DRAWN = 1e100


def evaluated_scores(result: results_pb2.AttackResult) -> tuple[np.ndarray, np.ndarray] | None:
    """The member and non-member scores of the balanced evaluation set; None when the result
    carries no record scores (an older worker's) or either side is empty."""
    if not result.HasField("record_scores"):
        return None
    scores = result.record_scores
    members = np.asarray(scores.members, dtype=np.float64)[np.asarray(scores.member_evaluated, dtype=bool)]
    non_members = np.asarray(scores.non_members, dtype=np.float64)[np.asarray(scores.non_member_evaluated, dtype=bool)]
    return (members, non_members) if len(members) and len(non_members) else None


@dataclass(frozen=True)
class OperatingPoints:
    """An attack's ROC as the thresholds it can really use: one point per distinct score (records
    tied on a score are one step, never split), by increasing FPR from (0, 0) to (1, 1).
    `from_records` is False when they are the worker's curve (thinned to a few hundred points)."""

    fpr: np.ndarray
    tpr: np.ndarray
    from_records: bool

    def tpr_at(self, fpr: float) -> float:
        """The highest TPR of a point at FPR <= `fpr`: what a threshold achieves there."""
        return float(self.tpr[self.fpr <= fpr].max(initial=0.0))  # (0, 0): no record called a member

    def steps(self) -> tuple[np.ndarray, np.ndarray]:
        """The staircase through the points: from each, right at its TPR to the next one's FPR,
        then up to its TPR; nothing is interpolated between two points."""
        return np.repeat(self.fpr, 2)[1:], np.repeat(self.tpr, 2)[:-1]


def operating_points(result: results_pb2.AttackResult) -> OperatingPoints:
    """From the evaluated records' scores (member iff score >= threshold, one threshold per
    distinct score), else the worker's ROC."""
    scores = evaluated_scores(result)
    if scores is None:
        return OperatingPoints(np.array([p.fpr for p in result.roc]), np.array([p.tpr for p in result.roc]), False)
    members, non_members = np.sort(scores[0]), np.sort(scores[1])
    thresholds = np.unique(np.concatenate([members, non_members]))[::-1]
    true_positives = len(members) - np.searchsorted(members, thresholds, side="left")
    false_positives = len(non_members) - np.searchsorted(non_members, thresholds, side="left")
    return OperatingPoints(np.concatenate([[0.0], false_positives / len(non_members)]),
                           np.concatenate([[0.0], true_positives / len(members)]), True)


@dataclass(frozen=True)
class ScoreHistogram:
    """Member and non-member counts to draw. With `values` (few distinct scores) a count per
    distinct value, ties counted together; otherwise a count per bin between `edges`, where the
    first and last bins also hold the records beyond them (`below`, `above` of them).
    With `loss` the x axis is the loss, -score, on a log scale (members to the left)."""

    member_counts: np.ndarray
    non_member_counts: np.ndarray
    edges: np.ndarray | None = None
    values: np.ndarray | None = None
    loss: bool = False
    below: int = 0
    above: int = 0

    def x(self, score: float) -> float:
        """Where `score` is on the x axis."""
        return -score if self.loss else score

    @property
    def span(self) -> tuple[float, float]:
        drawn = self.values if self.values is not None else self.edges
        return float(drawn[0]), float(drawn[-1])


def score_histogram(result: results_pb2.AttackResult) -> ScoreHistogram | None:
    """The evaluation set's scores on a scale that separates them; the worker's bins for an older
    result without record scores; None when there is neither, or the scores are beyond what an
    axis can span (MAX_DRAWN)."""
    scores = evaluated_scores(result)
    if scores is None:
        proto = result.score_histogram
        if not proto.edges:
            return None
        return ScoreHistogram(np.asarray(proto.member_counts), np.asarray(proto.non_member_counts),
                              edges=np.asarray(proto.edges))
    members, non_members = scores
    pooled = np.concatenate([members, non_members])
    values = np.unique(pooled)
    if len(values) <= MAX_DISTINCT_VALUES:
        if np.abs(values).max() > MAX_DRAWN:
            return None
        return ScoreHistogram(_count_values(members, values), _count_values(non_members, values), values=values)
    loss = _is_spread_loss(pooled)
    drawn = np.log10(np.maximum(-pooled, np.finfo(np.float64).tiny)) if loss else pooled
    low, high = np.quantile(drawn, RANGE_QUANTILES)
    if not high > low:  # most records tied on one score: span them all
        low, high = drawn.min(), drawn.max()
    if max(abs(low), abs(high)) > MAX_DRAWN:
        return None
    steps = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    edges = low * (1 - steps) + high * steps  # finite where high - low would overflow
    clipped = np.clip(drawn, low, high)
    counts = [np.histogram(clipped[side], edges)[0] for side in (slice(0, len(members)), slice(len(members), None))]
    return ScoreHistogram(counts[0], counts[1], edges=10.0 ** edges if loss else edges, loss=loss,
                          below=int((drawn < low).sum()), above=int((drawn > high).sum()))


def _count_values(scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many of `scores` equal each of `values`."""
    ordered = np.sort(scores)
    return np.searchsorted(ordered, values, side="right") - np.searchsorted(ordered, values, side="left")


def _is_spread_loss(pooled: np.ndarray) -> bool:
    if (pooled > 0).any():
        return False
    losses = -pooled[pooled < 0]
    if len(losses) < 2:
        return False
    low, high = np.quantile(losses, (0.05, 0.95))
    return bool(np.log10(high / low) > LOG_DECADES)


@dataclass(frozen=True)
class ExposedGroup:
    """Listed most-exposed members that share one score, in the worker's order (one record when
    not tied). `sharing` is how many members of the member dataset have that score, counted
    from the record scores; without them, the listed ones (at least that many share it)."""

    score: float
    indices: tuple[int, ...]
    sharing: int
    counted: bool

    @property
    def tied(self) -> bool:
        return self.sharing > 1


def exposed_groups(result: results_pb2.AttackResult) -> list[ExposedGroup]:
    """`most_exposed` with tied records grouped, highest score first."""
    all_members = np.asarray(result.record_scores.members, dtype=np.float64) if result.HasField(
        "record_scores") else None
    groups = []
    for score, records in groupby(result.most_exposed, key=lambda r: r.score):
        indices = tuple(r.index for r in records)
        sharing = len(indices) if all_members is None else max(int((all_members == score).sum()), len(indices))
        groups.append(ExposedGroup(score, indices, sharing, all_members is not None))
    return groups


@dataclass(frozen=True)
class DatasetRoles:
    """A dataset (same name, folder, length and digest) and every role it plays, in order."""

    summary: results_pb2.DatasetSummary
    roles: tuple[str, ...]
    is_member_dataset: bool


def dataset_roles(datasets: Sequence[results_pb2.DatasetSummary]) -> list[DatasetRoles]:
    """Each dataset once: the target's members that are also a shadow model's data are one entry
    with roles (target, shadow), a member dataset when any of its entries is."""
    grouped: dict[tuple, list[results_pb2.DatasetSummary]] = {}
    for dataset in datasets:
        key = (dataset.name, dataset.path, dataset.length, dataset.digest)
        grouped.setdefault(key, []).append(dataset)
    return [DatasetRoles(entries[0], tuple(dict.fromkeys(d.role or "unspecified" for d in entries)),
                         any(d.is_member_dataset for d in entries))
            for entries in grouped.values()]
