"""ML-LEAK (Salem et al., NDSS 2019): membership from the model's most confident posteriors.

The feature of a record is its top-`topk` softmax posteriors in decreasing order, each on the
logit scale log p - log(1 - p): a model tends to be more confident on the records it was trained
on. The attack classifier learns that pattern on a shadow model trained by us, then scores the
target.

Why the logit scale: an overfit model's posteriors crowd within 1e-6 of 1 and of 0, where the
posteriors themselves barely differ and the classifier cannot tell records apart (it ranked them
as the loss does, and its output barely moved). On the logit scale 1 - 1e-3 and 1 - 1e-6 are
6.9 and 13.8, and a small posterior p is about log p: the order of the posteriors is kept (so
the top-k are the seed's top-k, in the same order) while their differences become visible. It is
computed from the logits (logit_c - logsumexp of the other logits, as LIRA's confidence), so no
probability is ever rounded to 0 or 1 and no log(0) occurs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from privaudit.services.attack_worker.attacks import shadow_attack
from privaudit.services.attack_worker.attacks.base import Runtime, Scores
from privaudit.services.attack_worker.attacks.lira import logit_scaled_confidence
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import MlLeakArgs

if TYPE_CHECKING:
    from privaudit.services.attack_worker.attack_cache import ShadowAttackStore


def top_k_logit_posteriors(logits: np.ndarray, k: int) -> np.ndarray:
    """(n, k): log p - log(1 - p) of the k largest softmax probabilities p of each row of (n, c)
    logits, largest first; c >= 2. Finite for any finite logits."""
    logits = np.asarray(logits, dtype=np.float64)
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return np.stack([logit_scaled_confidence(logits, order[:, rank]) for rank in range(k)], axis=1)


def run(args: MlLeakArgs, rt: Runtime, cache: ShadowAttackStore | None = None) -> Scores:
    """The attack; with the worker's `cache`, its shadow features and classifier reused from there."""
    setup = shadow_attack.load(args, rt)
    _check_topk(args.topk, target_classes=rt.num_classes(setup.target, setup.target_members),
                shadow_classes=rt.num_classes(setup.shadow, setup.shadow_members))

    def features(model: Any, dataset: Any, field: str) -> np.ndarray:
        return top_k_logit_posteriors(rt.predict(model, dataset, args.batch_size).logits, args.topk)

    queries = shadow_attack.Queries(features, args.topk, f"ML-LEAK: top-{args.topk} logit-scaled posteriors")
    return shadow_attack.attack(args, rt, setup, queries, cache=cache)


def _check_topk(topk: int, target_classes: int, shadow_classes: int) -> None:
    for field, classes in (("target_model", target_classes), ("shadow_model", shadow_classes)):
        if classes < 2:
            raise TaskError.at(field, f"has {classes} output; ML-LEAK's posteriors need a model with at least "
                                      "2 classes")
    if topk > min(target_classes, shadow_classes):
        raise TaskError.at(
            "topk",
            f"is {topk}, but the target model has {target_classes} classes and the shadow model "
            f"{shadow_classes}; topk must be at most {min(target_classes, shadow_classes)}",
        )
