"""Who trains on what in a shadow-model attack (LIRA, RMIA): pure functions of sizes and a seed.

The population is every record the shadow (reference) models may train on, laid end to end:
the audited records (the target's members, then its non-members, in dataset order), then the
records of each population dataset in turn. Shadow model k trains on the records where row k of
`training_masks` is True. The query records, on which the attack compares the target with its
shadows, are the audited records and, for RMIA, the z samples drawn from the population datasets.

Every shadow model mirrors the target: it trains on `train_size` records (by default as many as
the target's members), or on every record there is when the population cannot supply that many.
- Online, every audited record is IN exactly half of the models and OUT of the other half: the
  models come in pairs, and each pair splits the audited records between its two models at
  random. Each model is then topped up with population-dataset records to `train_size`. When half
  the audited records already exceed `train_size`, a model trains on that half and no more.
- Offline, no audited record is in any model (every model is a reference for every audited
  record): each trains on `train_size` population-dataset records drawn at random, each model
  on its own draw, as privacy_meter draws its reference models' datasets.

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


def training_masks(population: Population, num_shadow: int, train_size: int, online: bool, seed: int) -> np.ndarray:
    """(num_shadow, population.size) bool: the records each shadow model trains on, as the module
    says. Online needs an even num_shadow."""
    if num_shadow < 1 or train_size < 0 or (online and num_shadow % 2):
        raise ValueError(f"need num_shadow >= 1 (even when online) and train_size >= 0, got {num_shadow} "
                         f"and {train_size}")
    rng = np.random.default_rng([seed, _MASK_STREAM])
    masks = np.zeros((num_shadow, population.size), dtype=bool)
    audited = population.num_audited
    if online:
        for pair in range(num_shadow // 2):
            order = rng.permutation(audited)
            masks[2 * pair, order[: (audited + 1) // 2]] = True
            masks[2 * pair + 1, order[(audited + 1) // 2 :]] = True
    others = np.arange(audited, population.size)
    for mask in masks:
        missing = max(train_size - int(mask.sum()), 0)
        mask[rng.choice(others, min(missing, len(others)), replace=False)] = True
    return masks


def z_samples(population: Population, masks: np.ndarray, num_population: int, seed: int) -> np.ndarray:
    """Sorted population indices of RMIA's z samples: `num_population` records (all of them when
    there are fewer) of the population datasets, never audited records, and never a record that
    every shadow model trained on (its Pr(z) offline needs a model that did not). Records in as
    many models as an audited record is (half of them online, none offline) come first, then the
    nearest to it, drawn at random among equals. Where there are enough, every z's Pr(z) is then
    estimated from as many models as an audited record's Pr(x), so that an audited non-member
    and a z are alike, as RMIA's threshold (beat 1 - NOMINAL_FPR of the z) assumes."""
    audited = population.num_audited
    in_counts = masks[:, audited:].sum(axis=0)
    candidates = np.flatnonzero(in_counts < len(masks))
    like_audited = masks[:, :audited].sum(axis=0).max(initial=0)
    draws = np.random.default_rng([seed, _Z_STREAM]).random(len(candidates))
    order = np.lexsort((draws, np.abs(in_counts[candidates] - like_audited)))
    return audited + np.sort(candidates[order[:num_population]])


def query_indices(population: Population, z: np.ndarray) -> np.ndarray:
    """Population indices of the query records: every audited record, then the z samples."""
    return np.concatenate([np.arange(population.num_audited), np.asarray(z, dtype=np.int64)])


def shadow_seed(seed: int, shadow_index: int) -> int:
    """The seed of shadow model `shadow_index` (its initial weights and batch order): distinct
    per index, the same whichever job trains it."""
    state = np.random.SeedSequence([seed, _SHADOW_SEED_STREAM, shadow_index]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # 63 bits, as a task seed
