"""ML-LEAK (Salem et al., NDSS 2019): membership from the model's most confident posteriors.

The feature of a record is its top-`topk` softmax posteriors in decreasing order: a model tends
to be more confident on the records it was trained on. The attack classifier learns that pattern
on a shadow model trained by us, then scores the target.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax

from services.attack_worker.attacks import shadow_attack
from services.attack_worker.attacks.base import Runtime, Scores
from services.common.errors import TaskError
from services.common.task_spec import MlLeakArgs


def top_k_posteriors(logits: np.ndarray, k: int) -> np.ndarray:
    """(n, k): the k largest softmax probabilities of each row of (n, c) logits, largest first.
    The softmax is shifted by each row's maximum, so huge logits give no overflow or NaN."""
    posteriors = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    return -np.sort(-posteriors, axis=1)[:, :k]


def run(args: MlLeakArgs, rt: Runtime) -> Scores:
    setup = shadow_attack.load(args, rt)
    _check_topk(args.topk, target_classes=rt.num_classes(setup.target, setup.target_members),
                shadow_classes=rt.num_classes(setup.shadow, setup.shadow_members))

    def features(model: Any, dataset: Any, field: str) -> np.ndarray:
        return top_k_posteriors(rt.predict(model, dataset, args.batch_size).logits, args.topk)

    return shadow_attack.attack(args, rt, setup, features)


def _check_topk(topk: int, target_classes: int, shadow_classes: int) -> None:
    if topk > min(target_classes, shadow_classes):
        raise TaskError.at(
            "topk",
            f"is {topk}, but the target model has {target_classes} classes and the shadow model "
            f"{shadow_classes}; topk must be at most {min(target_classes, shadow_classes)}",
        )
