"""The shadow-model attack that ML-LEAK and LABEL-ONLY share; they differ only in the features.

Train a fresh copy of the shadow architecture on the shadow members, compute features of the
shadow members (label 1) and non-members (label 0), fit the attack classifier on them, and score
the target model's members and non-members with it: score = P(member), member when >= 0.5.
When the classifier's training did not settle, the scores carry a warning saying what to change.
An attack whose queries cost much (LABEL-ONLY: one per augmentation) queries and scores only the
target's records that the balanced evaluation set keeps.

Given the worker's `ShadowAttackStore`, the shadow model's features, the fitted classifier and
the target model's features are taken from it when it has them (the progress says so) and kept
there otherwise: a rerun that changes none of them trains and queries nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from privaudit.services.attack_worker.attacks import attack_classifier
from privaudit.services.attack_worker.attacks.attack_classifier import (
    CONVERGENCE_PATIENCE,
    AttackClassifier,
    Convergence,
)
from privaudit.services.attack_worker.attacks.base import Runtime, Scores, balanced_indices
from privaudit.services.common.task_spec import ShadowAttackArgs
from privaudit.v1 import results_pb2

if TYPE_CHECKING:
    from privaudit.services.attack_worker.attack_cache import ShadowAttackStore

THRESHOLD = 0.5
THRESHOLD_SOURCE = ("P(member) >= 0.5 from the attack classifier fitted on the shadow model's members and "
                    "non-members, the two classes weighted equally")

# (model, dataset, field naming the dataset) -> (n, d) features, one row per record.
Features = Callable[[Any, Any, str], np.ndarray]
FOUND = "found in the cache"


@dataclass(frozen=True)
class Queries:
    """What the attack asks a model about each record: `features` of `width` columns, as
    `description` says in words that change whenever the features would (a part of cache keys)."""

    features: Features
    width: int
    description: str


@dataclass(frozen=True)
class Setup:
    """The models and datasets of a shadow-model attack, loaded."""

    target: Any
    shadow: Any  # untrained: the shadow architecture with fresh weights
    target_members: Any
    target_non_members: Any
    shadow_members: Any
    shadow_non_members: Any


def load(args: ShadowAttackArgs, rt: Runtime) -> Setup:
    """The attack's models and datasets; the shadow model untrained."""
    with rt.stage(results_pb2.STAGE_LOAD):
        return Setup(
            target=rt.load_model("target_model", args.target_model),
            shadow=rt.load_model("shadow_model", args.shadow_model, trained=False),
            target_members=rt.load_dataset("target_datasets.members", args.target_datasets.members),
            target_non_members=rt.load_dataset("target_datasets.non_members", args.target_datasets.non_members),
            shadow_members=rt.load_dataset("shadow_datasets.members", args.shadow_datasets.members),
            shadow_non_members=rt.load_dataset("shadow_datasets.non_members", args.shadow_datasets.non_members),
        )


