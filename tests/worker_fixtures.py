"""Tiny model and dataset folders, in the seed's layout, for the attack worker's tests.

The model flattens its input and applies one 4x4 linear layer. Saved with the
identity matrix as weights, its prediction is the index of the sample's largest
value, so a dataset built by `records` is classified correctly exactly where we
say: a known answer for every accuracy and metric.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import paddle

from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.channels import open_channel
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc, task_pb2

NUM_CLASSES = 4
# Sample shapes of the same 4 values in each layout the contract allows.
LAYOUTS = {"HW": (2, 2), "CHW": (1, 2, 2), "HWC": (2, 2, 1)}

MODEL_CODE = f'''
import paddle


class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.linear = paddle.nn.Linear({NUM_CLASSES}, {NUM_CLASSES})

    def forward(self, x):
        return self.linear(paddle.flatten(x, start_axis=1))


def get_model():
    return Net()
'''

# `{label}` / `{sample}` are filled with expressions of `label` / `sample` giving the form under test.
DATASET_CODE = '''
import os
import time

import numpy as np
import paddle

_DATA = os.path.join(os.path.dirname(__file__), "records.npz")


class Records(paddle.io.Dataset):
    def __init__(self):
        super().__init__()
        data = np.load(_DATA)
        self.samples, self.labels = data["samples"], data["labels"]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        time.sleep({delay})
        sample, label = self.samples[i], int(self.labels[i])
        return {sample}, {label}


def get_dataset():
    return Records()
'''

LABEL_FORMS = {
    "int": "label",
    "numpy int64": "np.int64(label)",
    "0-d array": "np.array(label)",
    "shape-(1,) array": "np.array([label])",
    "shape-(1,) tensor": "paddle.to_tensor([label])",
}
SAMPLE_FORMS = {"numpy": "sample", "tensor": "paddle.to_tensor(sample)"}


def records(labels: list[int], correct: list[bool], layout: str = "HW") -> tuple[np.ndarray, np.ndarray]:
    """Samples that the identity model classifies as `labels` where `correct`, else as the next class."""
    labels_array = np.asarray(labels, dtype=np.int64)
    predicted = np.where(correct, labels_array, (labels_array + 1) % NUM_CLASSES)
    samples = np.eye(NUM_CLASSES, dtype=np.float32)[predicted]
    return samples.reshape(len(labels), *LAYOUTS[layout]), labels_array


def write_model(folder: Path, weights: dict[str, np.ndarray] | None = None, code: str = MODEL_CODE) -> Path:
    """A model folder with `model.py` and, unless weights is None, `model.pdparams`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(code)
    if weights is not None:
        paddle.save({key: paddle.to_tensor(value) for key, value in weights.items()}, str(folder / "model.pdparams"))
    return folder


def identity_weights() -> dict[str, np.ndarray]:
    return {"linear.weight": np.eye(NUM_CLASSES, dtype=np.float32),
            "linear.bias": np.zeros(NUM_CLASSES, dtype=np.float32)}


def write_dataset(folder: Path, samples: np.ndarray, labels: np.ndarray, label_form: str = "int",
                  sample_form: str = "numpy", delay: float = 0.0) -> Path:
    """A dataset folder with `dataset.py` serving `records.npz`; `delay` seconds per record read."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.py").write_text(DATASET_CODE.format(
        label=LABEL_FORMS[label_form], sample=SAMPLE_FORMS[sample_form], delay=delay))
    np.savez(folder / "records.npz", samples=samples, labels=labels)
    return folder


@dataclass(frozen=True)
class AuditTree:
    """A storage root with a trained model and its member / non-member datasets."""

    root: Path
    model: str  # paths relative to root, as a task writes them
    members: str
    non_members: str
    member_correct: np.ndarray  # which records the model classifies correctly
    non_member_correct: np.ndarray


def write_audit_tree(root: Path, member_correct: list[bool] | None = None,
                     non_member_correct: list[bool] | None = None, delay: float = 0.0) -> AuditTree:
    """The model (identity weights) in root/models/net, members (by default 8 records, 6 classified
    correctly: train_acc 0.75) and non-members (8 records, 3 correct: test_acc 0.375)."""
    member_correct = member_correct if member_correct is not None else [True] * 6 + [False] * 2
    non_member_correct = non_member_correct if non_member_correct is not None else [True] * 3 + [False] * 5
    write_model(root / "models" / "net", identity_weights())
    for name, correct in (("members", member_correct), ("non_members", non_member_correct)):
        labels = [i % NUM_CLASSES for i in range(len(correct))]
        write_dataset(root / "datasets" / name, *records(labels, correct), delay=delay)
    return AuditTree(root, "models/net", "datasets/members", "datasets/non_members",
                     np.array(member_correct), np.array(non_member_correct))


def baseline_request(tree: AuditTree, attack_index: int = 0, seed: int = 7, target_model: str | None = None,
                     task_id: str = "task-1") -> attack_worker_pb2.RunAttackRequest:
    """A RunAttack request for BASELINE on the tree (or on another `target_model` path)."""
    args = task_pb2.BaselineArgs(
        test_datasets=task_pb2.DatasetPair(members=tree.members, non_members=tree.non_members),
        target_model=tree.model if target_model is None else target_model,
    )
    attack = task_pb2.AttackSpec(type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE, baseline=args)
    return attack_worker_pb2.RunAttackRequest(task_id=task_id, attack_index=attack_index, attack=attack, seed=seed)


@contextmanager
def served_worker(root: Path, **settings: Any) -> Iterator[
        tuple[attack_worker_pb2_grpc.AttackWorkerServiceStub, grpc.Channel]]:
    """A real AttackWorkerService over `root` with further WorkerSettings `settings`, served
    in-process on loopback (its health following its job launcher), and a stub to it."""
    from privaudit.services.attack_worker.server import serve

    service = serve(WorkerSettings(str(root), **settings), "127.0.0.1:0")
    channel = open_channel(service.address)
    try:
        yield attack_worker_pb2_grpc.AttackWorkerServiceStub(channel), channel
    finally:
        channel.close()
        service.stop(grace=0)
