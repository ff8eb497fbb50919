"""LiRA's maths against closed forms: the logit-scaled confidence, Gaussian fits, online and offline
scores, the fixed variance, averaging over views, and the views themselves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from privaudit.services.attack_worker.attacks import lira
from privaudit.services.attack_worker.attacks.augment import Mirror
from privaudit.services.attack_worker.attacks.base import NOMINAL_FPR
from privaudit.services.attack_worker.attacks.shadow_population import Population, training_masks

# Shadow models 0 and 1 trained on every record, 2 and 3 on none: hand-made, so fits are exact.
IN_MASK = np.array([[True] * 3, [True] * 3, [False] * 3, [False] * 3])
MU_IN, S_IN = np.array([2.0, 5.0, -1.0]), np.array([0.5, 2.0, 1.0])
MU_OUT, S_OUT = np.array([-1.0, 4.0, -3.0]), np.array([1.0, 0.5, 3.0])
TARGET = np.array([0.5, 4.5, -2.0])


def shadow_phi() -> np.ndarray:
    """(4 models, 3 records, 1 view): each group's values are mean +- sd, so its ML fit is exact."""
    return np.stack([MU_IN - S_IN, MU_IN + S_IN, MU_OUT - S_OUT, MU_OUT + S_OUT])[..., None]


def log_normal(x, mean, sd):
    return -0.5 * np.log(2 * np.pi) - np.log(sd) - (x - mean) ** 2 / (2 * sd**2)


def auc(members: np.ndarray, non_members: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(members)), np.zeros(len(non_members))], np.r_[members, non_members]))


# ---------------------------------------------------------------- phi


def test_phi_is_log_odds_of_the_true_label():
    for row, label in (([2.0, -1.0], 1), ([0.3, 0.1, -0.4], 0), ([0.3, 0.1, -0.4], 2)):
        p = np.exp(row) / np.exp(row).sum()
        expected = np.log(p[label]) - np.log(1 - p[label])
        assert lira.logit_scaled_confidence(np.array([row]), np.array([label]))[0] == pytest.approx(expected, rel=1e-12)
    # Two classes: exactly the difference of the logits.
    assert lira.logit_scaled_confidence(np.array([[2.0, -1.0]]), np.array([0]))[0] == 3.0


