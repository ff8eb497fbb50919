"""Trains the seed's CIFAR target, resnet18_10classes, on CIFAR-10's 50,000 training images.

    .venv/bin/python example/train_cifar_target.py [--epochs N]

needs example/data/cifar-10-python.tar.gz (see example/cifar.py), writes
example/models/resnet18_10classes/resnet18_10classes.pdparams and prints the model's
accuracy on the training and the test images. It uses a GPU when Paddle has one; on a
CPU an epoch takes hours, which is why no test or CI job runs it.

Training is as the seed's task file trains its shadow models (Adam, learning rate
0.0002, batch size 128, 10 epochs), seeded, with no augmentation or regularisation: the
model is meant to overfit its members, as an audit target should be able to.
"""

import argparse
import sys
from pathlib import Path

import paddle

# Run as a script, this folder is on sys.path: the digits trainer's loop serves both.
from train_target import Accuracy, accuracy, fit, load_module

EXAMPLE = Path(__file__).resolve().parent
MODEL_SOURCE = EXAMPLE / "models" / "resnet18_10classes" / "resnet18_10classes.py"
WEIGHTS = MODEL_SOURCE.with_suffix(".pdparams")
SEED = 20190224
EPOCHS = 10
LEARNING_RATE = 0.0002
BATCH_SIZE = 128


def train_cifar_target(output: Path = WEIGHTS, epochs: int = EPOCHS, data: Path | None = None) -> Accuracy:
    """Trains resnet18_10classes from seeded initial weights on the CIFAR-10 training images of
    the archive in folder `data` (by default example/data), saves its weights to `output`, and
    returns its train and test accuracy."""
    cifar = load_module(EXAMPLE / "cifar.py")
    data = cifar.DATA if data is None else data
    members, non_members = cifar.get_dataset("cifar10", "train", data), cifar.get_dataset("cifar10", "test", data)
    paddle.seed(SEED)
    with paddle.utils.unique_name.guard():
        model = load_module(MODEL_SOURCE).get_model()
    fit(model, members, epochs, LEARNING_RATE, BATCH_SIZE, SEED,
        report=lambda epoch, loss: print(f"epoch {epoch + 1}/{epochs}: mean loss {loss:.4f}", flush=True))
    output.parent.mkdir(parents=True, exist_ok=True)
    paddle.save(model.state_dict(), str(output))
    return Accuracy(train=accuracy(model, members, BATCH_SIZE), test=accuracy(model, non_members, BATCH_SIZE))


def main() -> int:
    parser = argparse.ArgumentParser(description="Train the seed's CIFAR-10 target model.")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs (default {EPOCHS})")
    epochs = parser.parse_args().epochs
    paddle.set_device("gpu" if paddle.device.is_compiled_with_cuda() else "cpu")
    try:
        trained = train_cifar_target(epochs=epochs)
    except (FileNotFoundError, ValueError) as error:  # a missing or malformed archive
        print(f"train_cifar_target: {error}", file=sys.stderr)
        return 2
    print(f"wrote {WEIGHTS.relative_to(EXAMPLE.parent)}: "
          f"train accuracy {trained.train:.4f}, test accuracy {trained.test:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
