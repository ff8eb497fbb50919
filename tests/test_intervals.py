"""Intervals and chance p-values against brute force, scipy, scikit-learn and analytic binormal answers.

Binormal scores: members ~ N(d, 1), non-members ~ N(0, 1). Then AUC = Phi(d / sqrt 2) and the TPR
at FPR f is 1 - Phi(Phi^-1(1 - f) - d). Coverage runs are seeded; a run of R intervals with true
coverage 95% lands within 2.5 standard errors (sqrt(.95 * .05 / R)) of it 99% of the time.
"""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np
import pytest
from scipy.stats import binom, hypergeom, mannwhitneyu, norm
from sklearn.metrics import roc_auc_score, roc_curve

from privaudit.services.attack_worker import intervals

ALPHA = 0.05


def brute_force_delong_variance(members: np.ndarray, non_members: np.ndarray) -> float:
    """DeLong's variance from the full member x non-member comparison matrix (O(m n))."""
    wins = (members[:, None] > non_members[None, :]) + 0.5 * (members[:, None] == non_members[None, :])
    member_components, non_member_components = wins.mean(axis=1), 1 - wins.mean(axis=0)
    return (np.var(member_components, ddof=1) / len(members)
            + np.var(non_member_components, ddof=1) / len(non_members))


def binormal(rng: np.random.Generator, d: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(d, 1.0, size), rng.normal(0.0, 1.0, size)


def coverage_margin(runs: int) -> float:
    return 2.5 * math.sqrt(0.95 * 0.05 / runs)


@pytest.mark.parametrize("rounding", [None, 1, 0], ids=["distinct", "tenths", "integers"])
def test_delong_variance_and_auc_match_brute_force_and_sklearn(rounding):
    rng = np.random.default_rng(0)
    for trial in range(20):
        members, non_members = rng.normal(0.5, 2, 3 + trial * 7), rng.normal(0, 2, 40 - trial)
        if rounding is not None:
            members, non_members = members.round(rounding), non_members.round(rounding)
        auc, variance = intervals.delong(members, non_members)
        assert variance == pytest.approx(brute_force_delong_variance(members, non_members), rel=1e-9)
        assert auc == pytest.approx(roc_auc_score(np.r_[np.ones(len(members)), np.zeros(len(non_members))],
                                                  np.r_[members, non_members]))


def test_auc_interval_is_the_normal_interval_clipped_to_zero_and_one():
    members, non_members = np.array([0.9, 0.8, 0.7, 0.3]), np.array([0.6, 0.2, 0.1])
    auc, interval = intervals.auc_with_interval(members, non_members)
    half_width = norm.ppf(0.975) * math.sqrt(brute_force_delong_variance(members, non_members))
    assert (interval.lower, interval.upper) == pytest.approx((max(0, auc - half_width), min(1, auc + half_width)))
    assert interval.upper == 1.0 < auc + half_width
    # One member alone: nothing estimates the variance, nothing is ruled out.
    auc, interval = intervals.auc_with_interval(np.array([0.5]), non_members)
    assert auc == pytest.approx(2 / 3) and (interval.lower, interval.upper) == (0.0, 1.0)


@pytest.mark.parametrize(("size", "d"), [(50, 0.5), (100, 1.0), (300, 2.0)])
def test_auc_interval_covers_the_binormal_auc_95_percent_of_the_time(size, d):
    rng, runs, truth = np.random.default_rng(size), 400, norm.cdf(d / math.sqrt(2))
    covered = 0
    for _ in range(runs):
        interval = intervals.auc_with_interval(*binormal(rng, d, size))[1]
        covered += interval.lower <= truth <= interval.upper
    assert abs(covered / runs - 0.95) <= coverage_margin(runs), f"coverage {covered / runs:.3f}"


@pytest.mark.parametrize(("fpr", "size", "d"), [(0.01, 100, 1.0), (0.001, 1000, 1.0), (0.001, 1000, 3.0),
                                                 (0.001, 5000, 2.0)])
def test_tpr_interval_covers_the_binormal_tpr_from_the_sets_resolution_up(fpr, size, d):
    """Down to one expected false positive (100 non-members at 1%, 1000 at 0.1%), where the
    percentile bootstrap of the non-members covers only about 75%. Coverage here is 95-98%:
    the interval is somewhat conservative at the resolution's edge, never short."""
    rng, runs, truth = np.random.default_rng(size + round(d)), 300, 1 - norm.cdf(norm.ppf(1 - fpr) - d)
    covered = 0
    for seed in range(runs):
        members, non_members = binormal(rng, d, size)
        interval = intervals.tpr_interval(np.sort(members), np.sort(non_members)[::-1], fpr, seed)
        covered += interval.lower <= truth <= interval.upper
    assert 0.95 - coverage_margin(runs) <= covered / runs <= 0.99, f"coverage {covered / runs:.3f}"


def test_tpr_interval_is_seeded_and_brackets_its_replicates():
    rng = np.random.default_rng(3)
    members, non_members = np.sort(rng.normal(1, 1, 2000)), np.sort(rng.normal(0, 1, 2000))[::-1]
    interval = intervals.tpr_interval(members, non_members, 0.01, seed=5)
    assert interval == intervals.tpr_interval(members, non_members, 0.01, seed=5)
    assert interval != intervals.tpr_interval(members, non_members, 0.01, seed=6)
    assert 0 <= interval.lower < intervals.true_positives_within(members, non_members, 20) / 2000 < interval.upper


def roc_readings(members: np.ndarray, non_members: np.ndarray) -> list[int]:
    """scikit-learn's ROC (one point per distinct score) read, for each budget of 0 to all
    false positives, at the highest TPR among points within it, as a count of members."""
    fpr, tpr, _ = roc_curve(np.r_[np.ones(len(members)), np.zeros(len(non_members))], np.r_[members, non_members],
                            drop_intermediate=False)
    false_positives, true_positives = np.rint(fpr * len(non_members)), np.rint(tpr * len(members))
    return [int(true_positives[false_positives <= budget].max()) for budget in range(len(non_members) + 1)]


def test_true_positives_within_reads_the_roc_at_real_points():
    rng = np.random.default_rng(4)
    for trial in range(30):
        members, non_members = rng.integers(0, 6 + trial, 40), rng.integers(-3, 5 + trial, 25)
        counts = intervals.true_positives_within(np.sort(members), np.sort(non_members)[::-1], np.arange(26))
        assert counts.tolist() == roc_readings(members, non_members), trial
    sorted_members, descending = np.sort(members), np.sort(non_members)[::-1]
    budgets = np.array([-1, 0, 3, 24, 25, 99])
    counts = intervals.true_positives_within(sorted_members, descending, budgets)
    assert counts.tolist() == [0, *(intervals.true_positives_within(sorted_members, descending, b)
                                    for b in budgets[1:4]), 40, 40]


def test_auc_p_value_is_scipys_mann_whitney_for_distinct_and_lightly_tied_scores():
    rng = np.random.default_rng(6)
    for size in (20, 60, 300):
        members, non_members = rng.normal(0.2, 1, size), rng.normal(0, 1, size + 7)
        non_members[:5] = members[:5]  # ties in pairs: adjacent distinct scores still one rank apart
        for x, y in ((members, non_members), (non_members, members)):
            assert intervals.auc_p_value(x, y) == pytest.approx(
                mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue, rel=1e-9)
    assert intervals.auc_p_value(np.full(5, 0.3), np.full(8, 0.3)) == 1.0


def test_auc_p_value_of_two_level_scores_is_the_hypergeometric_normal_tail():
    """With scores 0/1, U is linear in the number X of members scoring 1, which is hypergeometric
    under chance: the p-value is the normal approximation of P(X >= x), continuity-corrected by 1/2 in X."""
    for members_high, non_members_high, size in ((30, 20, 50), (9, 2, 12), (140, 170, 200)):
        members = np.r_[np.ones(members_high), np.zeros(size - members_high)]
        non_members = np.r_[np.ones(non_members_high), np.zeros(size - non_members_high)]
        law = hypergeom(2 * size, members_high + non_members_high, size)
        assert intervals.auc_p_value(members, non_members) == pytest.approx(
            norm.sf((members_high - 0.5 - law.mean()) / law.std()), rel=1e-9)


@pytest.mark.parametrize(("size", "runs"), [(50, 2000), (200, 1500), (1000, 800)])
def test_auc_p_value_of_guessing_continuous_scores_is_below_alpha_at_most_5_percent(size, runs):
    rng = np.random.default_rng(size)
    rejected = sum(intervals.auc_p_value(rng.random(size), rng.random(size)) <= ALPHA for _ in range(runs))
    assert rejected / runs <= ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / runs), f"{rejected} of {runs}"


