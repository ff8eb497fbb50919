"""The attack classifier of the shadow-model attacks: member vs non-member from a feature vector.

A one-hidden-layer ReLU MLP trained with Adam, with the two classes weighted equally whatever
their sizes, so a member-heavy shadow set does not teach it to call everyone a member. Seeded:
the same features and seed give the same classifier.

The features are standardised (zero mean, unit variance per feature) by a scaler fitted on the
training features only, i.e. on the shadow model's records: the target's records never shape
it. Without it, features that vary little (posteriors within 1e-3 of 1) leave the network's
first layer nearly constant and its output a barely moving function of them.

Training runs for at most `epochs` passes and stops early once the training loss has settled
(scikit-learn's rule: `CONVERGENCE_PATIENCE` passes in a row without improving on the best
loss by `CONVERGENCE_TOLERANCE`). The fitted classifier says whether that happened, and whether
the loss settled near its best or bounced (a learning rate too large for the features), so an
attack can tell the reader when its classifier is not the one its data allow.

A fitted classifier is plain arrays (the scaler's mean and scale, each layer's weights and
biases, the loss curve), so that it can be kept on disk and read back without scikit-learn's
objects; it computes P(member) as scikit-learn's `predict_proba` does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

HIDDEN_UNITS = 64  # as in Salem et al.'s attack model
MEMBER, NON_MEMBER = 1, 0
CONVERGENCE_TOLERANCE = 1e-4  # scikit-learn's default `tol`, in nats of mean training loss
CONVERGENCE_PATIENCE = 10  # scikit-learn's default `n_iter_no_change`, in epochs
# A settled loss this far (nats) above the best one reached means the steps overshoot: the
# classifier kept is worse than one it passed through. About 1.5% of ln 2, a balanced guess's loss.
UNSTABLE_GAP = 0.01


class Convergence(Enum):
    """How the classifier's training ended."""

    SETTLED = "settled"  # the loss stopped improving, at (or near) its best
    STILL_FALLING = "still falling"  # the epochs ran out while the loss was still improving
    UNSTABLE = "unstable"  # the loss stopped improving well above its best: steps too large


@dataclass(frozen=True)
class AttackClassifier:
    """A fitted attack classifier: the scaler fitted on its training features (`mean`, `scale`:
    features are standardised as (x - mean) / scale), the MLP's `weights` and `biases` per layer,
    its output the logistic of P(member), and its training's `loss_curve`."""

    mean: np.ndarray
    scale: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    loss_curve: tuple[float, ...]  # mean (class-weighted) training loss after each epoch
    convergence: Convergence

    @classmethod
    def fitted(cls, scaler: StandardScaler, mlp: MLPClassifier, convergence: Convergence) -> AttackClassifier:
        """The arrays of a scaler and a binary ReLU MLP fitted by scikit-learn on MEMBER / NON_MEMBER labels."""
        assert list(mlp.classes_) == [NON_MEMBER, MEMBER] and mlp.out_activation_ == "logistic"
        return cls(scaler.mean_, scaler.scale_, tuple(mlp.coefs_), tuple(mlp.intercepts_),
                   tuple(float(loss) for loss in mlp.loss_curve_), convergence)

    @property
    def epochs_run(self) -> int:
        return len(self.loss_curve)

    def member_probability(self, features: np.ndarray) -> np.ndarray:
        """P(member) of each row of `features` (n, d)."""
        activation = (np.asarray(features, np.float64) - self.mean) / self.scale
        for weights, biases in zip(self.weights[:-1], self.biases[:-1], strict=True):
            activation = np.maximum(activation @ weights + biases, 0.0)
        return expit(activation @ self.weights[-1] + self.biases[-1])[:, 0]


def fit(member_features: np.ndarray, non_member_features: np.ndarray, lr: float, epochs: int, batch_size: int,
        seed: int) -> AttackClassifier:
    """Fits the scaler and the classifier on (n, d) member and (m, d) non-member features,
    classes balanced, with at most `epochs` passes over them in minibatches of `batch_size`."""
    if len(member_features) == 0 or len(non_member_features) == 0:
        raise ValueError("the attack classifier needs at least one member and one non-member")
    features = np.concatenate([member_features, non_member_features]).astype(np.float64)
    labels = np.concatenate([np.full(len(member_features), MEMBER), np.full(len(non_member_features), NON_MEMBER)])
    scaler = StandardScaler().fit(features)
    mlp = MLPClassifier(
        hidden_layer_sizes=(HIDDEN_UNITS,),
        activation="relu",
        solver="adam",
        learning_rate_init=lr,
        max_iter=epochs,
        batch_size=min(batch_size, len(features)),
        tol=CONVERGENCE_TOLERANCE,
        n_iter_no_change=CONVERGENCE_PATIENCE,
        random_state=_random_state(seed),
    )
    with warnings.catch_warnings(record=True) as caught:
        # Running out of epochs is the task's choice, not an error: it is reported as STILL_FALLING.
        warnings.simplefilter("always", ConvergenceWarning)
        mlp.fit(scaler.transform(features), labels, sample_weight=compute_sample_weight("balanced", labels))
    ran_out = False
    for caught_warning in caught:
        if issubclass(caught_warning.category, ConvergenceWarning):
            ran_out = True
        else:  # not ours to swallow
            warnings.warn_explicit(caught_warning.message, caught_warning.category, caught_warning.filename,
                                   caught_warning.lineno)
    return AttackClassifier.fitted(scaler, mlp, _convergence(ran_out, mlp.loss_curve_))


def _convergence(ran_out: bool, loss_curve: list[float]) -> Convergence:
    if ran_out:
        return Convergence.STILL_FALLING
    if loss_curve[-1] > min(loss_curve) + UNSTABLE_GAP:
        return Convergence.UNSTABLE
    return Convergence.SETTLED


def _random_state(seed: int) -> int:
    """A 32-bit random_state derived from a task seed of up to 63 bits."""
    return int(np.random.SeedSequence(seed).generate_state(1)[0])
