"""Who trains on what in LIRA and RMIA: training masks that mirror the target's training-set size,
online (every audited record IN half the models) and offline (in none), z samples, query records
and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from privaudit.services.attack_worker.attacks.shadow_population import (
    Population,
    query_indices,
    shadow_seed,
    training_masks,
    z_samples,
)

POPULATION = Population(num_members=30, num_non_members=20, population_lengths=(40, 10))


def test_population_sizes():
    assert POPULATION.lengths == (30, 20, 40, 10)
    assert (POPULATION.num_audited, POPULATION.size) == (50, 100)
    assert Population(3, 4).size == 7


# ---------------------------------------------------------------- online


@pytest.mark.parametrize("num_shadow", [2, 4, 16, 64])
@pytest.mark.parametrize(("members", "non_members"), [(400, 400), (301, 250), (30, 20)])
def test_online_every_audited_record_is_in_exactly_half_the_models_each_of_train_size(num_shadow, members,
                                                                                        non_members):
    population = Population(members, non_members, (500, 300))
    masks = training_masks(population, num_shadow, train_size=members, online=True, seed=5)
    assert masks.shape == (num_shadow, population.size) and masks.dtype == bool
    audited = population.num_audited
    assert (masks[:, :audited].sum(axis=0) == num_shadow // 2).all()
    assert (masks.sum(axis=1) == members).all()  # topped up with population records to exactly train_size
    assert len({row.tobytes() for row in masks}) == num_shadow


def test_online_the_audited_records_are_split_at_random_between_the_models_of_a_pair():
    population = Population(500, 500, (1000,))
    masks = training_masks(population, 16, train_size=600, online=True, seed=5)
    audited = masks[:, :1000]
    assert (audited[0::2] ^ audited[1::2]).all()  # a pair's two models split the audited records
    assert (audited.sum(axis=1) == 500).all()
    # Models of different pairs share a record half the time: 250 of their 500, within 5 sd.
    shared = (audited[0] & audited[2]).sum()
    assert abs(shared - 250) < 5 * np.sqrt(1000 * 0.25 * 0.75)
    # The top-up comes from the population datasets, 100 records each, drawn apart per model.
    assert (masks[:, 1000:].sum(axis=1) == 100).all()
    assert len({row.tobytes() for row in masks[:, 1000:]}) == 16


def test_online_without_enough_population_the_models_train_on_what_there_is():
    population = Population(40, 20, (5,))  # half the audited is 30, + 5 population records < 40
    masks = training_masks(population, 4, train_size=40, online=True, seed=1)
    assert (masks[:, :60].sum(axis=0) == 2).all()
    assert masks[:, 60:].all()  # every population record, in every model
    assert (masks.sum(axis=1) == 35).all()


def test_online_with_more_audited_records_than_twice_train_size_each_model_takes_its_half():
    population = Population(100, 301, (500,))
    masks = training_masks(population, 4, train_size=100, online=True, seed=1)
    assert (masks[:, :401].sum(axis=0) == 2).all()
    assert sorted(masks.sum(axis=1).tolist()) == [200, 200, 201, 201]
    assert not masks[:, 401:].any()  # no room left for population records


def test_online_needs_an_even_number_of_models():
    with pytest.raises(ValueError, match="even when online"):
        training_masks(POPULATION, 3, train_size=30, online=True, seed=1)


# ---------------------------------------------------------------- offline


@pytest.mark.parametrize("num_shadow", [1, 3, 4, 16])
def test_offline_no_audited_record_is_in_any_model_and_each_trains_on_train_size_population_records(num_shadow):
    population = Population(400, 400, (500, 300))
    masks = training_masks(population, num_shadow, train_size=400, online=False, seed=5)
    assert not masks[:, :800].any()
    # So every model is a reference (OUT) for every audited record: num_shadow of them each.
    assert ((~masks[:, :800]).sum(axis=0) == num_shadow).all()
    assert (masks.sum(axis=1) == 400).all()
    assert len({row.tobytes() for row in masks}) == num_shadow


def test_offline_models_draw_their_records_independently():
    masks = training_masks(Population(10, 10, (2000,)), 16, train_size=1000, online=False, seed=5)
    # Each population record is in each model with probability 1/2, independently across models.
    counts = masks[:, 20:].sum(axis=0)
    assert abs(counts.mean() - 8) < 0.2 and abs(counts.var() - 4) < 0.6
    overlap = (masks[0, 20:] & masks[1, 20:]).sum()
    assert abs(overlap - 500) < 5 * np.sqrt(2000 * 0.25 * 0.75)


def test_offline_with_fewer_population_records_than_train_size_every_model_trains_on_all_of_them():
    masks = training_masks(Population(30, 20, (12, 3)), 4, train_size=30, online=False, seed=2)
    assert not masks[:, :50].any() and masks[:, 50:].all()


def test_masks_follow_from_their_arguments_and_the_seed_alone():
    for online in (True, False):
        first = training_masks(POPULATION, 8, 30, online, seed=3)
        assert np.array_equal(first, training_masks(POPULATION, 8, 30, online, seed=3))
        assert not np.array_equal(first, training_masks(POPULATION, 8, 30, online, seed=4))
        assert not np.array_equal(first, training_masks(POPULATION, 8, 29, online, seed=3))


# ---------------------------------------------------------------- z samples, query records, seeds


def test_z_samples_come_from_the_population_datasets_only_without_replacement():
    masks = training_masks(POPULATION, 4, 30, online=False, seed=9)
    z = z_samples(POPULATION, masks, 30, seed=9)
    assert len(z) == 30 and len(set(z.tolist())) == 30
    assert (z >= POPULATION.num_audited).all() and (z < POPULATION.size).all()
    assert (np.diff(z) > 0).all()
    assert np.array_equal(z, z_samples(POPULATION, masks, 30, seed=9))
    assert not np.array_equal(z, z_samples(POPULATION, masks, 30, seed=10))


def test_z_samples_skip_records_every_model_trained_on_and_are_capped_at_what_is_left():
    masks = np.zeros((3, POPULATION.size), dtype=bool)
    masks[:, 60:70] = True  # in every model: never a z sample
    masks[0, 70:80] = True  # in one model only: still a z sample
    expected = np.r_[np.arange(50, 60), np.arange(70, 100)]
    assert np.array_equal(z_samples(POPULATION, masks, 1000, seed=9), expected)
    assert len(z_samples(POPULATION, np.ones((3, POPULATION.size), dtype=bool), 5, seed=9)) == 0


def test_z_samples_are_first_the_records_in_as_many_models_as_an_audited_record():
    population = Population(10, 10, (2000,))
    offline = training_masks(population, 4, train_size=1000, online=False, seed=3)
    in_counts = offline[:, 20:].sum(axis=0)
    z = z_samples(population, offline, 100, seed=3)
    assert (offline[:, z].sum(axis=0) == 0).all()  # enough records no model trained on: only those
    more = z_samples(population, offline, (in_counts == 0).sum() + 10, seed=3)
    assert sorted(np.bincount(offline[:, more].sum(axis=0)).tolist()) == [10, (in_counts == 0).sum()]
    online = training_masks(population, 4, train_size=1000, online=True, seed=3)
    z = z_samples(population, online, 100, seed=3)
    assert (online[:, z].sum(axis=0) == 2).all()  # online, records in half of the models first


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
