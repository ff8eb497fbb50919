"""The empirical epsilon bound against hand-worked cases, and its Clopper-Pearson intervals
against the binomial tails that define them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from services.reporter.epsilon import CONFIDENCE, clopper_pearson, epsilon_from_rates, lower_bound

DELTA = 1e-5
TAIL = (1 - CONFIDENCE) / 2  # 0.025 on each side


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


def test_raw_rates_of_a_sure_call_rule_out_every_epsilon_and_chance_rules_out_none() -> None:
    assert epsilon_from_rates(tpr=0.3, fpr=0.0, delta=DELTA) == math.inf
    assert epsilon_from_rates(tpr=1.0, fpr=0.4, delta=DELTA) == math.inf
    assert epsilon_from_rates(tpr=0.2, fpr=0.2, delta=DELTA) == 0.0
    assert epsilon_from_rates(tpr=0.0, fpr=0.0, delta=DELTA) == 0.0
    assert epsilon_from_rates(tpr=0.5, fpr=0.1, delta=0.0) == pytest.approx(math.log(5))


def test_a_delta_above_the_tpr_voids_that_side_of_the_test() -> None:
    """TPR 0.01 at FPR 0.001: ln 10 with a small delta; with delta 0.01 only the other side
    is left, (1 - 0.001 - 0.01) / 0.99 < 1, which rules out nothing."""
    assert epsilon_from_rates(tpr=0.01, fpr=0.001, delta=1e-9) == pytest.approx(math.log(10), rel=1e-6)
    assert epsilon_from_rates(tpr=0.01, fpr=0.001, delta=0.01) == 0.0


@pytest.mark.parametrize("n", [10, 100, 1000, 10_000])
def test_a_perfect_separator_on_n_records_gives_a_finite_bound_by_hand(n: int) -> None:
    """ROC (0,0) -> (0,1) -> (1,1). At (0, 1): TPR >= 0.025^(1/n), FPR <= 1 - 0.025^(1/n),
    so epsilon >= ln((0.025^(1/n) - delta) / (1 - 0.025^(1/n))); both sides of the test agree."""
    bound = lower_bound([(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], n, n, DELTA)
    root = TAIL ** (1 / n)
    assert bound.epsilon == pytest.approx(math.log((root - DELTA) / (1 - root)))
    assert (bound.fpr, bound.tpr, bound.delta) == (0.0, 1.0, DELTA)
    assert (bound.tpr_lower, bound.fpr_upper) == (pytest.approx(root), pytest.approx(1 - root))


def test_the_perfect_separators_bound_grows_with_the_evaluation_set() -> None:
    epsilons = [lower_bound([(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], n, n, DELTA).epsilon for n in (10, 100, 1000)]
    assert epsilons == [pytest.approx(0.8071, abs=1e-4), pytest.approx(3.2813, abs=1e-4),
                        pytest.approx(5.6006, abs=1e-4)]


def test_a_chance_level_attack_gives_zero() -> None:
    diagonal = [(i / 1000, i / 1000) for i in range(1001)]
    assert lower_bound(diagonal, 1000, 1000, DELTA).epsilon == 0.0


def test_the_low_fpr_end_decides_when_a_few_records_are_exposed_with_certainty() -> None:
    """30 of 100 members above every non-member: TPR 30/100 at FPR 0/100. By the binomial
    tails the TPR is at least ~0.2124, the FPR at most 1 - 0.025^(1/100) ~ 0.0362."""
    roc = [(0.0, 0.0), (0.0, 0.3), (0.5, 0.6), (1.0, 1.0)]
    bound = lower_bound(roc, 100, 100, DELTA)
    tpr_lower = bound.tpr_lower
    assert binom.sf(29, 100, tpr_lower) == pytest.approx(TAIL) and tpr_lower == pytest.approx(0.2124, abs=1e-4)
    assert bound.fpr_upper == pytest.approx(1 - TAIL ** (1 / 100))
    assert (bound.fpr, bound.tpr) == (0.0, 0.3)
    assert bound.epsilon == pytest.approx(math.log((tpr_lower - DELTA) / bound.fpr_upper))


def test_the_other_side_of_the_test_decides_when_all_members_score_above_some_non_members() -> None:
    """Every member and half the non-members at the top, TPR 1 at FPR 0.5: a low score is a sure
    non-member, so 1 - FPR <= e^eps (1 - TPR) + delta is the binding side."""
    bound = lower_bound([(0.0, 0.0), (0.5, 1.0), (1.0, 1.0)], 100, 100, DELTA)
    tpr_lower, fpr_upper = TAIL ** (1 / 100), bound.fpr_upper
    assert binom.cdf(50, 100, fpr_upper) == pytest.approx(TAIL)
    assert bound.epsilon == pytest.approx(math.log((1 - fpr_upper - DELTA) / (1 - tpr_lower)))
    assert bound.epsilon > math.log((tpr_lower - DELTA) / fpr_upper) > 0


def test_a_larger_delta_never_raises_the_bound() -> None:
    roc = [(0.0, 0.0), (0.0, 0.3), (1.0, 1.0)]
    epsilons = [lower_bound(roc, 100, 100, delta).epsilon for delta in (0.0, 1e-5, 1e-2, 0.1, 0.3)]
    assert epsilons == sorted(epsilons, reverse=True) and epsilons[-1] == 0.0 < epsilons[0]


def test_rates_are_read_as_counts_of_the_evaluation_set() -> None:
    """0.3 is 30 of 100 or 3 of 10: the smaller set's interval is wider, its bound lower."""
    roc = [(0.0, 0.0), (0.0, 0.3), (1.0, 1.0)]
    assert lower_bound(roc, 10, 10, DELTA).epsilon < lower_bound(roc, 100, 100, DELTA).epsilon


def test_no_points_or_no_records_give_no_bound() -> None:
    assert lower_bound([], 100, 100, DELTA) is None
    assert lower_bound([(0.0, 0.0), (1.0, 1.0)], 0, 100, DELTA) is None
