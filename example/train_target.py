"""Trains the example's target model, digits_mlp, on the target members only.

    .venv/bin/python example/train_target.py

writes example/models/digits_mlp/digits_mlp.pdparams (wherever it is run from)
and prints the model's accuracy on its members and on the target non-members.
Training is deterministic: fixed seeds for the initial weights and the batch
order, one CPU thread, and a fixed number of epochs, so every run writes the same
bytes. The model is trained to memorise its 400 members, wrong labels included
(see example/digits.py), and it does: its accuracy on them is 1.0, far above
its accuracy on unseen digits (about 0.6).

The shadow settings of example/tasks/mem_inf.yaml (shadow_epoch, shadow_lr,
batch_size) repeat EPOCHS, LEARNING_RATE and BATCH_SIZE, so the attacks' shadow
models are trained the way the target was.
"""

import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import paddle

EXAMPLE = Path(__file__).resolve().parent
MODEL_SOURCE = EXAMPLE / "models" / "digits_mlp" / "digits_mlp.py"
WEIGHTS = MODEL_SOURCE.with_suffix(".pdparams")
SEED = 20190224
EPOCHS = 200
LEARNING_RATE = 0.003
BATCH_SIZE = 64


@dataclass(frozen=True)
class Accuracy:
    """Share of correctly classified images among the members and the non-members."""

    train: float
    test: float


def load_module(path: Path) -> ModuleType:
    """Executes the Python file at `path` as a fresh module, as the worker loads user files."""
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_target(output: Path = WEIGHTS) -> Accuracy:
    """Trains digits_mlp from its seeded initial weights, saves them to `output`, and
    returns its accuracy on the target members and non-members."""
    digits = load_module(EXAMPLE / "digits.py")
    return train_and_save(MODEL_SOURCE, digits.DigitsDataset("target_members"),
                          digits.DigitsDataset("target_non_members"), output, EPOCHS, LEARNING_RATE, BATCH_SIZE, SEED)


def train_and_save(model_source: Path, members: paddle.io.Dataset, non_members: paddle.io.Dataset, output: Path,
                   epochs: int, lr: float, batch_size: int, seed: int) -> Accuracy:
    """Trains the model `model_source` defines on `members` from its seeded initial weights, on one
    CPU thread (a fixed summation order, hence identical bytes every time), saves its weights to
    `output` and returns its accuracy on members and non-members."""
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(1)
    paddle.seed(seed)
    # Fresh parameter names (saved in the file) whatever else this process has built.
    with paddle.utils.unique_name.guard():
        model = load_module(model_source).get_model()
    fit(model, members, epochs, lr, batch_size, seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    paddle.save(model.state_dict(), str(output))
    return Accuracy(train=accuracy(model, members, batch_size), test=accuracy(model, non_members, batch_size))


def fit(model: paddle.nn.Layer, dataset: paddle.io.Dataset, epochs: int, lr: float, batch_size: int,
        seed: int, report: Callable[[int, float], None] | None = None) -> None:
    """Trains `model` in place with Adam and cross-entropy, the records in an order drawn from
    `seed` each epoch; `report(epoch, mean loss)` after each epoch when given."""
    optimizer = paddle.optimizer.Adam(learning_rate=lr, parameters=model.parameters())
    order = np.random.default_rng(seed)
    model.train()
    for epoch in range(epochs):
        shuffled, losses = order.permutation(len(dataset)), []
        for start in range(0, len(shuffled), batch_size):
            images, labels = read_batch(dataset, shuffled[start : start + batch_size])
            loss = paddle.nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            losses.append(float(loss))
        if report:
            report(epoch, float(np.mean(losses)))
    model.eval()


def accuracy(model: paddle.nn.Layer, dataset: paddle.io.Dataset, batch_size: int) -> float:
    """Share of `dataset`'s records that `model` labels correctly."""
    model.eval()
    correct = 0
    with paddle.no_grad():
        for start in range(0, len(dataset), batch_size):
            images, labels = read_batch(dataset, range(start, min(start + batch_size, len(dataset))))
            correct += int((model(images).argmax(axis=1) == labels).sum())
    return correct / len(dataset)


def read_batch(dataset: paddle.io.Dataset, indices: Iterable[int]) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Records `indices` of `dataset` as a batch: (samples, int64 labels) tensors."""
    records = [dataset[int(i)] for i in indices]
    images = np.stack([image for image, _ in records])
    return paddle.to_tensor(images), paddle.to_tensor(np.array([label for _, label in records], dtype=np.int64))


def main() -> int:
    trained = train_target()
    print(f"wrote {WEIGHTS.relative_to(EXAMPLE.parent)}: "
          f"train accuracy {trained.train:.4f}, test accuracy {trained.test:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
