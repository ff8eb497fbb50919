"""Trains the second target, digits_cnn_clean, on the clean digits' `members` split.

    .venv/bin/python tests/fidelity/train_second_target.py

Writes models/digits_cnn_clean/digits_cnn_clean.pdparams next to its .py (deterministic: seeded,
one thread) and prints train and test accuracy. EPOCHS, LEARNING_RATE and BATCH_SIZE are what
tasks/second_target.yaml gives the attacks' shadow models, so they mirror the target.
"""

import importlib.util
import sys
from pathlib import Path

import paddle

HERE = Path(__file__).resolve().parent
MODEL_SOURCE = HERE / "models" / "digits_cnn_clean" / "digits_cnn_clean.py"
WEIGHTS = MODEL_SOURCE.with_suffix(".pdparams")
SEED = 31337
EPOCHS = 60
LEARNING_RATE = 0.001
BATCH_SIZE = 32


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"fidelity_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    training = _module(HERE.parents[1] / "example" / "train_target.py")  # its fit() and accuracy()
    data = _module(HERE / "clean_digits.py")
    members, non_members = data.CleanDigits("members"), data.CleanDigits("non_members")
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(1)
    paddle.seed(SEED)
    with paddle.utils.unique_name.guard():
        model = training.load_module(MODEL_SOURCE).get_model()
    training.fit(model, members, EPOCHS, LEARNING_RATE, BATCH_SIZE, SEED)
    paddle.save(model.state_dict(), str(WEIGHTS))
    print(f"wrote {WEIGHTS.name}: train accuracy {training.accuracy(model, members, BATCH_SIZE):.4f}, "
          f"test accuracy {training.accuracy(model, non_members, BATCH_SIZE):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
