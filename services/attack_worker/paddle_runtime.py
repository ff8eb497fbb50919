"""The Paddle-backed `Runtime` of one attack job: loading, querying and training models.

Scoped to one job: models and datasets are loaded once per folder (a dataset that
fits the worker's `dataset_memory_mb` is read into memory once), and a model's
outputs on a dataset are computed once and cached, so no query is made twice
(attacks and the job's own model summary ask for the same target outputs). A
stored model's outputs on an in-memory dataset also go to the worker's output
cache, which the task's other jobs read instead of querying again.
Every random choice derives from the job's seed. Progress points check the
job's cancellation flag, so a cancelled RPC stops the job within a batch.
Paddle runs on the worker's `device`; each batch is moved there once, and the
augmented copies of a query are made there (`device_augment`), several of them
in one forward pass.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F

from privaudit.services.attack_worker import device_augment, storage
from privaudit.services.attack_worker.attacks.base import Augment, Outputs, batches
from privaudit.services.attack_worker.endpoint_target import RemoteModel, one_hot
from privaudit.services.attack_worker.job_basics import JobCancelled
from privaudit.services.attack_worker.output_cache import OutputCache, output_key
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.errors import TaskError, one_line
from privaudit.services.common.task_spec import ModelEndpoint
from privaudit.v1 import results_pb2

# Within a stage, progress is reported at most this often (and always at 0 and 1).
PROGRESS_INTERVAL_S = 0.5
# Records read per call while a dataset is read into memory.
_READ_CHUNK = 1024

# (stage, fraction of the stage done, message): how the runtime reports progress.
ProgressSink = Callable[[int, float, str], None]


@dataclass(eq=False)
class LoadedModel:
    """A model of the job. Compared by identity: outputs are cached per handle."""

    field: str  # the task field that named the folder, relative to the attack's args
    path: str  # the folder as the task wrote it
    name: str  # the folder's name
    layer: paddle.nn.Layer
    # Content digest of a model loaded with its weights (see storage.model_digest); None for a
    # fresh or retrained model, whose outputs are not cached beyond the job.
    digest: str | None = None


@dataclass(frozen=True, eq=False)
class LoadedDataset:
    """A dataset of the job: its records in memory (`records`), or read from `source` on demand."""

    field: str
    path: str
    name: str
    source: Any  # what get_dataset() returned
    length: int
    records: tuple[np.ndarray, np.ndarray] | None = None  # every (sample, label), when read into memory

    def __len__(self) -> int:
        return self.length

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(samples float32, labels int64) of records `indices`."""
        if self.records is None:
            return storage.read_records(self.source, indices, self.field)
        rows = np.asarray(indices, dtype=np.int64)
        return self.records[0][rows], self.records[1][rows]

    @cached_property
    def digest(self) -> str | None:
        """SHA-256 of the records' shapes, labels and sample bytes; None unless read into memory."""
        if self.records is None:
            return None
        samples, labels = self.records
        digest = hashlib.sha256(f"{samples.shape}{labels.shape}".encode())
        digest.update(labels.data)
        digest.update(samples.data)
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class SelectedRecords:
    """Records of loaded datasets laid end to end, such as a shadow model's training set: read
    through their own datasets (whose fields name any fault). `read` gives the records as they
    are; the runtime queries them passed through `augment`, on its device. Not from one task
    field, so `field` is empty and `path` is the name."""

    name: str
    parts: tuple[LoadedDataset, ...]
    indices: np.ndarray  # into the parts laid end to end
    augment: Augment | None = None
    field: str = ""

    @property
    def path(self) -> str:
        return self.name

    @property
    def length(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return self.length

    def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(samples float32, labels int64) of records `indices` of the selection."""
        wanted = self.indices[np.asarray(indices, dtype=np.int64)]
        starts = np.cumsum([0, *(part.length for part in self.parts)])
        part_of = np.searchsorted(starts, wanted, side="right") - 1
        samples: np.ndarray | None = None
        labels = np.empty(len(wanted), dtype=np.int64)
        for number in np.unique(part_of):
            rows = np.flatnonzero(part_of == number)
            part = self.parts[number]
            part_samples, labels[rows] = part.read(wanted[rows] - starts[number])
            if samples is None:
                samples = np.empty((len(wanted), *part_samples.shape[1:]), dtype=np.float32)
            elif samples.shape[1:] != part_samples.shape[1:]:
                raise TaskError.at(part.field, f"{part.name} has samples of shape {list(part_samples.shape[1:])}, "
                                               f"unlike the datasets read with it ({list(samples.shape[1:])}); "
                                               "every dataset of an attack must have samples of one shape")
            samples[rows] = part_samples
        assert samples is not None, "a selection reads at least one record"
        return samples, labels


# What the runtime's dataset handles are.
Dataset = LoadedDataset | SelectedRecords


@dataclass
class _Answers:
    """A deployed target's answers on a dataset's records, those `known` so far."""

    known: np.ndarray  # (records,) bool
    values: np.ndarray | None = None  # (records, ...) as the target answered; allocated at the first answer

    def keep(self, row: int, answer: np.ndarray) -> None:
        if self.values is None:
            self.values = np.empty((len(self.known), *answer.shape), dtype=answer.dtype)
        self.values[row], self.known[row] = answer, True
# What its model handles are: a model loaded from a folder, or a deployed target queried over gRPC.
Model = LoadedModel | RemoteModel


class PaddleRuntime:
    """Implements `attacks.base.Runtime` with Paddle for one job.

    Every fresh (untrained) model of a job starts from the same weights: Paddle is
    seeded with the job's seed right before its `get_model()`. Data order in
    training comes from one numpy Generator seeded with the job's seed. A model or
    a training run given a seed of its own (a shadow model of LIRA or RMIA) uses
    that instead, so it comes out the same whichever job trains it.

    Paddle runs on `settings.device` (the job's process is its own, so the device is set for
    the whole process, before any model is built); None leaves Paddle's choice.
    """

    def __init__(self, settings: WorkerSettings, seed: int, report: ProgressSink,
                 cancelled: threading.Event | None = None, attack: str = ""):
        if settings.device is not None:
            paddle.set_device(settings.device)
        self.seed = seed
        self.settings = settings
        self.timings: list[results_pb2.StageTiming] = []
        # Every dataset the attack asked for, by task field, in the order asked.
        self.datasets_read: dict[str, LoadedDataset] = {}
        self._root = settings.storage_root
        self._output_cache = OutputCache.of(settings)
        self._report = report
        self._cancelled = cancelled or threading.Event()
        self._rng = np.random.default_rng(seed)
        self._trained_models: dict[Path, LoadedModel] = {}
        self._attack = attack  # the attack's name: what a deployed target's outputs must serve
        self._remote_models: dict[ModelEndpoint, RemoteModel] = {}
        # A deployed target's answers on each dataset's records (and which are known), sent once a job.
        self._answers: dict[tuple[RemoteModel, LoadedDataset], _Answers] = {}
        self._datasets: dict[Path, LoadedDataset] = {}
        self._outputs: dict[tuple[LoadedModel, Dataset], Outputs] = {}
        self._stage: int = results_pb2.STAGE_UNSPECIFIED
        self._last_report = 0.0
        self._label = ""  # prefix of progress messages, see labelled()

    # ------------------------------------------------------------ loading

    @property
    def target_queries(self) -> int:
        """Records sent to deployed targets so far."""
        return sum(model.queries for model in self._remote_models.values())

    def load_model(self, field: str, path: str | ModelEndpoint, trained: bool = True,
                   seed: int | None = None) -> Model:
        self._check_cancelled()
        if isinstance(path, ModelEndpoint):  # a deployed target; untrained, its architecture's folder
            if not trained:
                return self.load_model(f"{field}.architecture", path.architecture_folder(field), trained=False,
                                       seed=seed)
            if path not in self._remote_models:
                self._remote_models[path] = RemoteModel.connect(path, self._root, field, self._attack)
            return self._remote_models[path]
        folder = storage.resolve_folder(self._root, path, field)
        if not trained:
            layer = storage.load_model(self._root, path, field, trained=False,
                                       seed=self.seed if seed is None else seed)
            return LoadedModel(field, path, folder.name, layer)
        if folder not in self._trained_models:
            layer = storage.load_model(self._root, path, field)
            self._trained_models[folder] = LoadedModel(field, path, folder.name, layer,
                                                       storage.model_digest(self._root, path, field, layer))
        return self._trained_models[folder]

    def load_dataset(self, field: str, path: str) -> LoadedDataset:
        self._check_cancelled()
        folder = storage.resolve_folder(self._root, path, field)
        if folder not in self._datasets:
            source = storage.load_dataset(self._root, path, field, self.settings.max_dataset_length)
            self._datasets[folder] = LoadedDataset(field, path, folder.name, source, len(source),
                                                   self._in_memory(source, field, folder.name))
        self.datasets_read.setdefault(field, self._datasets[folder])
        return self._datasets[folder]

    def records(self, datasets: Sequence[LoadedDataset], indices: Sequence[int], name: str,
                augment: Augment | None = None) -> SelectedRecords:
        return SelectedRecords(name, tuple(datasets), np.asarray(indices, dtype=np.int64), augment)

    # ------------------------------------------------------------ querying

    def num_classes(self, model: Model, dataset: Dataset) -> int:
        cached = self._outputs.get((model, dataset))
        if cached is not None:
            return int(cached.logits.shape[1])
        samples, labels = self._read(dataset, [0])
        if isinstance(model, RemoteModel):
            return model.declared_classes() or int(model.scores(samples.numpy()).shape[1])
        with self._inference(model):
            return int(self._forward(model, dataset, samples, labels).shape[1])

    def predict(self, model: Model, dataset: Dataset, batch_size: int) -> Outputs:
        key = (model, dataset)
        if key not in self._outputs:
            self._outputs[key] = self._cached_or_predicted(model, dataset, batch_size)
        return self._outputs[key]

    def predict_augmented(self, model: Model, dataset: Dataset, augments: Sequence[Augment],
                          batch_size: int) -> np.ndarray:
        correct = np.empty((dataset.length, len(augments)), dtype=bool)
        if not augments:
            return correct
        if isinstance(model, RemoteModel):
            model.reserve(dataset.length * len(augments), f"{len(augments)} augmented copies of {dataset.name}")
        note = f"querying {model.name} on {len(augments)} augmented copies of {dataset.name}"
        # A batch of records is read, moved to the device and augmented there at once; its
        # copies go through the model batch_size at a time.
        with self._inference(model):
            for batch in self._batches(dataset.length, batch_size, note):
                images, labels = self._read(dataset, range(batch.start, batch.stop))
                copies = device_augment.stacked(images, augments)  # copy j of record i at j * len(batch) + i
                copy_labels = np.tile(labels, len(augments))
                predicted = np.empty(len(copy_labels), dtype=np.int64)
                for rows in batches(len(copy_labels), batch_size):
                    predicted[rows] = self._labels(model, dataset, copies[rows], copy_labels[rows])
                correct[batch] = (predicted == copy_labels).reshape(len(augments), len(labels)).T
        return correct

    # ------------------------------------------------------------ training

    def trainable(self, model: Model) -> bool:
        return isinstance(model, LoadedModel) and bool(model.layer.parameters())

    def train(self, model: LoadedModel, dataset: Dataset, epochs: int, lr: float,
              batch_size: int, seed: int | None = None) -> None:
        if not self.trainable(model):
            raise TaskError.at(model.field, f"model {model.name} has no parameters, so it cannot be trained; "
                                            "give an architecture with trainable weights")
        optimizer = paddle.optimizer.Adam(learning_rate=lr, parameters=model.layer.parameters())
        model.layer.train()
        rng = self._rng if seed is None else np.random.default_rng(seed)
        for epoch in range(epochs):
            order = rng.permutation(dataset.length)
            note = f"training {model.name} on {dataset.name}, epoch {epoch + 1}/{epochs}"
            for batch in self._batches(dataset.length, batch_size, note, epoch, epochs):
                samples, labels = self._read(dataset, order[batch])
                logits = self._forward(model, dataset, samples, labels)
                loss = F.cross_entropy(logits, paddle.to_tensor(labels))
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
        # Outputs computed before training describe weights that are gone.
        self._outputs = {key: out for key, out in self._outputs.items() if key[0] is not model}
        model.digest = None

    # ------------------------------------------------------------ progress

    @contextmanager
    def stage(self, stage: int) -> Iterator[None]:
        self._check_cancelled()
        self._stage = stage
        self._emit(0.0, "")
        start = time.perf_counter()
        try:
            yield
        finally:
            self._record(stage, time.perf_counter() - start)
        self._emit(1.0, "")

    def progress(self, fraction: float, message: str = "") -> None:
        self._check_cancelled()
        if fraction >= 1.0 or time.monotonic() - self._last_report >= PROGRESS_INTERVAL_S:
            self._emit(fraction, message)

    @contextmanager
    def labelled(self, label: str) -> Iterator[None]:
        outer, self._label = self._label, label
        try:
            yield
        finally:
            self._label = outer

    # ------------------------------------------------------------ internals

    def _in_memory(self, source: Any, field: str, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Every record of `source` as (samples, labels), when its float32 samples fit the worker's
        dataset_memory_mb; else None (it is then read batch by batch)."""
        length = len(source)
        first, _ = storage.read_records(source, [0], field)
        if length * first.nbytes > self.settings.dataset_memory_mb * 2**20:
            return None
        samples = np.empty((length, *first.shape[1:]), dtype=np.float32)
        labels = np.empty(length, dtype=np.int64)
        for chunk in self._batches(length, _READ_CHUNK, f"reading {name} into memory"):
            samples[chunk], labels[chunk] = storage.read_records(source, range(chunk.start, chunk.stop), field)
        return samples, labels

    def _cached_or_predicted(self, model: LoadedModel, dataset: Dataset, batch_size: int) -> Outputs:
        """The outputs from the worker's output cache when they are there, else computed (and
        stored there when both the model and the dataset have content digests)."""
        cacheable = isinstance(dataset, LoadedDataset) and dataset.digest is not None
        if isinstance(model, RemoteModel):
            return self._query_remote(model, dataset, batch_size)
        if self._output_cache is None or model.digest is None or not cacheable:
            return self._predict(model, dataset, batch_size)
        key = output_key(model.digest, dataset.digest, batch_size)
        outputs = self._output_cache.load(key, dataset.length)
        if outputs is None:
            outputs = self._predict(model, dataset, batch_size)
            self._output_cache.store(key, outputs)
        else:
            self.progress(1.0, f"outputs of {model.name} on {dataset.name} found in the output cache")
        return outputs

    def _predict(self, model: LoadedModel, dataset: Dataset, batch_size: int) -> Outputs:
        logits, labels = [], []
        with self._inference(model):
            for batch in self._batches(dataset.length, batch_size, f"querying {model.name} on {dataset.name}"):
                samples, batch_labels = self._read(dataset, range(batch.start, batch.stop))
                logits.append(self._forward(model, dataset, samples, batch_labels).numpy().astype(np.float32))
                labels.append(batch_labels)
        return Outputs(logits=np.concatenate(logits), labels=np.concatenate(labels))

    def _query_remote(self, model: RemoteModel, dataset: Dataset, batch_size: int) -> Outputs:
        """A deployed target's outputs, batch_size records per call; a labels-only target's as
        one-hot scores (its predicted labels are all that attacks allowed on it read). A record the
        job already sent as it is (through another handle: LIRA's query records are the audited
        datasets' records) is not sent again."""
        slots = self._answer_slots(model, dataset)
        missing = np.arange(dataset.length) if slots is None else \
            np.flatnonzero([not kept.known[row] for kept, row in slots])
        model.reserve(len(missing), dataset.name)
        answers: list[np.ndarray] = []
        for batch in self._batches(len(missing), batch_size, f"querying {model.path} on {dataset.name}"):
            samples, _ = self._read(dataset, missing[batch])
            answers.append(model.labels(samples.numpy()) if model.labels_only else model.scores(samples.numpy()))
        if slots is None:
            outputs = np.concatenate(answers)
        else:
            for position, answer in zip(missing, (a for batch in answers for a in batch), strict=True):
                kept, row = slots[position]
                kept.keep(row, answer)
            outputs = np.stack([kept.values[row] for kept, row in slots])
        _, true_labels = dataset.read(range(dataset.length))
        if model.labels_only:
            return Outputs(logits=one_hot(outputs, int(max(outputs.max(), true_labels.max())) + 1),
                           labels=true_labels)
        if true_labels.max() >= outputs.shape[1]:
            raise TaskError.at(dataset.field, f"{dataset.name} has label {true_labels.max()}, but {model.path} "
                                              f"answers only {outputs.shape[1]} classes")
        return Outputs(logits=outputs, labels=true_labels)

    def _answer_slots(self, model: RemoteModel, dataset: Dataset) -> list[tuple[_Answers, int]] | None:
        """Where each record of `dataset` keeps `model`'s answer in this job: (its dataset's answers,
        its row there); None for augmented records, whose answers are not kept."""
        if isinstance(dataset, SelectedRecords) and dataset.augment is not None:
            return None
        parts, rows = ((dataset,), np.arange(dataset.length)) if isinstance(dataset, LoadedDataset) else \
            (dataset.parts, dataset.indices)
        starts = np.cumsum([0, *(part.length for part in parts)])
        part_of = np.searchsorted(starts, rows, side="right") - 1
        kept = [self._answers.setdefault((model, part), _Answers(np.zeros(part.length, dtype=bool)))
                for part in parts]
        return [(kept[number], int(row - starts[number])) for number, row in zip(part_of, rows, strict=True)]

    def _labels(self, model: Model, dataset: Dataset, samples: paddle.Tensor, labels: np.ndarray) -> np.ndarray:
        """The label `model` gives each of `samples` (whose true labels are `labels`)."""
        if isinstance(model, RemoteModel):
            return model.labels(samples.numpy())
        return self._forward(model, dataset, samples, labels).argmax(axis=1).numpy()

    def _read(self, dataset: Dataset, indices: Sequence[int]) -> tuple[paddle.Tensor, np.ndarray]:
        """Records `indices` of `dataset`: their samples on the job's device, passed through the
        dataset's augmentation when it has one, and their labels."""
        samples, labels = dataset.read(indices)
        images = paddle.to_tensor(samples)
        augment = dataset.augment if isinstance(dataset, SelectedRecords) else None
        return (images if augment is None else device_augment.stacked(images, [augment])), labels

    def _forward(self, model: LoadedModel, dataset: Dataset, samples: paddle.Tensor,
                 labels: np.ndarray) -> paddle.Tensor:
        """The model's logits on `samples`, checked to be (batch, classes) wide enough for `labels`."""
        try:
            logits = model.layer(samples)
        except Exception as exc:
            raise TaskError.at(model.field, f"model {model.name} failed on samples of shape "
                                            f"{list(samples.shape[1:])} from {dataset.path}: {one_line(exc)}; "
                                            "does the model expect this dataset's samples?") from exc
        if not isinstance(logits, paddle.Tensor) or logits.ndim != 2 or logits.shape[0] != len(samples):
            got = list(logits.shape) if isinstance(logits, paddle.Tensor) else type(logits).__name__
            raise TaskError.at(model.field, f"model {model.name} must return logits of shape "
                                            f"[batch, num_classes] (here batch = {len(samples)}), got {got}")
        if not bool(paddle.isfinite(logits).all()):
            raise TaskError.at(model.field, f"model {model.name} returned NaN or infinite logits on {dataset.name}; "
                                            "check its weights and forward(), or lower the learning rate if it "
                                            "is being trained")
        num_classes = logits.shape[1]
        if labels.max() >= num_classes:
            raise TaskError.at(dataset.field, f"{dataset.name} has label {labels.max()}, but model {model.name} "
                                              f"has only {num_classes} classes (labels 0 to {num_classes - 1})")
        return logits

    @contextmanager
    def _inference(self, model: Model) -> Iterator[None]:
        if isinstance(model, LoadedModel):
            model.layer.eval()
        with paddle.no_grad():
            yield

    def _batches(self, n: int, batch_size: int, note: str, part: int = 0, parts: int = 1) -> Iterator[slice]:
        """`batches(n, batch_size)`, reporting progress (and checking cancellation) before each;
        `part` of `parts` places this pass within the stage (e.g. epoch 3 of 10)."""
        for batch in batches(n, batch_size):
            self.progress((part + batch.start / n) / parts, note)
            yield batch

    def _record(self, stage: int, seconds: float) -> None:
        """Adds a stage's time to `timings`; a stage entered right after itself (an attack's
        scoring, then the job's metrics) extends its entry."""
        if self.timings and self.timings[-1].stage == stage:
            self.timings[-1].seconds += seconds
        else:
            self.timings.append(results_pb2.StageTiming(stage=stage, seconds=seconds))

    def _emit(self, fraction: float, message: str) -> None:
        self._last_report = time.monotonic()
        if self._label:
            message = f"{self._label}: {message}" if message else self._label
        self._report(self._stage, fraction, message)

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise JobCancelled("the job was cancelled")
