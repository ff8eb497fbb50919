"""The second target's data: scikit-learn's 8x8 digits with their true labels, in four splits.

The example (example/digits.py) teaches its target a fifth of wrong labels so that every attack
has something to find. This target is the opposite case, used to check that privaudit's figures
hold on a model they were not designed around: clean labels, another architecture
(models/digits_cnn_clean), another split. It generalises well, so it leaks little, and an honest
audit says so.

The 1797 images are split by scikit-learn's stratified `train_test_split` with SPLIT_SEED into
SPLIT_SIZE images per split (the rest unused): the target's members, its non-members, and two
population splits an attacker may hold. Samples are float32 (1, 8, 8) in [0, 1].
"""

from functools import cache

import numpy as np
import paddle
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SPLITS = ("members", "non_members", "population_a", "population_b")
SPLIT_SIZE = 420
SPLIT_SEED = 7_2021
PIXEL_MAX = 16.0


@cache
def split_indices() -> dict[str, np.ndarray]:
    """Indices into load_digits() of each split: disjoint, stratified by digit, fixed."""
    labels = load_digits().target
    rest = np.arange(len(labels))
    splits = {}
    for name in SPLITS:
        taken, rest = train_test_split(rest, train_size=SPLIT_SIZE, stratify=labels[rest],
                                       random_state=SPLIT_SEED + len(splits))
        splits[name] = np.sort(taken)
    return splits


class CleanDigits(paddle.io.Dataset):
    """One split as (image, label): float32 (1, 8, 8) in [0, 1] and its true int64 label."""

    def __init__(self, split: str) -> None:
        super().__init__()
        digits = load_digits()
        rows = split_indices()[split]
        self.images = (digits.images[rows] / PIXEL_MAX).astype(np.float32)[:, np.newaxis]
        self.labels = digits.target[rows].astype(np.int64)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.int64]:
        return self.images[i], self.labels[i]

    def __len__(self) -> int:
        return len(self.labels)
