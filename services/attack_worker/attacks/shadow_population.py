"""Who trains on what in a shadow-model attack (LIRA, RMIA): pure functions of sizes and a seed.

The population is every record the shadow (reference) models may train on, laid end to end:
the audited records (the target's members, then its non-members, in dataset order), then the
records of each population dataset in turn. Shadow model k trains on the records where row k of
`membership_masks` is True. The query records, on which the attack compares the target with its
shadows, are the audited records and, for RMIA, the z samples drawn from the population datasets.

Everything here follows from the attack's seed alone, so each job of a distributed attack (one
per shadow model, then the scoring) computes the same masks and samples on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Independent random streams of one attack seed.
_MASK_STREAM, _Z_STREAM, _SHADOW_SEED_STREAM = 1, 2, 3


@dataclass(frozen=True)
class Population:
    """The sizes of the population's parts, in population order."""

    num_members: int
    num_non_members: int
    population_lengths: tuple[int, ...] = ()

    @property
    def lengths(self) -> tuple[int, ...]:
        """Every part's length: members, non-members, then each population dataset."""
        return self.num_members, self.num_non_members, *self.population_lengths

    @property
    def num_audited(self) -> int:
        return self.num_members + self.num_non_members

    @property
    def size(self) -> int:
        return self.num_audited + sum(self.population_lengths)


def membership_masks(num_shadow: int, num_records: int, seed: int) -> np.ndarray:
    """(num_shadow, num_records) bool: which records each shadow model trains on. Every record
    is IN exactly num_shadow // 2 shadow models: those with the lowest of its num_shadow draws
    of a seeded uniform matrix (Carlini et al.'s construction), so each model gets about half."""
    if num_shadow < 1 or num_records < 0:
        raise ValueError(f"need num_shadow >= 1 and num_records >= 0, got {num_shadow} and {num_records}")
    draws = np.random.default_rng([seed, _MASK_STREAM]).random((num_shadow, num_records))
    ranks = draws.argsort(axis=0).argsort(axis=0)
    return ranks < num_shadow // 2


def z_samples(population: Population, num_population: int, seed: int) -> np.ndarray:
    """Sorted population indices of RMIA's z samples: `num_population` records (all of them
    when there are fewer) drawn without replacement from the population datasets, never from
    the audited records."""
    available = population.size - population.num_audited
    drawn = np.random.default_rng([seed, _Z_STREAM]).choice(available, min(num_population, available),
                                                            replace=False)
    return population.num_audited + np.sort(drawn)


def query_indices(population: Population, z: np.ndarray) -> np.ndarray:
    """Population indices of the query records: every audited record, then the z samples."""
    return np.concatenate([np.arange(population.num_audited), np.asarray(z, dtype=np.int64)])


def shadow_seed(seed: int, shadow_index: int) -> int:
    """The seed of shadow model `shadow_index` (its initial weights and batch order): distinct
    per index, the same whichever job trains it."""
    state = np.random.SeedSequence([seed, _SHADOW_SEED_STREAM, shadow_index]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # 63 bits, as a task seed
