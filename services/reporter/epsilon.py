"""An empirical epsilon estimate from an attack's record scores, its operating point chosen on
other records than those its rates are measured on.

If training is (epsilon, delta)-differentially private and a record's membership is decided at
random, independently of the record, every membership test on the trained model obeys, at every
threshold (Kairouz et al., ICML 2015):

    TPR <= e^epsilon * FPR + delta    and    1 - FPR <= e^epsilon * (1 - TPR) + delta

so a test that reaches (FPR, TPR) rules out every epsilon below ln((TPR - delta) / FPR), or below
ln((1 - FPR - delta) / (1 - TPR)) by the second inequality: the auditing argument of Jagielski et
al. (NeurIPS 2020). Here the rates come from one training run, each evaluated record counted as an
independent trial, in three steps:

1. `split`: the evaluated members, and separately the evaluated non-members, are shuffled with a
   fixed seed (SPLIT_SEED, so reports are deterministic) and cut in two: a choosing half (the
   smaller when a count is odd) and a bounding half.
2. `choose`: on the choosing half, every candidate threshold (member when score >= threshold) is
   tried with each inequality; the pair whose conservative estimate (step 3 on these records) is
   largest is the operating point. When none rules out anything, the estimate is 0.
3. `bound`: on the bounding half, at that one operating point, TPR is replaced by its one-sided
   97.5% Clopper-Pearson lower limit and FPR by its 97.5% upper limit, so that both hold together
   with probability >= CONFIDENCE (95%), and the chosen inequality gives the estimate (0 when it
   rules out nothing).

The bounding half plays no part in the choice, so the confidence holds for the reported figure,
not merely for each point of a curve. It is a lower bound on the training's epsilon only under
ASSUMPTION; an audit's member and non-member sets are rarely made that way, so reports call it an
empirical epsilon estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv  # the beta quantile, without scipy.stats' import time

from privaudit.services.reporter.epsilon_terms import CONFIDENCE, Inequality

# Any fixed value: the split must not change between runs.
SPLIT_SEED = 14
# Each half needs a member and a non-member.
MIN_RECORDS = 2
# Thresholds tried on the choosing half, at most: the EXTREMES highest and lowest distinct scores
# (where the two inequalities bind) and evenly spaced ones between. Only sets with more than
# MAX_CANDIDATES distinct scores in the choosing half are thinned.
MAX_CANDIDATES = 4000
EXTREMES = 1000
_TIE_DECIMALS = 12


@dataclass(frozen=True)
class Half:
    """The membership scores of one half of the evaluation records."""

    members: np.ndarray
    non_members: np.ndarray


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold (member when score >= threshold) and the inequality it is read with."""

    threshold: float
    inequality: Inequality


@dataclass(frozen=True)
class Bounding:
    """The bounding half's counts at the operating point and the rates' limits used."""

    true_positives: int
    false_positives: int
    tpr_lower: float
    fpr_upper: float


@dataclass(frozen=True)
class EpsilonEstimate:
    """`epsilon` at `delta` (CONFIDENCE, under ASSUMPTION). `point` is None when no operating point
    on the choosing half ruled anything out (the estimate is then 0 without looking further);
    `bounding` holds the bounding half's counts at the point."""

    epsilon: float
    delta: float
    choosing_members: int
    choosing_non_members: int
    bounding_members: int
    bounding_non_members: int
    point: OperatingPoint | None
    bounding: Bounding | None

    @property
    def tpr(self) -> float | None:
        """The bounding half's TPR at the operating point, as measured."""
        return self.bounding.true_positives / self.bounding_members if self.bounding else None

    @property
    def fpr(self) -> float | None:
        return self.bounding.false_positives / self.bounding_non_members if self.bounding else None


