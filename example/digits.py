"""The example's data: scikit-learn's 8x8 digits, split once into four disjoint sets, with noisy labels.

`load_digits()` ships inside scikit-learn, so nothing is downloaded. The 1797
images are split with a fixed seed, stratified by class, IMAGES_PER_CLASS of each
digit per set (400 images per set); the 197 images left over are unused.

Why noisy labels. Clean digits are too easy to learn from: a network trained on a
few hundred of them labels unseen digits almost as well as its own (trained on 100
clean images, digits_mlp scored 1.00 on them and 0.91 on unseen ones), so it leaks
little: BASELINE's AUC was 0.545 on 100 + 100 records, within noise of 0.5. Real data
has mislabelled and atypical records, and those are what models memorise and leak
(Feldman, STOC 2020). So the example's labeller errs: in every set, LABEL_NOISE of
each digit's images carry a wrong label. A model can learn those labels only by
memorising the very images, so it gets its own members "right" (as labelled) and
the mislabelled unseen images wrong: every attack has something real to find, and
how much is set by one documented number. The noise is the same process in all four
sets, so members and non-members still come from one distribution. 400 images per
set keep each AUC's standard error near 0.02 and make TPR at 1% FPR measurable
(it needs at least 100 non-members).

The noise is deterministic and label-balanced: in each set, the same number of
images of each digit is relabelled, each digit by the same list of shifts
(label + shift mod 10, shift in 1..9), so every set holds exactly
IMAGES_PER_CLASS labels of each class. An attack therefore cannot tell the sets
apart by their label mix, only by what the model memorised; and a model that
ignores its input (the control, digits_constant) is right on exactly as many
members as non-members.

The dataset folders' files load this module by path (the worker loads user
files by path, not as packages), so the splits are defined here and only here.
"""

from functools import cache

import numpy as np
import paddle
from sklearn.datasets import load_digits

SPLITS = ("target_members", "target_non_members", "shadow_members", "shadow_non_members")
IMAGES_PER_CLASS = 40  # the rarest digit has 174 images: 4 x 40 fit
NUM_CLASSES = 10
LABEL_NOISE = 0.2  # share of each digit's images, in each set, given a wrong label
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
        splits[name] = _read_only(np.sort(np.concatenate([images[taken] for images in by_class])))
    return splits


@cache
def noisy_labels(split: str) -> np.ndarray:
    """The labels of `split`'s images as the example's labeller gives them: the true digit,
    except for round(LABEL_NOISE * IMAGES_PER_CLASS) images of each digit, chosen with a seed
    of their own per split, whose label is shifted by a non-zero amount."""
    true = load_digits().target[split_indices()[split]]
    rng = np.random.default_rng([SPLIT_SEED, SPLITS.index(split)])
    wrong_per_class = round(LABEL_NOISE * IMAGES_PER_CLASS)
    shifts = rng.integers(1, NUM_CLASSES, size=wrong_per_class)  # shared by every digit: labels stay balanced
    labels = true.copy()
    for digit in range(NUM_CLASSES):
        relabelled = rng.choice(np.flatnonzero(true == digit), size=wrong_per_class, replace=False)
        labels[relabelled] = (digit + shifts) % NUM_CLASSES
    return _read_only(labels.astype(np.int64))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # shared by every caller through the cache
    return array


class DigitsDataset(paddle.io.Dataset):
    """One split as `(image, label)`: float32 (1, 8, 8) in [0, 1] and its noisy int64 label."""

    def __init__(self, split: str) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"unknown digits split {split!r}; the splits are {', '.join(SPLITS)}")
        images = load_digits().images[split_indices()[split]]
        self.images = (images / PIXEL_MAX).astype(np.float32)[:, np.newaxis]
        self.labels = noisy_labels(split)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.int64]:
        return self.images[i], self.labels[i]

    def __len__(self) -> int:
        return len(self.labels)
