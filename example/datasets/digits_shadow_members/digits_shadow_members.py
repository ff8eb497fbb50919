"""The attacker's auxiliary data that shadow models are trained on.

One of the four disjoint splits of scikit-learn's digits defined in example/digits.py.
"""

import importlib.util
from pathlib import Path

import paddle

_spec = importlib.util.spec_from_file_location("example_digits", Path(__file__).parents[2] / "digits.py")
_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_digits)


def get_dataset() -> paddle.io.Dataset:
    return _digits.DigitsDataset("shadow_members")
