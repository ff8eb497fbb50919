"""LIRA and RMIA on a runtime: the population, one shadow model's outputs, and the scoring.

Both attacks train K shadow (reference) models of the target's architecture, each on its half
of the population (see `shadow_population`), and compare the target's outputs on the query
records with theirs. A distributed attack runs `train_shadow` in one job per shadow model and
`score` in a last job; `run` does the same one after the other in a single job. The maths are
in `lira` and `rmia`.

A shadow model's outputs are its logits on every population record, one array per query view
(the record itself, and for LIRA with `augment` its augmented copies): (views, N, classes).
The attacks need only the query records' rows; keeping all of them lets a shadow model trained
for one attack serve another with the same population (LIRA's and RMIA's query records differ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from privaudit.v1 import results_pb2
from services.attack_worker.attacks import augment, lira, rmia
from services.attack_worker.attacks.base import Runtime, Scores
from services.attack_worker.attacks.shadow_population import (
    Population,
    membership_masks,
    query_indices,
    shadow_seed,
    z_samples,
)
from services.common.errors import TaskError
from services.common.task_spec import LiraArgs, RmiaArgs

ShadowArgs = LiraArgs | RmiaArgs


@dataclass(frozen=True)
class Setup:
    """What every job of one LIRA or RMIA attack agrees on, from its args and seed alone."""

    args: ShadowArgs
    seed: int  # the attack's seed: its `seed` argument, else the job's
    target: Any  # the trained target model
    datasets: tuple[Any, ...]  # the target's members, its non-members, the population datasets
    population: Population
    masks: np.ndarray  # (K, N) bool: the records each shadow model trains on
    query: np.ndarray  # (Q,) population indices of the query records
    views: tuple[lira.View, ...]

    @property
    def num_shadow(self) -> int:
        return self.args.num_shadow

    @property
    def query_masks(self) -> np.ndarray:
        """(K, Q) bool: which query records each shadow model trains on."""
        return self.masks[:, self.query]


# (setup, runtime, shadow index) -> the shadow model's outputs (views, N, classes).
ShadowTrainer = Callable[[Setup, Runtime, int], np.ndarray]


def load(args: ShadowArgs, rt: Runtime) -> Setup:
    """Loads the target model (so that every job checks it) and the population's datasets, and
    draws the masks and z samples."""
    seed = rt.seed if args.seed is None else args.seed
    with rt.stage(results_pb2.STAGE_LOAD):
        target = rt.load_model("target_model", args.target_model)
        datasets = tuple(rt.load_dataset(field, path) for field, path in population_folders(args))
        if isinstance(args, LiraArgs) and (classes := rt.num_classes(target, datasets[0])) < 2:
            raise TaskError.at("target_model", f"has {classes} output; LIRA's confidence log p - log(1 - p) "
                                               "needs a model with at least 2 classes")
    population = Population(len(datasets[0]), len(datasets[1]), tuple(len(d) for d in datasets[2:]))
    z = z_samples(population, args.num_population, seed) if isinstance(args, RmiaArgs) else np.array([], np.int64)
    return Setup(args=args, seed=seed, target=target, datasets=datasets, population=population,
                 masks=membership_masks(args.num_shadow, population.size, seed),
                 query=query_indices(population, z),
                 views=lira.views(args.augment) if isinstance(args, LiraArgs) else (lira.IDENTITY,))


def population_folders(args: ShadowArgs) -> list[tuple[str, str]]:
    """(task field, folder) of the population's datasets, in population order."""
    return [("target_datasets.members", args.target_datasets.members),
            ("target_datasets.non_members", args.target_datasets.non_members),
            *((f"population_datasets[{i}]", path) for i, path in enumerate(args.population_datasets))]


def train_shadow(setup: Setup, rt: Runtime, index: int) -> np.ndarray:
    """Shadow model `index`, trained on its half of the population from its own seed, and its
    logits (views, N, classes) on every population record. A target architecture without
    weights (a fixed function) is its own shadow: nothing to train."""
    args, seed = setup.args, shadow_seed(setup.seed, index)
    with rt.stage(results_pb2.STAGE_TRAIN_SHADOW):
        model = rt.load_model("target_model", args.target_model, trained=False, seed=seed)
        for dataset in setup.datasets:  # a sample or label the architecture cannot take fails here, by field
            rt.num_classes(model, dataset)
        if rt.trainable(model):
            training = rt.records(setup.datasets, np.flatnonzero(setup.masks[index]), "its training records")
            rt.train(model, training, args.epochs, args.lr, args.batch_size, seed=seed)
        return _query(rt, model, setup, np.arange(setup.population.size), "the population")[0]


def score(setup: Setup, rt: Runtime, shadow_logits: np.ndarray, shadow_in: np.ndarray) -> Scores:
    """Scores the audited records from the shadow models' logits on the query records
    (K, views, Q, classes) and which query records each trained on (K, Q)."""
    args, population = setup.args, setup.population
    with rt.stage(results_pb2.STAGE_PREDICT):
        target_logits, labels = _query(rt, setup.target, setup, setup.query, "the query records")
    with rt.stage(results_pb2.STAGE_SCORE):
        if isinstance(args, LiraArgs):
            target_phi = lira.logit_scaled_confidence(target_logits, labels).T  # (Q, views)
            shadow_phi = lira.logit_scaled_confidence(shadow_logits, labels).transpose(0, 2, 1)  # (K, Q, views)
            fixed_variance = args.num_shadow < 64 if args.fixed_variance is None else args.fixed_variance
            values = lira.scores(target_phi, shadow_phi, shadow_in, args.online, fixed_variance)
            threshold = lira.threshold(args.online)
        else:
            ratios = rmia.log_ratios(target_logits[0], shadow_logits[:, 0], shadow_in, labels, args.online, args.a)
            values = rmia.scores(ratios[: population.num_audited], ratios[population.num_audited :], args.gamma)
            threshold = rmia.THRESHOLD
    return Scores(members=values[: population.num_members],
                  non_members=values[population.num_members : population.num_audited], threshold=threshold)


def run(args: ShadowArgs, rt: Runtime, shadow: ShadowTrainer = train_shadow) -> Scores:
    """The whole attack in one job: every shadow model in turn (from `shadow`), then the score."""
    setup = load(args, rt)
    logits = []
    for index in range(setup.num_shadow):
        with rt.labelled(f"shadow {index + 1}/{setup.num_shadow}"):
            logits.append(shadow(setup, rt, index)[:, setup.query])
    return score(setup, rt, np.stack(logits), setup.query_masks)


def _query(rt: Runtime, model: Any, setup: Setup, indices: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s logits on population records `indices`, one array per view (views, n, classes),
    and the records' labels (n,)."""
    try:
        outputs = [rt.predict(model, rt.records(setup.datasets, indices, name, view), setup.args.batch_size)
                   for view in setup.views]
    except augment.LayoutError as exc:
        raise TaskError.at("augment", str(exc)) from None
    return np.stack([o.logits for o in outputs]), outputs[0].labels
