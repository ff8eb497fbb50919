"""The shadow-model attack that ML-LEAK and LABEL-ONLY share; they differ only in the features.

Train a fresh copy of the shadow architecture on the shadow members, compute features of the
shadow members (label 1) and non-members (label 0), fit the attack classifier on them, and score
the target model's members and non-members with it: score = P(member), member when >= 0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from privaudit.v1 import results_pb2
from services.attack_worker.attacks import attack_classifier
from services.attack_worker.attacks.base import Runtime, Scores
from services.common.task_spec import ShadowAttackArgs

THRESHOLD = 0.5

# (model, dataset, field naming the dataset) -> (n, d) features, one row per record.
Features = Callable[[Any, Any, str], np.ndarray]


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


def attack(args: ShadowAttackArgs, rt: Runtime, setup: Setup, features: Features) -> Scores:
    """Trains the shadow, fits the attack classifier on its `features`, and scores the target."""
    with rt.stage(results_pb2.STAGE_TRAIN_SHADOW):
        rt.train(setup.shadow, setup.shadow_members, args.shadow_epoch, args.shadow_lr, args.batch_size)

    with rt.stage(results_pb2.STAGE_PREDICT):  # the runtime reports progress within each query
        shadow_in = features(setup.shadow, setup.shadow_members, "shadow_datasets.members")
        shadow_out = features(setup.shadow, setup.shadow_non_members, "shadow_datasets.non_members")
        target_in = features(setup.target, setup.target_members, "target_datasets.members")
        target_out = features(setup.target, setup.target_non_members, "target_datasets.non_members")

    with rt.stage(results_pb2.STAGE_FIT_ATTACK):
        classifier = attack_classifier.fit(shadow_in, shadow_out, args.classifier_lr, args.classifier_epoch,
                                           args.batch_size, rt.seed)

    with rt.stage(results_pb2.STAGE_SCORE):
        return Scores(
            members=classifier.member_probability(target_in),
            non_members=classifier.member_probability(target_out),
            threshold=THRESHOLD,
        )

