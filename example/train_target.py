"""Trains the example's target model, digits_mlp, on the target members only.

    .venv/bin/python example/train_target.py

writes example/models/digits_mlp/digits_mlp.pdparams (wherever it is run from)
and prints the model's accuracy on its members and on the target non-members.
Training is deterministic: fixed seeds for the initial weights and the batch
order, one CPU thread, and a fixed number of epochs, so every run writes the same
bytes. The model is trained to memorise its 100 members, and it does: its
accuracy on them is about 1.0, clearly above its accuracy on unseen digits.

The shadow settings of example/tasks/mem_inf.yaml (shadow_epoch, shadow_lr,
batch_size) repeat EPOCHS, LEARNING_RATE and BATCH_SIZE, so the attacks' shadow
models are trained the way the target was.
"""

import importlib.util
import sys
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
LEARNING_RATE = 0.001
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
    members = digits.DigitsDataset("target_members")
    non_members = digits.DigitsDataset("target_non_members")

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(1)  # a fixed summation order, hence identical bytes
    paddle.seed(SEED)
    # Fresh parameter names (saved in the file) whatever else this process has built.
    with paddle.utils.unique_name.guard():
        model = load_module(MODEL_SOURCE).get_model()
    optimizer = paddle.optimizer.Adam(learning_rate=LEARNING_RATE, parameters=model.parameters())
    images, labels = paddle.to_tensor(members.images), paddle.to_tensor(members.labels)
    order = np.random.default_rng(SEED)
    model.train()
    for _ in range(EPOCHS):
        shuffled = order.permutation(len(members))
        for start in range(0, len(shuffled), BATCH_SIZE):
            batch = paddle.to_tensor(shuffled[start : start + BATCH_SIZE])
            loss = paddle.nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()

    model.eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    paddle.save(model.state_dict(), str(output))
    return Accuracy(train=_accuracy(model, members), test=_accuracy(model, non_members))


def _accuracy(model: paddle.nn.Layer, dataset: paddle.io.Dataset) -> float:
    with paddle.no_grad():
        predicted = model(paddle.to_tensor(dataset.images)).argmax(axis=1).numpy()
    return float(np.mean(predicted == dataset.labels))


def main() -> int:
    accuracy = train_target()
    print(f"wrote {WEIGHTS.relative_to(EXAMPLE.parent)}: "
          f"train accuracy {accuracy.train:.4f}, test accuracy {accuracy.test:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
