"""The example's data: scikit-learn's 8x8 digits, split once into four disjoint sets.

`load_digits()` ships inside scikit-learn, so nothing is downloaded. The 1797
images are split with a fixed seed, stratified by class so that every set holds
the same number of each digit: an attack then cannot tell the sets apart by
their label mix, only by what the model memorised. The images left
over after the four sets are unused.

The dataset folders' files load this module by path (the worker loads user
files by path, not as packages), so the split is defined here and only here.
"""

from functools import cache

import numpy as np
import paddle
from sklearn.datasets import load_digits

SPLITS = ("target_members", "target_non_members", "shadow_members", "shadow_non_members")
# Digits are easy to generalise from: trained on a few hundred images, the target would
# leak little. 10 images of each digit, 100 in all, per set keep its overfitting measurable.
IMAGES_PER_CLASS = 10
NUM_CLASSES = 10
SPLIT_SEED = 20190224
PIXEL_MAX = 16.0  # load_digits' pixels are counts 0..16


@cache
def split_indices() -> dict[str, np.ndarray]:
    """Indices into `load_digits()` of each split, sorted; disjoint and the same on every call.

    Each class's images are shuffled with SPLIT_SEED and dealt out in SPLITS order,
    IMAGES_PER_CLASS to each split."""
    labels = load_digits().target
    shuffle = np.random.default_rng(SPLIT_SEED)
    by_class = [shuffle.permutation(np.flatnonzero(labels == digit)) for digit in range(NUM_CLASSES)]
    splits = {}
    for position, name in enumerate(SPLITS):
        taken = slice(position * IMAGES_PER_CLASS, (position + 1) * IMAGES_PER_CLASS)
        index = np.sort(np.concatenate([images[taken] for images in by_class]))
        index.setflags(write=False)  # shared by every caller through the cache
        splits[name] = index
    return splits


class DigitsDataset(paddle.io.Dataset):
    """One split as `(image, label)`: float32 (1, 8, 8) in [0, 1] and an int64 label."""

    def __init__(self, split: str) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"unknown digits split {split!r}; the splits are {', '.join(SPLITS)}")
        digits = load_digits()
        index = split_indices()[split]
        self.images = (digits.images[index] / PIXEL_MAX).astype(np.float32)[:, np.newaxis]
        self.labels = digits.target[index].astype(np.int64)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.int64]:
        return self.images[i], self.labels[i]

    def __len__(self) -> int:
        return len(self.labels)

