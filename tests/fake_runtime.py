"""A numpy `Runtime` for attack tests: models are small numpy objects, datasets are arrays.

It implements the `privaudit.services.attack_worker.attacks.base.Runtime` protocol without Paddle, so an
attack runs end to end in milliseconds, and it records what the attack asked of it (stages,
progress, training calls).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from augment_reference import augmented
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from privaudit.services.attack_worker.attacks.base import Augment, Outputs, Scores, batches
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import DEFAULT_SEED
from privaudit.v1 import results_pb2


@dataclass(frozen=True)
class FakeDataset:
    samples: np.ndarray  # (n, *sample_shape)
    labels: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.labels)


class FakeModel(Protocol):
    num_classes: int
    trainable: bool

    def logits(self, samples: np.ndarray) -> np.ndarray: ...

    def fit(self, data: FakeDataset) -> None: ...

    def untrained(self) -> FakeModel: ...


class NearestNeighbourModel:
    """A model that memorises its training set, as an overfit network does: the logit of class c
    is minus the squared distance to the nearest training record of class c, over `temperature`.
    It is certain (logit 0) and right on its training records, less so elsewhere. Before
    training every logit is 0."""

    trainable = True

    def __init__(self, num_classes: int, temperature: float = 1.0):
        self.num_classes = num_classes
        self.temperature = temperature
        self.memory: FakeDataset | None = None

    def fit(self, data: FakeDataset) -> None:
        self.memory = data

    def untrained(self) -> NearestNeighbourModel:
        return NearestNeighbourModel(self.num_classes, self.temperature)

    def logits(self, samples: np.ndarray) -> np.ndarray:
        if self.memory is None:
            return np.zeros((len(samples), self.num_classes), np.float32)
        queries = samples.reshape(len(samples), -1).astype(np.float64)
        stored = self.memory.samples.reshape(len(self.memory), -1).astype(np.float64)
        distances = ((queries[:, None, :] - stored[None, :, :]) ** 2).sum(axis=2)
        # A class never seen in training is as far as the farthest training record.
        nearest = np.tile(distances.max(axis=1, keepdims=True), (1, self.num_classes))
        for label in np.unique(self.memory.labels):
            nearest[:, label] = distances[:, self.memory.labels == label].min(axis=1)
        return (-nearest / self.temperature).astype(np.float32)


class ConstantModel:
    """The control: the same probabilities for every input, with nothing to train."""

    trainable = False

    def __init__(self, probabilities: Sequence[float]):
        self.log_probabilities = np.log(np.asarray(probabilities, np.float64))
        self.num_classes = len(self.log_probabilities)

    def fit(self, data: FakeDataset) -> None:
        """Training cannot change a constant."""

    def untrained(self) -> ConstantModel:
        return self

    def logits(self, samples: np.ndarray) -> np.ndarray:
        return np.tile(self.log_probabilities, (len(samples), 1)).astype(np.float32)


@dataclass(frozen=True)
class TrainCall:
    model: FakeModel
    data: FakeDataset
    epochs: int
    lr: float
    batch_size: int
    seed: int | None


@dataclass
class FakeRuntime:
    """Models and datasets by storage path; `trained=False` gives the architecture untrained."""

    models: dict[str, FakeModel]
    datasets: dict[str, FakeDataset]
    seed: int = DEFAULT_SEED
    stages: list[int] = field(default_factory=list)
    progress_reports: list[tuple[int, float, str]] = field(default_factory=list)
    train_calls: list[TrainCall] = field(default_factory=list)
    label: str = ""

    def load_model(self, field: str, path: str, trained: bool = True, seed: int | None = None) -> FakeModel:
        if path not in self.models:
            raise TaskError.at(field, f"no model folder '{path}' in the storage root")
        model = self.models[path]
        return copy.deepcopy(model) if trained else model.untrained()

    def load_dataset(self, field: str, path: str) -> FakeDataset:
        if path not in self.datasets:
            raise TaskError.at(field, f"no dataset folder '{path}' in the storage root")
        return self.datasets[path]

    def records(self, datasets: Sequence[FakeDataset], indices: Sequence[int], name: str,
                augment: Augment | None = None) -> FakeDataset:
        samples = np.concatenate([d.samples for d in datasets])[np.asarray(indices, dtype=np.int64)]
        labels = np.concatenate([d.labels for d in datasets])[np.asarray(indices, dtype=np.int64)]
        return FakeDataset(augmented(augment, samples), labels)

    def num_classes(self, model: FakeModel, dataset: FakeDataset) -> int:
        return model.num_classes

    def predict(self, model: FakeModel, dataset: FakeDataset, batch_size: int) -> Outputs:
        logits = [model.logits(dataset.samples[rows]) for rows in batches(len(dataset), batch_size)]
        return Outputs(np.concatenate(logits), dataset.labels)

    def trainable(self, model: FakeModel) -> bool:
        return model.trainable

    def train(self, model: FakeModel, dataset: FakeDataset, epochs: int, lr: float, batch_size: int,
              seed: int | None = None) -> None:
        self.train_calls.append(TrainCall(model, dataset, epochs, lr, batch_size, seed))
        model.fit(dataset)

    def predict_augmented(self, model: FakeModel, dataset: FakeDataset, augments: Sequence[Augment],
                          batch_size: int) -> np.ndarray:
        correct = np.zeros((len(dataset), len(augments)), bool)
        for rows in batches(len(dataset), batch_size):
            for column, augment in enumerate(augments):
                predicted = model.logits(augmented(augment, dataset.samples[rows])).argmax(axis=1)
                correct[rows, column] = predicted == dataset.labels[rows]
        return correct

    @contextmanager
    def stage(self, stage: int) -> Iterator[None]:
        self.stages.append(stage)
        yield

    def progress(self, fraction: float, message: str = "") -> None:
        stage = self.stages[-1] if self.stages else results_pb2.STAGE_UNSPECIFIED
        self.progress_reports.append((stage, fraction, f"{self.label}: {message}" if self.label else message))

    @contextmanager
    def labelled(self, label: str) -> Iterator[None]:
        outer, self.label = self.label, label
        try:
            yield
        finally:
            self.label = outer


# Where audit_runtime() puts things: the path arguments of an ML-LEAK or LABEL-ONLY task.
AUDIT_PATHS = {
    "target_model": "models/target",
    "shadow_model": "models/shadow",
    "target_datasets": ["datasets/target_members", "datasets/target_non_members"],
    "shadow_datasets": ["datasets/shadow_members", "datasets/shadow_non_members"],
}


def digit_like_images(patterns: np.ndarray, count: int, rng: np.random.Generator, noise: float) -> FakeDataset:
    """`count` noisy copies of the class `patterns` (num_classes, *sample_shape), the classes in
    equal numbers (up to one), in random order."""
    labels = rng.permutation(np.arange(count) % len(patterns)).astype(np.int64)
    samples = patterns[labels] + noise * rng.standard_normal((count, *patterns.shape[1:]))
    return FakeDataset(samples.astype(np.float32), labels)


def audit_runtime(target: FakeModel | None = None, *, shadow_classes: int | None = None, records: int = 200,
                  num_classes: int = 10, sample_shape: tuple[int, ...] = (1, 8, 8), noise: float = 2.0,
                  seed: int = DEFAULT_SEED) -> FakeRuntime:
    """A runtime holding the four datasets of a shadow-model attack at AUDIT_PATHS, `records` each,
    drawn from one population of smooth class patterns plus noise (the same for every seed), and
    the models: `target` (default: a NearestNeighbourModel trained on the target members, which
    leaks membership) and an untrained NearestNeighbourModel shadow with `shadow_classes` outputs
    (default: `num_classes`)."""
    data_rng = np.random.default_rng(0)
    patterns = ndimage.gaussian_filter(data_rng.random((num_classes, *sample_shape)),
                                       sigma=[0, *[1.0] * len(sample_shape)])
    patterns = (patterns - patterns.mean()) / patterns.std()
    paths = [*AUDIT_PATHS["target_datasets"], *AUDIT_PATHS["shadow_datasets"]]
    datasets = {path: digit_like_images(patterns, records, data_rng, noise) for path in paths}
    # Logits of order 1: squared distances between records are about 2 * pixels * noise^2.
    temperature = float(np.prod(sample_shape)) * noise**2
    if target is None:
        target = NearestNeighbourModel(num_classes, temperature)
        target.fit(datasets[AUDIT_PATHS["target_datasets"][0]])
    shadow = NearestNeighbourModel(shadow_classes or num_classes, temperature)
    models = {AUDIT_PATHS["target_model"]: target, AUDIT_PATHS["shadow_model"]: shadow}
    return FakeRuntime(models, datasets, seed=seed)


def membership_auc(scores: Scores) -> float:
    """ROC AUC of the scores, members as the positive class."""
    truth = np.r_[np.ones(len(scores.members)), np.zeros(len(scores.non_members))]
    return float(roc_auc_score(truth, np.r_[scores.members, scores.non_members]))
