"""The attack classifier separates what is separable (tiny differences included), is class-balanced,
seeded, scaled on its training features only, and says whether its training settled."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from privaudit.services.attack_worker.attacks.attack_classifier import (
    CONVERGENCE_PATIENCE,
    CONVERGENCE_TOLERANCE,
    HIDDEN_UNITS,
    MEMBER,
    NON_MEMBER,
    UNSTABLE_GAP,
    AttackClassifier,
    Convergence,
    fit,
)

SEED = 7


def blob(rng: np.random.Generator, n: int, centre: float) -> np.ndarray:
    return centre + rng.standard_normal((n, 3)) * 0.3


def test_separates_an_obviously_separable_case():
    rng = np.random.default_rng(0)
    classifier = fit(blob(rng, 100, 2.0), blob(rng, 100, -2.0), lr=0.01, epochs=100, batch_size=32, seed=SEED)

    assert (classifier.member_probability(blob(rng, 50, 2.0)) > 0.9).all()
    assert (classifier.member_probability(blob(rng, 50, -2.0)) < 0.1).all()


def test_is_balanced_on_a_5_to_1_member_heavy_set():
    # Features that say nothing about membership, five members per non-member: a classifier that
    # learnt the class ratio would answer P(member) = 0.83 everywhere; a balanced one, 0.5.
    rng = np.random.default_rng(1)
    classifier = fit(blob(rng, 500, 0.0), blob(rng, 100, 0.0), lr=0.01, epochs=50, batch_size=64, seed=SEED)

    probability = classifier.member_probability(blob(rng, 1000, 0.0))

    assert abs(probability.mean() - 0.5) < 0.05
    assert 0.25 < (probability >= 0.5).mean() < 0.75


def test_same_seed_same_classifier_and_the_seed_matters():
    rng = np.random.default_rng(2)
    members, non_members, queries = blob(rng, 60, 0.3), blob(rng, 60, -0.3), blob(rng, 20, 0.0)

    def scores(seed: int) -> np.ndarray:
        return fit(members, non_members, lr=0.01, epochs=20, batch_size=16, seed=seed).member_probability(queries)

    np.testing.assert_array_equal(scores(SEED), scores(SEED))
    assert not np.array_equal(scores(SEED), scores(SEED + 1))


def test_accepts_seeds_beyond_32_bits():
    rng = np.random.default_rng(3)
    fit(blob(rng, 10, 1.0), blob(rng, 10, -1.0), lr=0.01, epochs=2, batch_size=8, seed=2**63 - 1)


def test_needs_both_classes():
    with pytest.raises(ValueError, match="at least one member and one non-member"):
        fit(np.zeros((5, 3)), np.zeros((0, 3)), lr=0.01, epochs=2, batch_size=8, seed=SEED)


# ------------------------------------------------------------------ scaling


def test_separates_features_that_barely_vary():
    # Posteriors within 1e-6 of 1 (members) and 1e-4 of 1 (non-members), as an overfit model gives:
    # unscaled, these differences are invisible to the network; standardised, they are its input.
    rng = np.random.default_rng(4)

    def near_one(n: int, gap: float) -> np.ndarray:
        return 1 - gap * rng.uniform(0.5, 1.5, (n, 1))

    classifier = fit(near_one(200, 1e-6), near_one(200, 1e-4), lr=0.01, epochs=200, batch_size=32, seed=SEED)

    members, non_members = classifier.member_probability(near_one(100, 1e-6)), classifier.member_probability(
        near_one(100, 1e-4))
    assert members.min() > 0.9 and non_members.max() < 0.1


def test_the_scaler_is_fitted_on_the_training_features_and_never_refitted():
    rng = np.random.default_rng(5)
    members, non_members = blob(rng, 80, 10.0), blob(rng, 40, 4.0)
    classifier = fit(members, non_members, lr=0.01, epochs=50, batch_size=16, seed=SEED)
    training = np.concatenate([members, non_members])
    np.testing.assert_allclose(classifier.mean, training.mean(axis=0))
    np.testing.assert_allclose(classifier.scale, training.std(axis=0))

    classifier.member_probability(blob(rng, 30, 100.0))  # far-off queries do not move the scaler

    np.testing.assert_allclose(classifier.mean, training.mean(axis=0))


def test_member_probability_is_scikit_learns_predict_proba():
    rng = np.random.default_rng(9)
    features = np.concatenate([blob(rng, 40, 1.0), blob(rng, 30, -1.0)])
    labels = np.array([MEMBER] * 40 + [NON_MEMBER] * 30)
    scaler = StandardScaler().fit(features)
    mlp = MLPClassifier(hidden_layer_sizes=(HIDDEN_UNITS,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(scaler.transform(features), labels)
    classifier = AttackClassifier.fitted(scaler, mlp, Convergence.SETTLED)
    queries = blob(rng, 25, 0.0) * 5

    expected = mlp.predict_proba(scaler.transform(queries))[:, list(mlp.classes_).index(MEMBER)]
    np.testing.assert_allclose(classifier.member_probability(queries), expected, rtol=1e-12, atol=1e-15)
    assert classifier.epochs_run == mlp.n_iter_


# ------------------------------------------------------------------ convergence


def test_enough_epochs_settle_before_they_run_out():
    rng = np.random.default_rng(6)
    classifier = fit(blob(rng, 100, 0.3), blob(rng, 100, -0.3), lr=0.01, epochs=1000, batch_size=32, seed=SEED)

    assert classifier.convergence is Convergence.SETTLED
    assert classifier.epochs_run < 1000
    curve = classifier.loss_curve
    assert len(curve) == classifier.epochs_run
    # scikit-learn's rule: the last CONVERGENCE_PATIENCE epochs did not beat the best before them by tol.
    best_before = min(curve[: -CONVERGENCE_PATIENCE])
    assert min(curve[-CONVERGENCE_PATIENCE:]) > best_before - CONVERGENCE_TOLERANCE


def test_too_few_epochs_are_reported_as_still_falling():
    rng = np.random.default_rng(6)
    classifier = fit(blob(rng, 100, 0.3), blob(rng, 100, -0.3), lr=0.01, epochs=3, batch_size=32, seed=SEED)

    assert classifier.convergence is Convergence.STILL_FALLING
    assert classifier.epochs_run == 3
    assert classifier.loss_curve[-1] < classifier.loss_curve[0]


def test_a_learning_rate_too_large_is_reported_as_unstable():
    rng = np.random.default_rng(6)
    classifier = fit(blob(rng, 100, 0.3), blob(rng, 100, -0.3), lr=10.0, epochs=200, batch_size=32, seed=SEED)

    assert classifier.convergence is Convergence.UNSTABLE
    assert classifier.loss_curve[-1] > min(classifier.loss_curve) + UNSTABLE_GAP
