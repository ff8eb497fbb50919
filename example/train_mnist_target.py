"""Trains the MNIST example's target model, mnist_cnn, on the target members only.

    .venv/bin/python example/train_mnist_target.py

reads example/datasets/mnist_target_members/data.npz (written by example/mnist_data.py),
writes example/models/mnist_cnn/mnist_cnn.pdparams and prints the model's accuracy on its
members and on the target non-members. Deterministic as example/train_target.py is (fixed
seeds, one CPU thread, a fixed number of epochs), and trained the same way (its `train_and_save`).
Nothing is regularised: trained to convergence on 1,000 real digits, the model labels its
members all correctly and unseen digits somewhat less often, which is the gap the attacks
measure, on clean labels.

example/tasks/mem_inf_mnist.yaml repeats EPOCHS, LEARNING_RATE and BATCH_SIZE for the
attacks' shadow models, so they are trained the way the target was.
"""

import sys
from pathlib import Path

import numpy as np
from train_target import Accuracy, train_and_save

EXAMPLE = Path(__file__).resolve().parent
MODEL_SOURCE = EXAMPLE / "models" / "mnist_cnn" / "mnist_cnn.py"
WEIGHTS = MODEL_SOURCE.with_suffix(".pdparams")
SEED = 20260419
EPOCHS = 30
LEARNING_RATE = 0.002
BATCH_SIZE = 64


def records(split: str) -> list[tuple[np.ndarray, int]]:
    """The (image, label) records of example/datasets/mnist_<split>/data.npz."""
    with np.load(EXAMPLE / "datasets" / f"mnist_{split}" / "data.npz", allow_pickle=False) as data:
        return list(zip(data["x"], data["y"].tolist(), strict=True))


def train_target(output: Path = WEIGHTS) -> Accuracy:
    """Trains mnist_cnn from its seeded initial weights, saves them to `output`, and returns
    its accuracy on the target members and non-members."""
    return train_and_save(MODEL_SOURCE, records("target_members"), records("target_non_members"), output,
                          EPOCHS, LEARNING_RATE, BATCH_SIZE, SEED)


def main() -> int:
    trained = train_target()
    print(f"wrote {WEIGHTS.relative_to(EXAMPLE.parent)}: "
          f"train accuracy {trained.train:.4f}, test accuracy {trained.test:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
