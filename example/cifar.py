"""CIFAR-10 and CIFAR-100 from their standard python archives, for the seed's CIFAR task.

Nothing is downloaded. Put the archives, as published at
https://www.cs.toronto.edu/~kriz/cifar.html, in example/data/ (next to this file):

- example/data/cifar-10-python.tar.gz: cifar-10-batches-py/data_batch_1 .. data_batch_5
  (the 50,000 training images) and cifar-10-batches-py/test_batch (10,000);
- example/data/cifar-100-python.tar.gz: cifar-100-python/train (50,000) and
  cifar-100-python/test (10,000), labelled by `fine_labels` (the 100 classes).

Each member is a pickle holding `data`, uint8 (N, 3072) with each row an image in
channel-major order (1024 red, then green, then blue values, each plane row-major), and
its labels. The archives are the user's own files and are unpickled as they are: keep
only the published archives there.

A record is `(image, label)`: the image float32 (3, 32, 32), each channel standardised by
its mean and standard deviation over the training set; the label an int64. Images are
kept as uint8 and standardised one record at a time.

The dataset folders' files load this module by path, so the format is read here only.
"""

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle

DATA = Path(__file__).resolve().parent / "data"
SIDE, CHANNELS = 32, 3


@dataclass(frozen=True)
class Archive:
    """One CIFAR archive: its file, its members per split, its label key and channel statistics."""

    file: str
    members: dict[str, tuple[str, ...]]
    label_key: bytes
    mean: tuple[float, float, float]  # per channel, of the training images scaled to [0, 1]
    std: tuple[float, float, float]


ARCHIVES = {
    "cifar10": Archive(
        file="cifar-10-python.tar.gz",
        members={"train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
                 "test": ("cifar-10-batches-py/test_batch",)},
        label_key=b"labels",
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    ),
    "cifar100": Archive(
        file="cifar-100-python.tar.gz",
        members={"train": ("cifar-100-python/train",), "test": ("cifar-100-python/test",)},
        label_key=b"fine_labels",
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
    ),
}


class CifarDataset(paddle.io.Dataset):
    """One split of a CIFAR archive as `(image, label)` records."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, archive: Archive) -> None:
        super().__init__()
        self.images = images  # uint8 (N, 3, 32, 32)
        self.labels = labels  # int64 (N,)
        self._mean = np.array(archive.mean, np.float32).reshape(CHANNELS, 1, 1)
        self._std = np.array(archive.std, np.float32).reshape(CHANNELS, 1, 1)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.int64]:
        return (self.images[i] / np.float32(255) - self._mean) / self._std, self.labels[i]

    def __len__(self) -> int:
        return len(self.labels)


def get_dataset(name: str, split: str, folder: Path = DATA) -> CifarDataset:
    """Split `train` or `test` of archive `cifar10` or `cifar100`, read from `folder`."""
    archive = ARCHIVES[name]
    images, labels = _read(folder / archive.file, archive.members[split], archive.label_key)
    return CifarDataset(images, labels, archive)


def _read(path: Path, members: tuple[str, ...], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The images, uint8 (N, 3, 32, 32), and int64 labels of `members` of the archive at `path`, in order."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: put the CIFAR python archive {path.name} there "
                                "(from https://www.cs.toronto.edu/~kriz/cifar.html; nothing is downloaded)")
    images, labels = [], []
    with tarfile.open(path, "r:gz") as archive:
        names = set(archive.getnames())
        for member in members:
            if member not in names:
                raise ValueError(f"{path} has no member {member}: is it the python version of the archive, "
                                 f"{path.name}, as published?")
            batch = pickle.load(archive.extractfile(member), encoding="bytes")
            data, batch_labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key], np.int64)
            if data.dtype != np.uint8 or data.shape != (len(batch_labels), CHANNELS * SIDE * SIDE):
                raise ValueError(f"{path}: {member} holds data {data.dtype} {list(data.shape)}, expected uint8 "
                                 f"[{len(batch_labels)}, {CHANNELS * SIDE * SIDE}] (one row per label)")
            images.append(data.reshape(-1, CHANNELS, SIDE, SIDE))
            labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)
