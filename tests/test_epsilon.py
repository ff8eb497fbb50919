"""The empirical epsilon estimate: its Clopper-Pearson limits against the binomial tails that define
them, known answers from scipy's beta quantiles, the split between the half that chooses the
operating point and the half that measures it, and its behaviour on guessing and perfect attacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binom
from test_reporter_fixtures import make_report, succeeded

from privaudit.services.reporter.epsilon import (
    CONFIDENCE,
    MAX_CANDIDATES,
    Half,
    Inequality,
    OperatingPoint,
    bound,
    choose,
    clopper_pearson,
    estimate,
    estimate_from_halves,
    split,
)

DELTA = 1e-5
TAIL = (1 - CONFIDENCE) / 2  # 0.025: each limit is one-sided at 97.5%, both hold together at 95%


def _half(member_scores: dict[float, int], non_member_scores: dict[float, int]) -> Half:
    """A half with `count` records at each score."""
    def expand(counts: dict[float, int]) -> np.ndarray:
        return np.concatenate([np.full(count, value, dtype=np.float64) for value, count in counts.items()])

    return Half(expand(member_scores), expand(non_member_scores))


def _tpr_lower(k: int, n: int) -> float:
    return beta.ppf(TAIL, k, n - k + 1) if k else 0.0


def _fpr_upper(k: int, n: int) -> float:
    return beta.ppf(1 - TAIL, k + 1, n - k) if k < n else 1.0


# A choosing half whose best point is plainly "member when score >= 2" with the TPR inequality:
# 30 of 100 members above every non-member.
CHOOSE_TPR_SIDE = _half({2.0: 30, 0.0: 70}, {0.0: 100})


def test_clopper_pearson_matches_the_textbook_interval_for_3_of_10() -> None:
    lower, upper = clopper_pearson(np.array([3]), 10)
    assert (lower[0], upper[0]) == (pytest.approx(0.0667, abs=5e-5), pytest.approx(0.6525, abs=5e-5))


@pytest.mark.parametrize(("successes", "trials"), [(1, 10), (30, 100), (650, 1000), (99, 100)])
def test_clopper_pearson_ends_leave_2_5_percent_in_each_binomial_tail(successes: int, trials: int) -> None:
    (lower,), (upper,) = clopper_pearson(np.array([successes]), trials)
    assert binom.sf(successes - 1, trials, lower) == pytest.approx(TAIL)  # P(X >= k | p = lower)
    assert binom.cdf(successes, trials, upper) == pytest.approx(TAIL)  # P(X <= k | p = upper)


@pytest.mark.parametrize("trials", [1, 10, 100, 1000])
def test_clopper_pearson_at_the_ends_has_its_closed_form(trials: int) -> None:
    lower, upper = clopper_pearson(np.array([0, trials]), trials)
    assert (lower[0], upper[1]) == (0.0, 1.0)
    assert upper[0] == pytest.approx(1 - TAIL ** (1 / trials))  # (1 - p)^n = 0.025 for 0 of n
    assert lower[1] == pytest.approx(TAIL ** (1 / trials))  # p^n = 0.025 for n of n


def test_exact_counts_on_the_bounding_half_give_the_tpr_inequality_from_beta_quantiles() -> None:
    """Bounding half: 25 of 100 members and 3 of 100 non-members at or above the threshold 2."""
    bounding = _half({2.5: 10, 2.0: 15, -1.0: 75}, {2.0: 3, 1.9: 50, -1.0: 47})
    found = estimate_from_halves(CHOOSE_TPR_SIDE, bounding, DELTA)
    assert found.point == OperatingPoint(2.0, Inequality.TPR)
    tpr_lower, fpr_upper = beta.ppf(0.025, 25, 76), beta.ppf(0.975, 4, 97)
    assert found.epsilon == pytest.approx(math.log((tpr_lower - DELTA) / fpr_upper), rel=1e-12)
    assert (found.bounding.true_positives, found.bounding.false_positives) == (25, 3)
    assert (found.tpr, found.fpr) == (0.25, 0.03)
    assert (found.bounding.tpr_lower, found.bounding.fpr_upper) == (pytest.approx(tpr_lower), pytest.approx(fpr_upper))


def test_exact_counts_on_the_bounding_half_give_the_other_inequality_from_beta_quantiles() -> None:
    """Every member and half the non-members score 1: a low score is a sure non-member, so
    1 - FPR <= e^eps (1 - TPR) + delta binds. Bounding half: 99 of 100 members, 40 of 100 non-members."""
    choosing = _half({1.0: 100}, {1.0: 50, 0.0: 50})
    bounding = _half({1.0: 99, 0.0: 1}, {1.0: 40, 0.0: 60})
    found = estimate_from_halves(choosing, bounding, DELTA)
    assert found.point == OperatingPoint(1.0, Inequality.TNR)
    tpr_lower, fpr_upper = beta.ppf(0.025, 99, 2), beta.ppf(0.975, 41, 60)
    assert found.epsilon == pytest.approx(math.log((1 - fpr_upper - DELTA) / (1 - tpr_lower)), rel=1e-12)


def test_the_bounding_half_moves_the_estimate_but_never_the_chosen_point() -> None:
    weak = estimate_from_halves(CHOOSE_TPR_SIDE, _half({2.0: 20, 0.0: 80}, {2.0: 1, 0.0: 99}), DELTA)
    strong = estimate_from_halves(CHOOSE_TPR_SIDE, _half({2.0: 40, 0.0: 60}, {0.0: 100}), DELTA)
    assert weak.point == strong.point == OperatingPoint(2.0, Inequality.TPR)
    assert 0 < weak.epsilon < strong.epsilon


def test_the_choosing_half_acts_only_through_the_point_it_chooses() -> None:
    """Two choosing halves that pick the same point give the same estimate, however different
    their own rates; one that picks another point gives that point's estimate."""
    bounding = _half({3.0: 15, 2.0: 10, 0.0: 75}, {2.0: 5, 0.0: 95})
    stronger_choice = _half({2.0: 90, 0.0: 10}, {0.0: 100})
    assert choose(stronger_choice, DELTA) == choose(CHOOSE_TPR_SIDE, DELTA)
    first, second = (estimate_from_halves(c, bounding, DELTA) for c in (CHOOSE_TPR_SIDE, stronger_choice))
    assert first == second
    elsewhere = estimate_from_halves(_half({3.0: 30, 0.0: 70}, {0.0: 100}), bounding, DELTA)
    assert elsewhere.point == OperatingPoint(3.0, Inequality.TPR)
    assert elsewhere.epsilon == pytest.approx(math.log((_tpr_lower(15, 100) - DELTA) / _fpr_upper(0, 100)))
    assert first.epsilon == pytest.approx(math.log((_tpr_lower(25, 100) - DELTA) / _fpr_upper(5, 100)))
    assert elsewhere.epsilon == bound(bounding, elsewhere.point, DELTA)[0] > first.epsilon > 0


