"""The shadow-attack cache: what ML-LEAK and LABEL-ONLY need of their shadow model and attack
classifier, kept by content in the worker's cache folder (`--cache-dir`), so that a rerun trains
neither again.

Two kinds of entry (see `npz_store`), never Paddle or scikit-learn objects:
- the shadow model's features on its members and on its non-members (what the attack queried it
  for: ML-LEAK's top-k posteriors, LABEL-ONLY's correctness on each augmented copy), under a key
  digesting everything that decides them: the shadow model's code, any weights in its folder and
  the layer structure its `get_model()` builds (`storage.model_digest`), the shadow datasets'
  records (`LoadedDataset.digest`), the training arguments, the seed that draws the shadow
  model's initial weights and its data order (the job's), and the queries;
- the fitted attack classifier (`AttackClassifier`'s arrays), under a key digesting the features'
  key, the classifier's arguments and the seed it is fitted with (the job's);
- the target model's features on the records of the evaluation set (LABEL-ONLY's augmented
  queries cost one pass per copy), under a key digesting the target model (`storage.model_digest`),
  the dataset's records, which of them, the queries and the batch size.
A new seed thus misses the shadow's and the classifier's entries (and the target's, where it
draws other records), while the target model's outputs stay in the output cache. A shadow
dataset that was not read into memory has no digest, and nothing of such an attack is kept. An
entry that does not fit its key (other record counts, arrays missing or of other shapes) counts
as absent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from privaudit.services.attack_worker import storage
from privaudit.services.attack_worker.attacks.attack_classifier import AttackClassifier, Convergence
from privaudit.services.attack_worker.attacks.shadow_attack import Queries, Setup
from privaudit.services.attack_worker.npz_store import WorkerCache
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.task_spec import ShadowAttackArgs

# Part of every key: a change to how shadow models, features or classifiers are computed or stored must change it.
FORMAT = "privaudit shadow attack v1: Adam, cross-entropy; float64 features; one-hidden-layer ReLU MLP, logistic out"


class ShadowAttackCache(WorkerCache):
    """Shadow features and attack classifiers in the `shadow_attacks` folder of a worker's cache folder."""

    FOLDER = "shadow_attacks"

    def load_features(self, key: str, members: int, non_members: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The (members, d) and (non_members, d) features stored under `key`, or None when there is
        no usable entry."""
        entry = self._store.load(key)
        if entry is None:
            return None
        shadow_in, shadow_out = entry.get("members"), entry.get("non_members")
        if shadow_in is None or shadow_out is None or shadow_in.ndim != 2 or shadow_out.ndim != 2:
            return None
        if len(shadow_in) != members or len(shadow_out) != non_members or shadow_in.shape[1] != shadow_out.shape[1]:
            return None
        return shadow_in, shadow_out

    def store_features(self, key: str, shadow_in: np.ndarray, shadow_out: np.ndarray) -> None:
        """Keeps the entry; a failure to write is logged, not raised."""
        self._store.store(key, members=shadow_in, non_members=shadow_out)

    def load_rows(self, key: str, rows: int, width: int) -> np.ndarray | None:
        """The (rows, width) features stored under `key`, or None when there is no usable entry."""
        entry = self._store.load(key)
        features = None if entry is None else entry.get("features")
        return features if features is not None and features.shape == (rows, width) else None

    def store_rows(self, key: str, features: np.ndarray) -> None:
        """Keeps the entry; a failure to write is logged, not raised."""
        self._store.store(key, features=features)

    def load_classifier(self, key: str, width: int) -> AttackClassifier | None:
        """The classifier of `width` features stored under `key`, or None when there is no usable entry."""
        entry = self._store.load(key)
        if entry is None:
            return None
        layers = sum(name.startswith("weights_") for name in entry)
        try:
            weights = tuple(entry[f"weights_{layer}"] for layer in range(layers))
            biases = tuple(entry[f"biases_{layer}"] for layer in range(layers))
            classifier = AttackClassifier(entry["mean"], entry["scale"], weights, biases,
                                          tuple(float(loss) for loss in entry["loss_curve"]),
                                          Convergence(str(entry["convergence"])))
        except (KeyError, ValueError):
            return None
        return classifier if _fits(classifier, width) else None

    def store_classifier(self, key: str, classifier: AttackClassifier) -> None:
        """Keeps the entry; a failure to write is logged, not raised."""
        layers = {f"{name}_{layer}": array for name, arrays in (("weights", classifier.weights),
                                                                  ("biases", classifier.biases))
                  for layer, array in enumerate(arrays)}
        self._store.store(key, mean=classifier.mean, scale=classifier.scale, **layers,
                          loss_curve=np.asarray(classifier.loss_curve, dtype=np.float64),
                          convergence=np.asarray(classifier.convergence.value))


@dataclass(frozen=True)
class AttackEntries:
    """The entries of one attack: its shadow features under `features_key` (`members` and
    `non_members` rows of `width` features), its classifier under `classifier_key`."""

    cache: ShadowAttackCache
    features_key: str
    classifier_key: str
    members: int
    non_members: int
    width: int

    def features(self) -> tuple[np.ndarray, np.ndarray] | None:
        shadow = self.cache.load_features(self.features_key, self.members, self.non_members)
        return shadow if shadow is None or shadow[0].shape[1] == self.width else None

    def classifier(self) -> AttackClassifier | None:
        return self.cache.load_classifier(self.classifier_key, self.width)

    def keep_features(self, shadow_in: np.ndarray, shadow_out: np.ndarray) -> None:
        self.cache.store_features(self.features_key, shadow_in, shadow_out)

    def keep_classifier(self, classifier: AttackClassifier) -> None:
        self.cache.store_classifier(self.classifier_key, classifier)


@dataclass(frozen=True)
class ShadowAttackStore:
    """Where a worker keeps ML-LEAK's and LABEL-ONLY's shadow work: its cache, under keys that
    name the shadow model's code by its folder under `storage_root`."""

    storage_root: str
    cache: ShadowAttackCache

    @classmethod
    def of(cls, settings: WorkerSettings) -> ShadowAttackStore | None:
        """The worker's store; None when it has no cache folder."""
        cache = ShadowAttackCache.of(settings)
        return None if cache is None else cls(settings.storage_root, cache)

    def entries(self, args: ShadowAttackArgs, setup: Setup, queries: Queries, seed: int) -> AttackEntries | None:
        """The entries of the attack `args` describes, with `setup` loaded, querying models as
        `queries` says, seeded with `seed`; None when a shadow dataset has no digest or the shadow
        model is no stored model (nothing then identifies them by content)."""
        layer = getattr(setup.shadow, "layer", None)
        datasets = [getattr(dataset, "digest", None) for dataset in (setup.shadow_members, setup.shadow_non_members)]
        if layer is None or None in datasets:
            return None
        model = storage.model_digest(self.storage_root, args.shadow_model, "shadow_model", layer)
        shadow = {"format": FORMAT, "model": model, "members": datasets[0], "non_members": datasets[1],
                  "epochs": args.shadow_epoch, "lr": args.shadow_lr, "batch_size": args.batch_size, "seed": seed,
                  "queries": queries.description}
        features_key = _digest(shadow)
        classifier = {"format": FORMAT, "features": features_key, "epochs": args.classifier_epoch,
                      "lr": args.classifier_lr, "batch_size": args.batch_size, "seed": seed}
        return AttackEntries(self.cache, features_key, _digest(classifier), len(setup.shadow_members),
                             len(setup.shadow_non_members), queries.width)

    @staticmethod
    def target_key(model: Any, dataset: Any, rows: np.ndarray, queries: Queries, batch_size: int) -> str | None:
        """The key of the features `queries` gives of the stored `model` on records `rows` of `dataset`
        in batches of `batch_size`; None when the model or the dataset has no digest."""
        model_digest, dataset_digest = getattr(model, "digest", None), getattr(dataset, "digest", None)
        if model_digest is None or dataset_digest is None:
            return None
        rows_digest = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()
        return _digest({"format": FORMAT, "model": model_digest, "dataset": dataset_digest, "rows": rows_digest,
                        "queries": queries.description, "batch_size": batch_size})


def _digest(fields: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _fits(classifier: AttackClassifier, width: int) -> bool:
    """Whether the arrays make a classifier of `width` features with one output."""
    shapes = [weights.shape for weights in classifier.weights]
    if not shapes or any(len(shape) != 2 for shape in shapes) or not classifier.loss_curve:
        return False
    chained = all(before[1] == after[0] for before, after in pairwise(shapes))
    biased = all(biases.shape == (shape[1],) for biases, shape in zip(classifier.biases, shapes, strict=True))
    return (chained and biased and shapes[0][0] == width and shapes[-1][1] == 1
            and classifier.mean.shape == classifier.scale.shape == (width,))
