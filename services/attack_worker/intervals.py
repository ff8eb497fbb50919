"""95% confidence intervals and chance p-values of membership figures (numpy and scipy only).

Members are the positive class; scores are any finite numbers, higher meaning "more likely a
member", with ties allowed. "Chance" is an attack whose scores do not depend on membership: the
scores of the evaluation set are exchangeable, so every assignment of the member labels to them
is equally likely (the null hypothesis of a permutation test, conditional on the scores' ties).

The low-FPR figure is a count read at real ROC points (`true_positives_within`), the rule the
point figure, its interval and its p-value share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr
from scipy.stats import nhypergeom, norm

LEVEL = 0.95
_Z = float(norm.ppf(0.5 + LEVEL / 2))
# Replicates of the low-FPR interval; each costs a binary search and two binomial draws.
TPR_REPLICATES = 4000


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    lower: float
    upper: float


def true_positives_within(sorted_members: np.ndarray, descending_non_members: np.ndarray,
                          false_positives: int | np.ndarray) -> int | np.ndarray:
    """The most members a threshold can call members while calling at most `false_positives`
    non-members members: those scoring strictly above the (false_positives + 1)-th highest non-member.
    This reads the ROC at real points only: members tied with that non-member are one step with it
    and are left out whole. All members when the budget covers every non-member, none when it is
    negative. Vectorised over `false_positives`."""
    budget = np.asarray(false_positives)
    num_members, num_non_members = len(sorted_members), len(descending_non_members)
    bound = descending_non_members[np.clip(budget, 0, num_non_members - 1)]
    counts = num_members - np.searchsorted(sorted_members, bound, side="right")
    counts = np.where(budget >= num_non_members, num_members, np.where(budget < 0, 0, counts))
    return int(counts) if counts.ndim == 0 else counts


def delong(members: np.ndarray, non_members: np.ndarray) -> tuple[float, float]:
    """The AUC and DeLong's estimate of its variance, in the O(N log N) midrank form (Sun and Xu,
    2014). Each member's structural component is the share of non-members it outscores and each
    non-member's the share of members it outscores, ties counting one half; the AUC is the mean
    member component and its variance var(member components) / #members + var(non-member
    components) / #non-members (sample variances). The variance is infinite with fewer than two
    records on a side: nothing estimates it."""
    num_members, num_non_members = len(members), len(non_members)
    combined = _midranks(np.concatenate([members, non_members]))[0]
    member_components = (combined[:num_members] - _midranks(members)[0]) / num_non_members
    auc = float(member_components.mean())
    if num_members < 2 or num_non_members < 2:
        return auc, float("inf")
    non_member_components = (combined[num_members:] - _midranks(non_members)[0]) / num_members
    variance = (np.var(member_components, ddof=1) / num_members
                + np.var(non_member_components, ddof=1) / num_non_members)
    return auc, float(variance)


def auc_with_interval(members: np.ndarray, non_members: np.ndarray) -> tuple[float, Interval]:
    """The AUC and its 95% interval by DeLong's method (normal, AUC +- z * sd), clipped to [0, 1];
    [0, 1] with fewer than two records on a side. Scores that separate the two sides perfectly
    have zero estimated variance and a zero-width interval (DeLong's known optimism at the edge)."""
    auc, variance = delong(members, non_members)
    half_width = _Z * np.sqrt(variance)
    return auc, Interval(max(0.0, auc - half_width), min(1.0, auc + half_width))


def auc_p_value(members: np.ndarray, non_members: np.ndarray) -> float:
    """The chance of an AUC at least this high: the one-sided ("members score higher") p-value
    of the Mann-Whitney U test, by the normal approximation with the tie-corrected variance.

    Continuity correction: half the smallest change in the members' rank sum that moving one
    member to an adjacent distinct score makes, (t_i + t_i+1) / 4 over adjacent tie groups of
    sizes t_i, t_i+1 (a finer attainable step only makes it more conservative). With distinct
    scores that is the usual 1/2 and the p-value is scipy's asymptotic one. With two distinct
    scores (BASELINE's 0/1) U is linear in the hypergeometric count of members scoring high (the
    statistic of Fisher's exact test) and moves in steps of N/2, and the correction is that
    count's usual half unit; the usual 1/2 in U there would let a guessing attack reach p <= 0.05
    up to 5.2% of the time at 50 + 50 (exact rates with this correction, a share of 1s from 0.1
    to 0.9: 2.4-3.2% at 50 + 50, 3.6-4.0% at 200 + 200, the same as Fisher's exact test).
    1.0 when every score is tied."""
    num_members, num_non_members = len(members), len(non_members)
    total = num_members + num_non_members
    ranks, tie_sizes = _midranks(np.concatenate([members, non_members]))
    u = ranks[:num_members].sum() - num_members * (num_members + 1) / 2
    if len(tie_sizes) < 2:
        return 1.0
    variance = num_members * num_non_members / 12 * (
        total + 1 - np.sum(tie_sizes ** 3 - tie_sizes) / (total * (total - 1)))
    correction = np.min(tie_sizes[:-1] + tie_sizes[1:]) / 4
    return float(ndtr(-(u - num_members * num_non_members / 2 - correction) / np.sqrt(variance)))


def _midranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's rank from 1 up, tied values sharing their ranks' mean (scipy's `rankdata`,
    without its per-call overhead, which dominates at a few hundred records), and the sizes of
    the tie groups by increasing value."""
    _, group, sizes = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(sizes) - (sizes - 1) / 2)[group], sizes.astype(np.float64)


def tpr_p_value(true_positives: int, num_members: int, num_non_members: int, false_positives: int) -> float:
    """The chance that scores independent of membership call at least `true_positives` members
    within a budget of `false_positives` non-members (`true_positives_within`'s reading).

    With distinct scores, the ranking is a uniformly random interleaving of members and
    non-members, and the members ranked above the (false_positives + 1)-th non-member follow the
    negative hypergeometric law (draw without replacement until that many non-members came up;
    count the members drawn): the p-value is exact. With ties it is conservative: break the
    ties at random and the reading can only grow (every member strictly above the
    (budget + 1)-th non-member's score stays above that non-member in any tie-break, and the
    non-members above it number at most the budget), while the tie-broken count follows the
    same law under chance; so the tied count is stochastically smaller than that law, and its
    tail probability at the observed count is at least the true one."""
    return float(nhypergeom.sf(true_positives - 1, num_members + num_non_members, num_members,
                               false_positives + 1))


def tpr_interval(sorted_members: np.ndarray, descending_non_members: np.ndarray, fpr: float, seed: int,
                 replicates: int = TPR_REPLICATES) -> Interval:
    """The 95% interval of the TPR at FPR <= `fpr`, by a seeded resampling of the members and of
    where the true threshold sits among the non-members; percentile interval.

    Members are resampled with replacement, as in a stratified bootstrap: at a fixed threshold the
    resampled count of members above it is binomial. Non-members are not: the percentile
    bootstrap of a low order statistic under-covers near the set's resolution (binormal scores,
    d = 1 to 2: 71-83% with one expected false positive, 90% with five). Instead each replicate
    draws J, how many non-members score above the true (1 - fpr)-quantile of non-member scores,
    which for continuous scores is Binomial(#non-members, fpr) whatever their distribution; the
    quantile then lies between the J-th and (J+1)-th highest non-member scores, and the
    replicate's member share is the mean of the ROC readings at those two points (budgets J - 1
    and J). Measured coverage on binormal scores (d = 1 to 3, 1 to 20 expected false positives):
    95.5-98.6%, conservative at the resolution's edge. Cost: O(replicates * log N) after sorting."""
    rng = np.random.default_rng(seed)
    num_members = len(sorted_members)
    above = rng.binomial(len(descending_non_members), fpr, replicates)
    share = (true_positives_within(sorted_members, descending_non_members, above)
             + true_positives_within(sorted_members, descending_non_members, above - 1)) / (2 * num_members)
    tprs = rng.binomial(num_members, share) / num_members
    lower, upper = np.quantile(tprs, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(float(lower), float(upper))