def attack(args: ShadowAttackArgs, rt: Runtime, setup: Setup, queries: Queries, evaluated_only: bool = False,
           cache: ShadowAttackStore | None = None) -> Scores:
    """Trains the shadow, fits the attack classifier on its features, and scores the target;
    with `evaluated_only`, only the target's records in the balanced evaluation set (drawn with
    the job's seed, as the metrics draw it), the others' scores NaN. With a `cache`, the shadow's
    features, the classifier and the target's features come from it when it holds them, and go
    there otherwise."""
    entries = cache.entries(args, setup, queries, rt.seed) if cache is not None else None
    classifier = entries.classifier() if entries else None
    shadow = entries.features() if entries and classifier is None else None

    with rt.stage(results_pb2.STAGE_TRAIN_SHADOW):
        if classifier is None and shadow is None:
            rt.train(setup.shadow, setup.shadow_members, args.shadow_epoch, args.shadow_lr, args.batch_size)
        else:
            rt.progress(1.0, f"the attack classifier {FOUND}, no shadow model to train" if classifier
                        else f"the shadow model's features {FOUND}")

    with rt.stage(results_pb2.STAGE_PREDICT):  # the runtime reports progress within each query
        if classifier is None and shadow is None:
            shadow = (queries.features(setup.shadow, setup.shadow_members, "shadow_datasets.members"),
                      queries.features(setup.shadow, setup.shadow_non_members, "shadow_datasets.non_members"))
            if entries:
                entries.keep_features(*shadow)
        member_labels = rt.predict(setup.target, setup.target_members, args.batch_size).labels
        non_member_labels = rt.predict(setup.target, setup.target_non_members, args.batch_size).labels
        member_rows, non_member_rows = (
            balanced_indices(len(member_labels), len(non_member_labels), rt.seed) if evaluated_only
            else (np.arange(len(member_labels)), np.arange(len(non_member_labels))))
        target_in = _target_features(rt, setup, queries, cache, member_rows, "members", args.batch_size)
        target_out = _target_features(rt, setup, queries, cache, non_member_rows, "non_members", args.batch_size)

    with rt.stage(results_pb2.STAGE_FIT_ATTACK):
        if classifier is None:
            assert shadow is not None
            classifier = attack_classifier.fit(*shadow, args.classifier_lr, args.classifier_epoch, args.batch_size,
                                               rt.seed)
            if entries:
                entries.keep_classifier(classifier)
        else:
            rt.progress(1.0, f"the attack classifier {FOUND}")

    with rt.stage(results_pb2.STAGE_SCORE):
        return Scores(
            members=_spread(classifier.member_probability(target_in), member_rows, len(member_labels)),
            non_members=_spread(classifier.member_probability(target_out), non_member_rows, len(non_member_labels)),
            threshold=THRESHOLD,
            threshold_source=THRESHOLD_SOURCE,
            member_labels=member_labels,
            non_member_labels=non_member_labels,
            warnings=convergence_warnings(classifier, args),
        )


def convergence_warnings(classifier: AttackClassifier, args: ShadowAttackArgs) -> tuple[str, ...]:
    """What a reader must know when the classifier's training did not settle, and what to change."""
    curve = classifier.loss_curve
    if classifier.convergence is Convergence.STILL_FALLING:
        recent = curve[-min(len(curve), CONVERGENCE_PATIENCE + 1):]
        fall = (f"by {recent[0] - recent[-1]:.4f} over its last {len(recent) - 1} epochs, to {curve[-1]:.4f}"
                if len(recent) > 1 else f"at {curve[-1]:.4f} after one epoch")
        return (f"The attack classifier had not converged: its training loss was still falling ({fall}) "
                f"when classifier_epoch ({args.classifier_epoch}) ran out, so the scores may understate "
                f"the leak. Raise classifier_epoch, or classifier_lr (now {args.classifier_lr:g}).",)
    if classifier.convergence is Convergence.UNSTABLE:
        return (f"The attack classifier's training was unstable: its loss stopped at {curve[-1]:.4f}, "
                f"well above the {min(curve):.4f} it reached on the way, so the scores may understate the "
                f"leak. Lower classifier_lr (now {args.classifier_lr:g}).",)
    return ()


def _target_features(rt: Runtime, setup: Setup, queries: Queries, cache: ShadowAttackStore | None, rows: np.ndarray,
                     side: str, batch_size: int) -> np.ndarray:
    """The target model's features on records `rows` of its `side` ("members" or "non_members"),
    from the cache when it holds them."""
    dataset = setup.target_members if side == "members" else setup.target_non_members
    key = cache.target_key(setup.target, dataset, rows, queries, batch_size) if cache is not None else None
    found = cache.cache.load_rows(key, len(rows), queries.width) if cache is not None and key else None
    if found is not None:
        rt.progress(1.0, f"the target model's features on its {side.replace('_', '-')} {FOUND}")
        return found
    records = dataset if len(rows) == len(dataset) else rt.records(
        [dataset], rows, f"the target's {side.replace('_', '-')} in the evaluation set")
    features = queries.features(setup.target, records, f"target_datasets.{side}")
    if cache is not None and key:
        cache.cache.store_rows(key, features)
    return features


def _spread(values: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """`values` of records `rows` placed among `count` records, NaN for the others."""
    spread = np.full(count, np.nan)
    spread[rows] = values
    return spread
