"""The attack classifier of the shadow-model attacks: member vs non-member from a feature vector.

A one-hidden-layer ReLU MLP trained with Adam, with the two classes weighted equally whatever
their sizes, so a member-heavy shadow set does not teach it to call everyone a member. Seeded:
the same features and seed give the same classifier.

Features are used as they are, not standardised: both attacks' features already lie in [0, 1]
(posteriors, correctness), and standardising them on the shadow model's features magnifies
differences among near-1 posteriors that do not carry over to the target: on the example audit,
the ML-LEAK AUC fell from 0.71 to between 0.53 and 0.70 depending on the seed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.utils.class_weight import compute_sample_weight

HIDDEN_UNITS = 64  # as in Salem et al.'s attack model
MEMBER, NON_MEMBER = 1, 0


@dataclass(frozen=True)
class AttackClassifier:
    """A fitted attack classifier."""

    mlp: MLPClassifier

    def member_probability(self, features: np.ndarray) -> np.ndarray:
        """P(member) of each row of `features` (n, d)."""
        member_column = list(self.mlp.classes_).index(MEMBER)
        return self.mlp.predict_proba(np.asarray(features, np.float64))[:, member_column]


def fit(member_features: np.ndarray, non_member_features: np.ndarray, lr: float, epochs: int, batch_size: int,
        seed: int) -> AttackClassifier:
    """Fits the classifier on (n, d) member and (m, d) non-member features, classes balanced,
    with `epochs` passes over them in minibatches of `batch_size`."""
    if len(member_features) == 0 or len(non_member_features) == 0:
        raise ValueError("the attack classifier needs at least one member and one non-member")
    features = np.concatenate([member_features, non_member_features]).astype(np.float64)
    labels = np.concatenate([np.full(len(member_features), MEMBER), np.full(len(non_member_features), NON_MEMBER)])
    mlp = MLPClassifier(
        hidden_layer_sizes=(HIDDEN_UNITS,),
        activation="relu",
        solver="adam",
        learning_rate_init=lr,
        max_iter=epochs,
        batch_size=min(batch_size, len(features)),
        random_state=_random_state(seed),
    )
    with warnings.catch_warnings():
        # The number of epochs is the task's choice; stopping before convergence is not an error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(features, labels, sample_weight=compute_sample_weight("balanced", labels))
    return AttackClassifier(mlp)


def _random_state(seed: int) -> int:
    """A 32-bit random_state derived from a task seed of up to 63 bits."""
    return int(np.random.SeedSequence(seed).generate_state(1)[0])