def clopper_pearson(successes: np.ndarray, trials: int,
                    confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The exact two-sided intervals (lower ends, upper ends) of binomial proportions, one per
    count in `successes` (integers from 0 to `trials`, trials >= 1). Each end is a one-sided
    limit at (1 + confidence) / 2."""
    tail = (1 - confidence) / 2
    k = np.asarray(successes, dtype=np.float64)
    # Beta shape parameters must be positive; the ends they would miss are 0 and 1 exactly.
    lower = np.where(k > 0, betaincinv(np.maximum(k, 1), trials - k + 1, tail), 0.0)
    upper = np.where(k < trials, betaincinv(k + 1, np.maximum(trials - k, 1), 1 - tail), 1.0)
    return lower, upper


def split(members: np.ndarray, non_members: np.ndarray, seed: int = SPLIT_SEED) -> tuple[Half, Half]:
    """(choosing half, bounding half). Members and non-members are shuffled separately with
    `numpy.random.default_rng(seed)`; the choosing half takes the first n // 2 of each. Each
    half keeps its records in their original order."""
    rng = np.random.default_rng(seed)

    def cut(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(len(scores))
        half = len(scores) // 2
        return scores[np.sort(order[:half])], scores[np.sort(order[half:])]

    choose_members, bound_members = cut(np.asarray(members, dtype=np.float64))
    choose_non_members, bound_non_members = cut(np.asarray(non_members, dtype=np.float64))
    return Half(choose_members, choose_non_members), Half(bound_members, bound_non_members)


def choose(half: Half, delta: float) -> OperatingPoint | None:
    """The candidate operating point with the largest conservative estimate on `half`; ties go
    to the TPR inequality, then to the higher threshold. None when every candidate gives 0."""
    thresholds = _candidates(np.concatenate([half.members, half.non_members]))
    limits = _rate_limits(*_counts(half, thresholds), len(half.members), len(half.non_members))
    # Rounded so that ties in exact arithmetic stay ties (a perfect separator's two sides agree).
    epsilons = {side: np.round(values, _TIE_DECIMALS) for side, values in _ruled_out(*limits, delta).items()}
    inequality = max(epsilons, key=lambda side: epsilons[side].max())  # dict order: TPR first on ties
    best = int(np.argmax(epsilons[inequality]))
    if epsilons[inequality][best] <= 0:
        return None
    return OperatingPoint(float(thresholds[best]), inequality)


def bound(half: Half, point: OperatingPoint, delta: float) -> tuple[float, Bounding]:
    """The epsilon that `point`'s inequality rules out on `half`, and the counts behind it."""
    (true_positives,), (false_positives,) = _counts(half, np.array([point.threshold]))
    tpr_lower, fpr_upper = _rate_limits(np.array([true_positives]), np.array([false_positives]), len(half.members),
                                       len(half.non_members))
    (epsilon,) = _ruled_out(tpr_lower, fpr_upper, delta)[point.inequality]
    counts = Bounding(int(true_positives), int(false_positives), float(tpr_lower[0]), float(fpr_upper[0]))
    return float(epsilon), counts


def estimate(members: np.ndarray, non_members: np.ndarray, delta: float) -> EpsilonEstimate | None:
    """The estimate from the evaluated records' scores; None with fewer than MIN_RECORDS members
    or non-members (a half would be empty)."""
    if min(len(members), len(non_members)) < MIN_RECORDS:
        return None
    choosing, bounding = split(members, non_members)
    return estimate_from_halves(choosing, bounding, delta)


def estimate_from_halves(choosing: Half, bounding: Half, delta: float) -> EpsilonEstimate:
    """Steps 2 and 3 on halves already split."""
    sizes = dict(choosing_members=len(choosing.members), choosing_non_members=len(choosing.non_members),
                 bounding_members=len(bounding.members), bounding_non_members=len(bounding.non_members))
    point = choose(choosing, delta)
    if point is None:
        return EpsilonEstimate(epsilon=0.0, delta=delta, point=None, bounding=None, **sizes)
    epsilon, counts = bound(bounding, point, delta)
    return EpsilonEstimate(epsilon=epsilon, delta=delta, point=point, bounding=counts, **sizes)


def _rate_limits(true_positives: np.ndarray, false_positives: np.ndarray, members: int,
                non_members: int) -> tuple[np.ndarray, np.ndarray]:
    """(TPR lower limits, FPR upper limits) of count pairs: the ends of their CONFIDENCE intervals."""
    tpr_lower, _ = clopper_pearson(true_positives, members)
    _, fpr_upper = clopper_pearson(false_positives, non_members)
    return tpr_lower, fpr_upper


def _ruled_out(tpr_lower: np.ndarray, fpr_upper: np.ndarray, delta: float) -> dict[Inequality, np.ndarray]:
    """Per inequality, the epsilon that rates at these limits rule out, 0 where they rule out
    nothing; finite, since a lower limit is below 1 and an upper limit above 0."""
    return {Inequality.TPR: _log_ratio(tpr_lower - delta, fpr_upper),
            Inequality.TNR: _log_ratio(1 - fpr_upper - delta, 1 - tpr_lower)}


def _candidates(scores: np.ndarray) -> np.ndarray:
    """Distinct scores, highest first, thinned to MAX_CANDIDATES as the module says."""
    distinct = np.unique(scores)[::-1]
    if len(distinct) <= MAX_CANDIDATES:
        return distinct
    middle = np.linspace(EXTREMES, len(distinct) - EXTREMES - 1, MAX_CANDIDATES - 2 * EXTREMES)
    keep = np.unique(np.concatenate([np.arange(EXTREMES), np.rint(middle).astype(np.int64),
                                     np.arange(len(distinct) - EXTREMES, len(distinct))]))
    return distinct[keep]


def _counts(half: Half, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Members and non-members of `half` with score >= each threshold."""
    def at_or_above(scores: np.ndarray) -> np.ndarray:
        return len(scores) - np.searchsorted(np.sort(scores), thresholds, side="left")

    return at_or_above(half.members), at_or_above(half.non_members)


def _log_ratio(hits: np.ndarray, misses: np.ndarray) -> np.ndarray:
    """ln(hits / misses) where hits > misses > 0, else 0 (the inequality rules out nothing)."""
    rules_out = (hits > misses) & (misses > 0)
    return np.where(rules_out, np.log(np.where(rules_out, hits, 1.0) / np.where(rules_out, misses, 1.0)), 0.0)

