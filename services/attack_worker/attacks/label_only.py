"""LABEL-ONLY (Choquette-Choo et al., ICML 2021), data-augmentation attack.

The feature of a record is which augmented copies of it the model labels correctly (1 or 0 per
copy): a model tends to stay right on perturbed versions of the records it was trained on. Needs
only predicted labels. The attack classifier learns that pattern on a shadow model trained by us,
then scores the target.

The copies are the paper's sets (see `augment.rotations` and `augment.translations`): for
`attack_type: r`, a rotation by each whole degree from -r to r (2r + 1 queries; `r: 6` gives 13);
for `d`, the unshifted image and every shift by exactly d pixels, |dx| + |dy| = d (4d + 1).
The target's records are queried only where the balanced evaluation set keeps them: the rest
would cost a query per copy and enter no figure; their scores are NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from privaudit.services.attack_worker.attacks import augment, shadow_attack
from privaudit.services.attack_worker.attacks.base import Augment, Runtime, Scores
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import LabelOnlyArgs

if TYPE_CHECKING:
    from privaudit.services.attack_worker.attack_cache import ShadowAttackStore


def augments_for(args: LabelOnlyArgs) -> list[Augment]:
    """The queries of `attack_type`: `r` rotations within +-r degrees, `d` translations by d pixels."""
    return augment.rotations(args.r) if args.attack_type == "r" else augment.translations(args.d)


def run(args: LabelOnlyArgs, rt: Runtime, cache: ShadowAttackStore | None = None) -> Scores:
    """The attack; with the worker's `cache`, its shadow features and classifier reused from there."""
    augments = augments_for(args)
    setup = shadow_attack.load(args, rt)

    def features(model: Any, dataset: Any, field: str) -> np.ndarray:
        try:
            correct = rt.predict_augmented(model, dataset, augments, args.batch_size)
        except augment.LayoutError as exc:
            raise TaskError.at(field, str(exc)) from None
        return correct.astype(np.float64)

    queries = shadow_attack.Queries(features, len(augments), f"LABEL-ONLY: correct on each of {augments!r}")
    return shadow_attack.attack(args, rt, setup, queries, evaluated_only=True, cache=cache)
