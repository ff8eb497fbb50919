"""Split 'non_members' of the second target's clean digits (tests/fidelity/clean_digits.py)."""

import importlib.util
from pathlib import Path

import paddle

_spec = importlib.util.spec_from_file_location("clean_digits", Path(__file__).parents[2] / "clean_digits.py")
_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data)


def get_dataset() -> paddle.io.Dataset:
    return _data.CleanDigits("non_members")
