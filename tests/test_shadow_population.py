"""Who trains on what in LIRA and RMIA: balanced membership masks, z samples, query records, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from services.attack_worker.attacks.shadow_population import (
    Population,
    membership_masks,
    query_indices,
    shadow_seed,
    z_samples,
)

POPULATION = Population(num_members=30, num_non_members=20, population_lengths=(40, 10))


def test_population_sizes():
    assert POPULATION.lengths == (30, 20, 40, 10)
    assert (POPULATION.num_audited, POPULATION.size) == (50, 100)
    assert Population(3, 4).size == 7


@pytest.mark.parametrize("num_shadow", [2, 4, 16, 64])
def test_every_record_is_in_exactly_half_the_shadow_models(num_shadow):
    masks = membership_masks(num_shadow, 1000, seed=5)
    assert masks.shape == (num_shadow, 1000) and masks.dtype == bool
    assert (masks.sum(axis=0) == num_shadow // 2).all()


def test_each_shadow_model_trains_on_about_half_the_records_and_no_two_alike():
    masks = membership_masks(16, 2000, seed=5)
    # Each model's share is a sum of 2000 fair coin flips: within 5 standard deviations of 1000.
    assert np.all(np.abs(masks.sum(axis=1) - 1000) < 5 * np.sqrt(2000 * 0.25))
    assert len({row.tobytes() for row in masks}) == 16
    # Two models share a record a quarter of the time in expectation (slightly less: 7/15 x 1/2).
    overlap = (masks[0] & masks[1]).mean()
    assert 0.18 < overlap < 0.29


def test_an_odd_number_puts_every_record_in_the_smaller_half():
    masks = membership_masks(5, 300, seed=1)
    assert (masks.sum(axis=0) == 2).all()
    assert (membership_masks(1, 10, seed=1).sum() == 0)


def test_masks_follow_from_the_seed_alone():
    assert np.array_equal(membership_masks(8, 500, seed=3), membership_masks(8, 500, seed=3))
    assert not np.array_equal(membership_masks(8, 500, seed=3), membership_masks(8, 500, seed=4))


def test_z_samples_come_from_the_population_datasets_only_without_replacement():
    z = z_samples(POPULATION, 30, seed=9)
    assert len(z) == 30 and len(set(z.tolist())) == 30
    assert (z >= POPULATION.num_audited).all() and (z < POPULATION.size).all()
    assert (np.diff(z) > 0).all()
    assert np.array_equal(z, z_samples(POPULATION, 30, seed=9))
    assert not np.array_equal(z, z_samples(POPULATION, 30, seed=10))


def test_z_samples_are_capped_at_the_population_datasets_size():
    assert np.array_equal(z_samples(POPULATION, 1000, seed=9), np.arange(50, 100))


def test_query_records_are_the_audited_records_then_z():
    z = np.array([60, 75, 99])
    assert query_indices(POPULATION, z).tolist() == [*range(50), 60, 75, 99]
    assert query_indices(POPULATION, np.array([], np.int64)).tolist() == list(range(50))


def test_shadow_seeds_are_distinct_per_index_and_attack_seed_and_reproducible():
    seeds = [shadow_seed(7, index) for index in range(256)]
    assert len(set(seeds)) == 256
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert seeds == [shadow_seed(7, index) for index in range(256)]
    assert shadow_seed(8, 0) != shadow_seed(7, 0)
