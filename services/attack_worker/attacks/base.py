"""The seam between attack algorithms and the models they attack.

An attack is a function `run(args, runtime) -> Scores`. It asks the runtime
for models, datasets and model outputs (the only place Paddle is touched) and
does its own maths on numpy arrays. The worker's runtime is Paddle-backed;
tests pass a numpy fake, so every attack is testable in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from privaudit.services.attack_worker.attacks.augment import Augment

# The false-positive rate that attacks calibrating their threshold on known non-members
# (population data, reference models) aim at: member when a record's score would beat
# 95% of records the target never trained on.
NOMINAL_FPR = 0.05


@dataclass(frozen=True)
class Outputs:
    """A model's outputs on every record of a dataset, in dataset order."""

    logits: np.ndarray  # (n, num_classes) float32, before softmax
    labels: np.ndarray  # (n,) int64, the dataset's true labels


@dataclass(frozen=True)
class Scores:
    """Membership scores (higher = more likely a member) of the target's member and
    non-member records, in dataset order, and the attack's decision rule: member when
    score >= threshold. A score is NaN for a record the attack did not query because the
    balanced evaluation set leaves it out (`balanced_indices` with the job's seed).
    `threshold_source` says in words where the threshold comes from (never from the audited
    records' membership); `member_labels` / `non_member_labels` are the records' class
    labels, for per-class metrics (None: not known); `warnings` are caveats a reader of the
    figures must see."""

    members: np.ndarray
    non_members: np.ndarray
    threshold: float
    threshold_source: str = ""
    member_labels: np.ndarray | None = None
    non_member_labels: np.ndarray | None = None
    warnings: tuple[str, ...] = ()


class Runtime(Protocol):
    """What an attack may ask of its job. Models and datasets are opaque handles;
    `field` is the task field that named the path, used in error messages."""

    seed: int

    def load_model(self, field: str, path: str, trained: bool = True, seed: int | None = None) -> Any:
        """The model in folder `path`; with trained=False, its architecture with fresh
        weights initialised from `seed`, by default the job's (a shadow model to train)."""

    def load_dataset(self, field: str, path: str) -> Any:
        """The dataset in folder `path`. Dataset handles have a len()."""

    def records(self, datasets: Sequence[Any], indices: Sequence[int], name: str,
                augment: Augment | None = None) -> Any:
        """A dataset (named `name` in messages) of the records `indices` of `datasets` laid end
        to end, in that order; when `augment` is given, queries of it see the records so augmented."""

    def num_classes(self, model: Any, dataset: Any) -> int:
        """Width of the model's output layer."""

    def predict(self, model: Any, dataset: Any, batch_size: int) -> Outputs:
        """Logits of `model` on every record of `dataset` (computed once, then cached)."""

    def trainable(self, model: Any) -> bool:
        """Whether `model` has weights to train (a fixed function has none)."""

    def train(self, model: Any, dataset: Any, epochs: int, lr: float, batch_size: int,
              seed: int | None = None) -> None:
        """Trains `model` in place on `dataset` with Adam and cross-entropy, the batch order
        drawn from `seed` when given, else from the job's seed."""

    def predict_augmented(self, model: Any, dataset: Any, augments: Sequence[Augment],
                          batch_size: int) -> np.ndarray:
        """(n, len(augments)) bool: whether `model` labels augmented copy j of record i
        correctly. Streams batches: never holds all augmented copies at once, and no forward
        pass is larger than `batch_size`."""

    def stage(self, stage: int) -> AbstractContextManager[None]:
        """Times a stage (a `privaudit.v1.Stage` value) and reports entering it."""

    def progress(self, fraction: float, message: str = "") -> None:
        """Reports progress within the current stage, fraction from 0 to 1."""

    def labelled(self, label: str) -> AbstractContextManager[None]:
        """Within it, every progress message starts with `label: ` (e.g. `shadow 3/16`)."""


def balanced_indices(num_members: int, num_non_members: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The indices, increasing, of the members and non-members a balanced set keeps: every
    record of the smaller side, and as many of the larger drawn without replacement by
    `numpy.random.default_rng(seed)`. The metrics are measured on this set, so an attack whose
    queries cost much may score its records alone."""
    if num_members == 0 or num_non_members == 0:
        raise ValueError("membership metrics need at least one member and one non-member score")
    size = min(num_members, num_non_members)
    rng = np.random.default_rng(seed)

    def kept(count: int) -> np.ndarray:
        return np.arange(count) if count == size else np.sort(rng.choice(count, size, replace=False))

    return kept(num_members), kept(num_non_members)


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices covering range(n) in order, each at most batch_size long."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
