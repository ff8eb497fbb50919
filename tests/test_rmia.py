"""RMIA's maths against closed forms: Pr(x) online and offline, the ratios, the pairwise count
against the population samples z, and the tie-breaking that keeps low-FPR TPR measurable."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from services.attack_worker.attacks import rmia


def two_class_logits(p: np.ndarray) -> np.ndarray:
    """Logits (..., 2) whose softmax gives class 0 probability p."""
    p = np.asarray(p, dtype=np.float64)
    return np.stack([np.log(p), np.log1p(-p)], axis=-1)


# ---------------------------------------------------------------- Pr(x)

REFERENCE_P = np.array([[0.9, 0.2], [0.7, 0.4], [0.3, 0.1], [0.5, 0.3]])  # 4 models x 2 records
REFERENCE_IN = np.array([[True, False], [True, True], [False, False], [False, True]])


def test_online_pr_x_is_the_mean_over_every_reference_model():
    log_pr = rmia.log_marginal(np.log(REFERENCE_P), REFERENCE_IN, online=True, a=0.3)
    np.testing.assert_allclose(np.exp(log_pr), REFERENCE_P.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("a", [0.0, 0.3, 1.0])
def test_offline_pr_x_is_the_linear_correction_of_the_out_mean(a):
    mean_out = np.array([(0.3 + 0.5) / 2, (0.2 + 0.1) / 2])  # models 2, 3 for record 0; 0, 2 for record 1
    log_pr = rmia.log_marginal(np.log(REFERENCE_P), REFERENCE_IN, online=False, a=a)
    np.testing.assert_allclose(np.exp(log_pr), ((1 + a) * mean_out + (1 - a)) / 2, rtol=1e-12)


def test_offline_needs_a_model_out_of_every_record():
    with pytest.raises(ValueError, match="record 1 is IN every reference model"):
        rmia.log_marginal(np.log(REFERENCE_P), REFERENCE_IN | np.array([False, True]), online=False, a=0.3)


def test_log_ratios_of_logits():
    target = two_class_logits(np.array([0.8, 0.05]))
    references = two_class_logits(REFERENCE_P)
    labels = np.array([0, 1])
    ratios = rmia.log_ratios(target, references, REFERENCE_IN, labels, online=True, a=0.3)
    pr_x_given_target = np.array([0.8, 0.95])
    pr_x = np.array([REFERENCE_P[:, 0].mean(), (1 - REFERENCE_P[:, 1]).mean()])
    np.testing.assert_allclose(ratios, np.log(pr_x_given_target / pr_x), rtol=1e-12)


def test_ratios_stay_finite_where_probabilities_underflow():
    """A label the models give probability e^-20000: 0 in floating point, 0/0 as a plain ratio."""
    target = np.array([[1e4, -1e4]])
    references = np.array([[[1e4, -1e4]], [[2e4, -1e4]]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is harmless
        ratios = rmia.log_ratios(target, references, np.array([[True], [False]]), np.array([1]), online=True, a=0.3)
    expected = -2e4 - (np.logaddexp(-2e4, -3e4) - np.log(2))
    assert ratios[0] == pytest.approx(expected, abs=1e-9)


# ---------------------------------------------------------------- scores


def tie_breaker(log_ratio: float) -> float:
    return 0.5 + np.arctan(log_ratio) / np.pi


def test_score_is_the_share_of_z_beaten_by_gamma_broken_by_the_ratio_itself():
    z = np.log([0.5, 1.0, 2.0, 4.0])
    x = np.log(np.array([1.5, 3.0, 0.25]))
    scores = rmia.scores(x, z, gamma=1.0)
    beaten = np.array([2, 3, 0])  # 1.5 >= 0.5, 1; 3 >= 0.5, 1, 2; 0.25 beats none
    np.testing.assert_allclose(scores, (beaten + [tie_breaker(v) for v in x]) / 5, rtol=1e-12)
    # gamma = 2: x must be at least twice z. 1.5 beats 0.5; 3 beats 0.5 and 1.
    with_gamma = rmia.scores(x, z, gamma=2.0)
    np.testing.assert_allclose(with_gamma, (np.array([1, 2, 0]) + [tie_breaker(v) for v in x]) / 5, rtol=1e-12)


def test_equality_counts_as_beaten():
    score = rmia.scores(np.log([2.0]), np.log([1.0, 2.0, 4.0]), gamma=1.0)[0]
    assert score == pytest.approx((2 + tie_breaker(np.log(2))) / 4)


def test_ties_at_the_top_are_broken_and_the_ranking_is_otherwise_kept():
    rng = np.random.default_rng(1)
    z = rng.normal(size=50)
    x = np.r_[rng.normal(size=200), rng.uniform(5.0, 500.0, size=100)]  # the last 100 beat every z
    scores = rmia.scores(x, z, gamma=1.0)
    counts = np.searchsorted(np.sort(z), x, side="right")
    assert (counts[200:] == 50).all()
    # Without tie-breaking the top 100 would all score 1.0; now they are distinct and below 1.
    assert len(np.unique(scores[200:])) == 100 and scores.max() < 1.0 and scores.min() > 0.0
    # Records with different counts keep the count's order; equal counts are ordered by x: the
    # scores rank exactly as (count, x) does lexicographically.
    np.testing.assert_array_equal(rankdata(scores), rankdata(counts + (rankdata(x) / (len(x) + 1))))


def test_rmia_needs_population_samples():
    with pytest.raises(ValueError, match="at least one population sample"):
        rmia.scores(np.zeros(3), np.zeros(0), gamma=1.0)


def test_a_non_member_beats_a_uniform_share_of_its_peers():
    """x and z from one distribution (a non-member): the score is about uniform, so the 0.95 rule
    calls about 5% of them members."""
    rng = np.random.default_rng(2)
    scores = rmia.scores(rng.normal(size=20_000), rng.normal(size=10_000), gamma=1.0)
    assert np.mean(scores >= rmia.THRESHOLD) == pytest.approx(0.05, abs=0.01)
    assert np.mean(scores) == pytest.approx(0.5, abs=0.01)
