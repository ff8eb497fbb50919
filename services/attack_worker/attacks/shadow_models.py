"""LIRA and RMIA on a runtime, in the order a job runs them: plan the population and who trains
on what (`load`), train one shadow model (`train_shadow`), reduce each shadow model's outputs to
the one statistic its attack needs (`shadow_statistic`), and score the target (`score`).

Both attacks train K shadow (reference) models of the target's architecture, each on as many
records as the target's training set (see `shadow_population` for which), and compare the
target's outputs on the query records with theirs. Where the shadow models are trained and kept
(one job or many, a cache or not) is `shadow_jobs`'s business; the maths are in `lira` and `rmia`.

A shadow model's outputs are its logits on every population record, one array per query view
(the record itself, and for LIRA with `augment` its augmented copies): (views, N, classes).
The attacks need only the query records' rows; keeping all of them lets a shadow model trained
for one attack serve another with the same population (LIRA's and RMIA's query records differ).
The score needs of each shadow model only its statistic on the query records (views, Q): LIRA's
logit-scaled confidence, RMIA's true-label log probability; a job holds K of those, not K
models' logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from privaudit.services.attack_worker.attacks import augment, lira, rmia
from privaudit.services.attack_worker.attacks.base import Runtime, Scores
from privaudit.services.attack_worker.attacks.loss import true_label_log_probability
from privaudit.services.attack_worker.attacks.shadow_population import (
    Population,
    query_indices,
    shadow_seed,
    training_masks,
    z_samples,
)
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import LiraArgs, RmiaArgs
from privaudit.v1 import results_pb2

ShadowArgs = LiraArgs | RmiaArgs


@dataclass(frozen=True)
class Setup:
    """What every job of one LIRA or RMIA attack agrees on, from its args and seed alone."""

    args: ShadowArgs
    seed: int  # the attack's seed: its `seed` argument, else the job's
    target: Any  # the trained target model
    datasets: tuple[Any, ...]  # the target's members, its non-members, the population datasets
    population: Population
    train_size: int  # records each shadow model should train on: shadow_train_size, else the member count
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


@dataclass(frozen=True)
class TargetOutputs:
    """The target's logits on the query records (views, Q, classes) and the records' labels (Q,)."""

    logits: np.ndarray
    labels: np.ndarray


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
    train_size = population.num_members if args.shadow_train_size is None else args.shadow_train_size
    masks = training_masks(population, args.num_shadow, train_size, args.online, seed)
    z = np.array([], np.int64)
    if isinstance(args, RmiaArgs):
        z = z_samples(population, masks, args.num_population, seed)
        if not len(z):
            raise TaskError.at("population_datasets", f"leave no population sample to compare with: each of "
                               f"their {population.size - population.num_audited} records is in every reference "
                               "model's training set; give more population data, or a smaller shadow_train_size "
                               f"(now {train_size})")
        z_in = masks[:, z]
        if not args.online and args.a is None and all(rmia.stand_in_records(z_in, k) is None
                                                      for k in range(args.num_shadow)):
            raise TaskError.at("a", f"cannot be chosen on the reference models: no reference model has both "
                                    f"members and non-members among the {len(z)} population samples z to be "
                                    "attacked on; set a (0 to 1), or raise num_population")
    return Setup(args=args, seed=seed, target=target, datasets=datasets, population=population,
                 train_size=train_size, masks=masks, query=query_indices(population, z),
                 views=lira.views(args.augment) if isinstance(args, LiraArgs) else (lira.IDENTITY,))


def population_folders(args: ShadowArgs) -> list[tuple[str, str]]:
    """(task field, folder) of the population's datasets, in population order."""
    return [("target_datasets.members", args.target_datasets.members),
            ("target_datasets.non_members", args.target_datasets.non_members),
            *((f"population_datasets[{i}]", path) for i, path in enumerate(args.population_datasets))]


def train_shadow(setup: Setup, rt: Runtime, index: int) -> np.ndarray:
    """Shadow model `index`, trained on its records of the population from its own seed, and its
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


def query_target(setup: Setup, rt: Runtime) -> TargetOutputs:
    """The target's outputs on the query records, every view."""
    with rt.stage(results_pb2.STAGE_PREDICT):
        return TargetOutputs(*_query(rt, setup.target, setup, setup.query, "the query records"))


