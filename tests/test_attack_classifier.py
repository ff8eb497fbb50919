"""The attack classifier separates what is separable, is class-balanced and is seeded."""

import numpy as np
import pytest

from services.attack_worker.attacks.attack_classifier import fit

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