@pytest.mark.parametrize("seed", range(5))
def test_the_chosen_point_is_the_best_candidate_by_brute_force(seed: int) -> None:
    """Every distinct score and both inequalities, with scipy's beta quantiles: the chosen pair
    gives the largest conservative epsilon on the choosing half."""
    rng = np.random.default_rng(seed)
    half = Half(np.round(rng.normal(1.0, 1, 60), 1), np.round(rng.normal(0, 1, 70), 1))
    best, best_point = 0.0, None
    for threshold in sorted(set(half.members) | set(half.non_members), reverse=True):
        k, f = int((half.members >= threshold).sum()), int((half.non_members >= threshold).sum())
        tpr_lower, fpr_upper = _tpr_lower(k, 60), _fpr_upper(f, 70)
        for inequality, hits, misses in ((Inequality.TPR, tpr_lower - DELTA, fpr_upper),
                                         (Inequality.TNR, 1 - fpr_upper - DELTA, 1 - tpr_lower)):
            value = math.log(hits / misses) if hits > misses > 0 else 0.0
            if value > best + 1e-9:
                best, best_point = value, OperatingPoint(float(threshold), inequality)
    assert best > 0
    assert choose(half, DELTA) == best_point


@pytest.mark.parametrize("n", [20, 100, 1000, 10_000])
def test_a_perfect_separator_gives_a_finite_estimate_of_the_analytic_size(n: int) -> None:
    """All members score 1, all non-members 0. The bounding half has h = n - n // 2 of each, all
    members caught and no non-member: TPR >= 0.025^(1/h), FPR <= 1 - 0.025^(1/h), so
    epsilon = ln((0.025^(1/h) - delta) / (1 - 0.025^(1/h))); both inequalities agree."""
    found = estimate(np.ones(n), np.zeros(n), DELTA)
    h = n - n // 2
    root = TAIL ** (1 / h)
    assert math.isfinite(found.epsilon)
    assert found.epsilon == pytest.approx(math.log((root - DELTA) / (1 - root)))
    assert (found.bounding_members, found.bounding_non_members, found.choosing_members) == (h, h, n // 2)
    assert found.point.threshold == 1.0


def test_the_perfect_separators_estimate_grows_with_the_evaluation_set() -> None:
    epsilons = [estimate(np.ones(n), np.zeros(n), DELTA).epsilon for n in (20, 200, 2000)]
    assert epsilons == sorted(epsilons) and epsilons[0] > 0


@pytest.mark.parametrize("kind", ["continuous", "tied 0/1"])
@pytest.mark.parametrize("n", [100, 1000])
def test_a_guessing_attack_estimates_zero_at_least_95_percent_of_the_time(kind: str, n: int) -> None:
    """Member and non-member scores from one distribution: a positive estimate is a false claim,
    allowed at most 5% of the time; 300 simulations, so the observed rate may exceed 5% by
    chance only with a true rate near it (binomial sd 1.3%)."""
    rng = np.random.default_rng(n)

    def draw(size: int) -> np.ndarray:
        return rng.normal(size=size) if kind == "continuous" else (rng.random(size) < 0.8).astype(np.float64)

    positive = sum(estimate(draw(n), draw(n), DELTA).epsilon > 0 for _ in range(300))
    assert positive / 300 <= 0.05


def test_an_estimate_is_zero_without_a_point_when_the_choosing_half_rules_out_nothing() -> None:
    found = estimate_from_halves(_half({0.0: 50}, {0.0: 50}), _half({1.0: 50}, {0.0: 50}), DELTA)
    assert (found.epsilon, found.point, found.bounding, found.tpr) == (0.0, None, None, None)


def test_a_larger_delta_never_raises_the_estimate() -> None:
    bounding = _half({2.0: 25, 0.0: 75}, {2.0: 1, 0.0: 99})
    epsilons = [estimate_from_halves(CHOOSE_TPR_SIDE, bounding, delta).epsilon for delta in (0.0, 1e-5, 1e-2, 0.3)]
    assert epsilons == sorted(epsilons, reverse=True) and epsilons[-1] == 0.0 < epsilons[0]


def test_the_split_is_fixed_disjoint_and_keeps_record_order() -> None:
    members, non_members = np.arange(11, dtype=np.float64), 100 + np.arange(8, dtype=np.float64)
    choosing, bounding = split(members, non_members)
    again, _ = split(members, non_members)
    assert np.array_equal(choosing.members, again.members)
    assert (len(choosing.members), len(bounding.members), len(choosing.non_members), len(bounding.non_members)) == (
        5, 6, 4, 4)
    assert sorted(np.concatenate([choosing.members, bounding.members])) == list(members)
    assert sorted(np.concatenate([choosing.non_members, bounding.non_members])) == list(non_members)
    for part in (choosing.members, bounding.members, choosing.non_members, bounding.non_members):
        assert np.all(np.diff(part) > 0)


def test_too_few_records_to_split_give_no_estimate() -> None:
    assert estimate(np.ones(1), np.zeros(100), DELTA) is None
    assert estimate(np.ones(100), np.zeros(1), DELTA) is None
    assert estimate(np.ones(2), np.zeros(2), DELTA) is not None


def test_a_large_set_is_searched_at_its_extremes() -> None:
    """More distinct scores than MAX_CANDIDATES: the operating point still sits just above the
    choosing half's highest non-member, catching the members placed far above every non-member."""
    rng = np.random.default_rng(3)
    members = np.concatenate([rng.normal(0, 1, 19_700), 10 + rng.random(300)])
    choosing, _ = split(members, rng.normal(0, 1, 20_000))
    assert len(np.unique(np.concatenate([choosing.members, choosing.non_members]))) > MAX_CANDIDATES
    point = choose(choosing, DELTA)
    assert point.inequality is Inequality.TPR
    assert choosing.non_members.max() < point.threshold <= 10
    assert point.threshold == choosing.members[choosing.members > choosing.non_members.max()].min()


def test_a_report_estimates_from_the_evaluated_records_only() -> None:
    """The helper's result adds members outside the balanced set, scoring above everyone: they
    must not enter the estimate."""
    result = succeeded(0, separation=0.5)
    scores = result.record_scores
    evaluated = np.array(scores.member_evaluated)
    assert not evaluated.all()
    (entry,) = make_report(result).attacks
    assert entry.epsilon == estimate(np.array(scores.members)[evaluated], np.array(scores.non_members), DELTA)