def two_level_rejection_rate(size: int, share_high: float) -> float:
    """The exact chance that `auc_p_value` <= ALPHA when every record of size + size scores 1 with
    probability `share_high`, else 0, whatever its membership: summed over the number K of 1s,
    with the members' count of 1s hypergeometric given K."""
    total, rate = 2 * size, 0.0
    for high in range(1, total):
        weight = binom.pmf(high, total, share_high)
        if weight < 1e-10:
            continue
        counts = range(max(0, high - size), min(size, high) + 1)

        def accepted(members_high: int, high: int = high) -> bool:
            members = np.r_[np.ones(members_high), np.zeros(size - members_high)]
            return intervals.auc_p_value(members, np.r_[np.ones(high - members_high),
                                                        np.zeros(size - high + members_high)]) > ALPHA

        if accepted(counts[-1]):
            continue
        # The p-value falls as more of the 1s are members' ones: the rejected counts are a tail.
        first_rejected = counts[bisect.bisect_left(counts, True, key=lambda count: not accepted(count))]
        rate += weight * hypergeom.sf(first_rejected - 1, total, high, size)
    return rate


@pytest.mark.parametrize("size", [50, 200])
@pytest.mark.parametrize("share_high", [0.1, 0.5, 0.9])
def test_auc_p_value_of_guessing_0_1_scores_is_below_alpha_at_most_5_percent(size, share_high):
    """Exact, so no Monte-Carlo slack. With the usual continuity correction of 1/2 the rate is
    5.2% at 50 + 50 and a share of 0.1 or 0.9."""
    assert two_level_rejection_rate(size, share_high) <= ALPHA