def shadow_statistic(setup: Setup, query_logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """What the attack needs of one shadow model, from its logits on the query records (views, Q,
    classes) and their labels (Q,): (views, Q) float64, LIRA's logit-scaled confidence per view,
    RMIA's true-label log probability (its one view)."""
    if isinstance(setup.args, LiraArgs):
        return lira.logit_scaled_confidence(query_logits, labels)
    return true_label_log_probability(query_logits[0], labels)[None]


def score(setup: Setup, rt: Runtime, target: TargetOutputs, shadow_statistics: np.ndarray) -> Scores:
    """Scores the audited records from the target's outputs and the shadow models' statistics
    (K, views, Q), in shadow index order (`shadow_statistic`)."""
    args, population, labels = setup.args, setup.population, target.labels
    with rt.stage(results_pb2.STAGE_SCORE):
        if isinstance(args, LiraArgs):
            target_phi = lira.logit_scaled_confidence(target.logits, labels).T  # (Q, views)
            shadow_phi = shadow_statistics.transpose(0, 2, 1)  # (K, Q, views)
            fixed_variance = args.num_shadow < 64 if args.fixed_variance is None else args.fixed_variance
            values = lira.scores(target_phi, shadow_phi, setup.query_masks, args.online, fixed_variance)
            threshold, source = lira.threshold(args.online), lira.threshold_source(args.online, args.num_shadow)
        else:
            target_log_p = true_label_log_probability(target.logits[0], labels)
            values, source = _rmia_scores(args, population, target_log_p, shadow_statistics[:, 0], setup.query_masks,
                                          len(labels))
            threshold = rmia.THRESHOLD
    members, audited = population.num_members, population.num_audited
    return Scores(members=values[:members], non_members=values[members:audited], threshold=threshold,
                  threshold_source=source, member_labels=labels[:members], non_member_labels=labels[members:audited],
                  warnings=size_warnings(setup))


def _rmia_scores(args: RmiaArgs, population: Population, target_log_p: np.ndarray, reference_log_p: np.ndarray,
                 reference_in: np.ndarray, num_queries: int) -> tuple[np.ndarray, str]:
    """RMIA's scores of every query record (the audited ones, then the z samples) and its
    threshold's source, from the target's true-label log probabilities (Q,) and the reference
    models' (K, Q). Offline, `a` is the task's or, unset, chosen on the z samples (whose
    membership in each reference model is known)."""
    audited = population.num_audited
    chosen, a = None, args.a
    if not args.online and a is None:
        chosen = rmia.choose_a(reference_log_p[:, audited:], reference_in[:, audited:])
        assert chosen is not None, "load() refuses a task whose a cannot be chosen"
        a = chosen.a
    ratios = rmia.log_ratios(target_log_p, reference_log_p, reference_in, None if args.online else a)
    values = rmia.scores(ratios[:audited], ratios[audited:], args.gamma)
    return values, rmia.threshold_source(args.num_shadow, num_queries - audited, chosen,
                                         None if args.online else a)


def size_warnings(setup: Setup) -> tuple[str, ...]:
    """Plain-words warnings when the shadow models did not train on `setup.train_size` records each."""
    args, sizes = setup.args, setup.masks.sum(axis=1)
    models = "reference models" if isinstance(args, RmiaArgs) else "shadow models"
    wanted = (f"the target's {setup.train_size} members" if args.shadow_train_size is None
              else f"shadow_train_size ({setup.train_size})")
    warnings = []
    if sizes.min() < setup.train_size:
        fewest = f"as few as {sizes.min()}" if sizes.max() > sizes.min() else str(sizes.min())
        warnings.append(f"{args.name}'s {models} trained on {fewest} records, fewer than {wanted}: give more "
                        f"population_datasets (models that see less data than the target did make the attack "
                        f"weaker than it could be)")
    if sizes.max() > setup.train_size:
        warnings.append(f"{args.name}'s {models} trained on {sizes.max()} records, more than {wanted}: online, "
                        f"each trains on half of the {setup.population.num_audited} audited records; audit fewer "
                        f"non-members, or run offline (online: false)")
    return tuple(warnings)


def _query(rt: Runtime, model: Any, setup: Setup, indices: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s logits on population records `indices`, one array per view (views, n, classes),
    and the records' labels (n,)."""
    try:
        outputs = [rt.predict(model, rt.records(setup.datasets, indices, name, view), setup.args.batch_size)
                   for view in setup.views]
    except augment.LayoutError as exc:
        raise TaskError.at("augment", str(exc)) from None
    return np.stack([o.logits for o in outputs]), outputs[0].labels
