"""CIFAR-10's 50,000 training images: the target model's members in the seed's CIFAR
task (example/train_cifar_target.py trains it on them).

Read from the archive in example/data/ by example/cifar.py, which says where to get it.
"""

import importlib.util
from pathlib import Path

import paddle

_spec = importlib.util.spec_from_file_location("example_cifar", Path(__file__).parents[2] / "cifar.py")
_cifar = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cifar)


def get_dataset() -> paddle.io.Dataset:
    return _cifar.get_dataset("cifar10", "train")