def test_auc_p_value_of_guessing_0_1_scores_at_1000_is_below_alpha_at_most_5_percent():
    rng, runs, size = np.random.default_rng(8), 800, 1000
    rejected = sum(intervals.auc_p_value(*(rng.random((2, size)) < 0.8).astype(float)) <= ALPHA for _ in range(runs))
    assert rejected / runs <= ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / runs), f"{rejected} of {runs}"


def permutation_tail(scores: np.ndarray, num_members: int, budget: int, observed: int) -> float:
    """The share of all ways to pick which `num_members` of `scores` are members under which the
    reading with `budget` false positives is at least `observed`."""
    hits = total = 0
    for chosen in itertools.combinations(range(len(scores)), num_members):
        is_member = np.zeros(len(scores), dtype=bool)
        is_member[list(chosen)] = True
        count = intervals.true_positives_within(np.sort(scores[is_member]), np.sort(scores[~is_member])[::-1], budget)
        hits += count >= observed
        total += 1
    return hits / total


@pytest.mark.parametrize(("num_members", "num_non_members"), [(4, 5), (3, 7), (6, 3)])
def test_tpr_p_value_is_the_permutation_count_for_distinct_scores(num_members, num_non_members):
    scores = np.random.default_rng(num_members).permutation(num_members + num_non_members).astype(float)
    for budget in range(num_non_members):
        for observed in range(num_members + 1):
            assert intervals.tpr_p_value(observed, num_members, num_non_members, budget) == pytest.approx(
                permutation_tail(scores, num_members, budget, observed), abs=1e-12), (budget, observed)


def test_tpr_p_value_is_conservative_with_ties():
    scores = np.array([3, 3, 3, 2, 2, 1, 1, 1, 0, 0], dtype=float)
    num_members, num_non_members = 5, 5
    for budget in range(num_non_members):
        for observed in range(1, num_members + 1):
            assert permutation_tail(scores, num_members, budget, observed) <= \
                intervals.tpr_p_value(observed, num_members, num_non_members, budget) + 1e-12, (budget, observed)