def test_phi_is_exact_and_finite_at_huge_logits():
    logits = np.array([[1e4, -1e4], [1e4, -1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is harmless
        two = lira.logit_scaled_confidence(logits, np.array([0, 1]))
        ten = lira.logit_scaled_confidence(np.where(np.eye(10, dtype=bool)[[3]], 1e4, -1e4), np.array([3]))
        tie = lira.logit_scaled_confidence(np.array([[1e4, 1e4, -1e4]]), np.array([0]))
    np.testing.assert_allclose(two, [2e4, -2e4], rtol=1e-15)
    assert ten[0] == pytest.approx(2e4 - np.log(9), rel=1e-15)
    assert tie[0] == pytest.approx(0.0, abs=1e-9)  # p = 1/2
    assert np.isfinite(np.r_[two, ten, tie]).all()


def test_phi_takes_leading_axes_of_models_and_views():
    logits = np.random.default_rng(0).normal(size=(4, 2, 5, 3))
    labels = np.array([0, 2, 1, 1, 0])
    phi = lira.logit_scaled_confidence(logits, labels)
    assert phi.shape == (4, 2, 5)
    assert phi[3, 1, 2] == pytest.approx(lira.logit_scaled_confidence(logits[3, 1, 2:3], labels[2:3])[0])


def test_phi_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        lira.logit_scaled_confidence(np.zeros((2, 1)), np.array([0, 0]))


# ---------------------------------------------------------------- fits and scores


def test_fits_are_maximum_likelihood_per_record():
    fitted = lira.fit(shadow_phi(), IN_MASK, "IN")
    np.testing.assert_allclose(fitted.mean[:, 0], MU_IN)
    np.testing.assert_allclose(fitted.variance[:, 0], S_IN**2)
    assert fitted.count.tolist() == [2, 2, 2]


def test_a_record_outside_every_group_is_refused():
    mask = IN_MASK.copy()
    mask[:, 1] = True
    with pytest.raises(ValueError, match="record 1 is OUT of no shadow model"):
        lira.scores(TARGET[:, None], shadow_phi(), mask, online=True, fixed_variance=False)


def test_online_score_is_the_log_likelihood_ratio_of_the_fitted_gaussians():
    scores = lira.scores(TARGET[:, None], shadow_phi(), IN_MASK, online=True, fixed_variance=False)
    expected = log_normal(TARGET, MU_IN, S_IN) - log_normal(TARGET, MU_OUT, S_OUT)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_online_fixed_variance_shares_one_pooled_variance_and_is_linear_in_phi():
    scores = lira.scores(TARGET[:, None], shadow_phi(), IN_MASK, online=True, fixed_variance=True)
    pooled = np.mean((S_IN**2 + S_OUT**2) / 2)  # every group has two values at +-sd
    expected = ((TARGET - MU_OUT) ** 2 - (TARGET - MU_IN) ** 2) / (2 * pooled)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_offline_score_is_minus_the_log_one_sided_p_value_against_out():
    at_mean, at_5_percent = MU_OUT, MU_OUT + 1.6448536269514722 * S_OUT
    for target, expected in ((at_mean, np.log(2.0)), (at_5_percent, -np.log(0.05))):
        scores = lira.scores(target[:, None], shadow_phi(), IN_MASK, online=False, fixed_variance=False)
        np.testing.assert_allclose(scores, expected, rtol=1e-9)
    assert lira.threshold(online=False) == pytest.approx(-np.log(NOMINAL_FPR))
    assert lira.threshold(online=True) == 0.0
    assert "p-value 0.05 on the OUT Gaussian" in lira.threshold_source(online=False, num_shadow=4)
    assert "log-likelihood ratio 0" in lira.threshold_source(online=True, num_shadow=4)


def test_offline_fixed_variance_pools_the_out_groups_only():
    pooled = np.mean(S_OUT**2)
    target = MU_OUT + 1.6448536269514722 * np.sqrt(pooled)
    scores = lira.scores(target[:, None], shadow_phi(), IN_MASK, online=False, fixed_variance=True)
    np.testing.assert_allclose(scores, -np.log(0.05), rtol=1e-9)


def test_offline_scores_do_not_saturate_far_above_the_out_fit():
    far = MU_OUT + np.array([40.0, 60.0, 80.0]) * S_OUT
    scores = lira.scores(far[:, None], shadow_phi(), IN_MASK, online=False, fixed_variance=False)
    assert np.isfinite(scores).all() and scores[0] < scores[1] < scores[2]


def test_views_are_fitted_apart_and_their_scores_averaged():
    second = shadow_phi() * 2.0 + 1.0
    both = np.concatenate([shadow_phi(), second], axis=2)
    targets = np.stack([TARGET, TARGET * 2.0 + 0.5], axis=1)
    for online in (True, False):
        averaged = lira.scores(targets, both, IN_MASK, online, fixed_variance=False)
        one = lira.scores(targets[:, :1], shadow_phi(), IN_MASK, online, fixed_variance=False)
        two = lira.scores(targets[:, 1:], second, IN_MASK, online, fixed_variance=False)
        np.testing.assert_allclose(averaged, (one + two) / 2, rtol=1e-12)


def test_identical_in_and_out_fits_score_every_record_zero():
    same = np.stack([MU_OUT - S_OUT, MU_OUT + S_OUT, MU_OUT - S_OUT, MU_OUT + S_OUT])[..., None]
    for fixed_variance in (False, True):
        scores = lira.scores(TARGET[:, None], same, IN_MASK, online=True, fixed_variance=fixed_variance)
        np.testing.assert_allclose(scores, 0.0, atol=1e-12)


def test_a_model_that_ignores_its_input_gives_finite_uninformative_scores():
    """Every shadow and the target agree exactly: zero variance is floored, nothing is NaN."""
    constant = np.full((4, 3, 1), 1.25)
    online = lira.scores(np.full((3, 1), 1.25), constant, IN_MASK, online=True, fixed_variance=False)
    offline = lira.scores(np.full((3, 1), 1.25), constant, IN_MASK, online=False, fixed_variance=True)
    np.testing.assert_allclose(online, 0.0)
    np.testing.assert_allclose(offline, np.log(2.0))


def synthetic(separation: float, records: int = 400, num_shadow: int = 16, seed: int = 0):
    """Per-record phi: each record has its own level (spread far wider than the noise), IN models
    sit `separation` above it, OUT models below, with noise; the target sits exactly at its
    record's IN centre for the members (the first half of the records), at the OUT centre else."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0.0, 6.0, size=records)
    in_mask = training_masks(Population(records, 0), num_shadow, records // 2, online=True, seed=seed)
    noise = rng.normal(0.0, 0.5, size=(num_shadow, records))
    shadows = (level + np.where(in_mask, separation, -separation) + noise)[..., None]
    member = np.arange(records) < records // 2
    target = level + np.where(member, separation, -separation)
    return target[:, None], shadows, in_mask, member


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("fixed_variance", [True, False])
def test_separable_in_and_out_give_auc_1_where_one_global_threshold_cannot(online, fixed_variance):
    target, shadows, in_mask, member = synthetic(separation=3.0)
    scores = lira.scores(target, shadows, in_mask, online, fixed_variance)
    assert auc(scores[member], scores[~member]) == 1.0
    # The raw confidence, thresholded alike for every record (what LOSS does), is far from it.
    assert auc(target[member, 0], target[~member, 0]) < 0.85


@pytest.mark.parametrize("online", [True, False])
def test_in_and_out_from_one_distribution_give_auc_one_half(online):
    target, shadows, in_mask, member = synthetic(separation=0.0, records=4000)
    scores = lira.scores(target, shadows, in_mask, online, fixed_variance=True)
    assert auc(scores[member], scores[~member]) == pytest.approx(0.5, abs=0.03)


def test_with_many_shadow_models_the_online_score_is_the_exact_log_likelihood_ratio_of_the_true_gaussians():
    """Shadow phi drawn from known Gaussians, IN N(1, 0.5^2) and OUT N(-1, 0.5^2) for every record:
    with 256 shadow models the fitted ratio converges to the true one, and its AUC on targets drawn
    from the same Gaussians to the analytic Phi(2 / (0.5 sqrt 2)) of two equal-variance normals."""
    rng = np.random.default_rng(4)
    records, num_shadow = 2000, 256
    in_mask = training_masks(Population(records, 0), num_shadow, records // 2, online=True, seed=4)
    shadows = np.where(in_mask, 1.0, -1.0) + 0.5 * rng.standard_normal((num_shadow, records))
    member = np.arange(records) < records // 2
    target = np.where(member, 1.0, -1.0) + 0.5 * rng.standard_normal(records)
    exact = norm.logpdf(target, 1.0, 0.5) - norm.logpdf(target, -1.0, 0.5)
    # Each fitted mean is off by about 0.5 / sqrt(128): a few percent of the ratio on average, more
    # when every record also gets its own variance.
    for fixed_variance, share in ((True, 0.05), (False, 0.15)):
        scores = lira.scores(target[:, None], shadows[..., None], in_mask, online=True, fixed_variance=fixed_variance)
        assert np.mean(np.abs(scores - exact)) < share * np.mean(np.abs(exact))
        assert np.corrcoef(scores, exact)[0, 1] > 0.99
    assert auc(exact[member], exact[~member]) == pytest.approx(norm.cdf(2 / (0.5 * np.sqrt(2))), abs=0.005)


# ---------------------------------------------------------------- views


def test_the_augmented_views_are_the_record_and_its_mirror_as_carlini_et_al_query():
    # How the runtime mirrors an image, in every layout: tests/test_augment.py.
    assert lira.views(False) == (lira.IDENTITY,) == (None,)
    assert lira.views(True) == (None, Mirror())
