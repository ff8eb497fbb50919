"""The shadow cache: trained shadow models' outputs kept on shared storage (`--cache-dir`), so
that a rerun, or another attack that would train the same shadow model, skips the training.

An entry is `<key>.npz` holding the shadow model's logits on every population record
(views, N, classes) and its training mask (N,). The key is a SHA-256 digest of everything that
decides those outputs: the architecture's code, each population dataset's identity (its folder
relative to the storage root, its code and its length; the data files a dataset's code reads are
not hashed, so changing them in place needs a new folder or an emptied cache), the training
mask, the training arguments, the shadow model's seed and the query views. Entries are written
to a temporary file and renamed into place, so concurrent workers never read half an entry;
one that cannot be read or does not fit counts as absent, and a failed write only loses the entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from os import PathLike
from pathlib import Path

import numpy as np

from services.attack_worker import storage
from services.attack_worker.attacks.shadow_models import Setup, population_folders
from services.attack_worker.attacks.shadow_population import shadow_seed

log = logging.getLogger(__name__)

# Part of every key: a change to how shadow models are trained or stored must change it.
FORMAT = "privaudit shadow outputs v1: Adam, cross-entropy, float32 logits (views, records, classes)"


def shadow_key(storage_root: str | PathLike[str], setup: Setup, index: int) -> str:
    """The cache key of shadow model `index` of the attack `setup` describes."""
    args = setup.args
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}:{len(data)}:".encode() + data)

    add("format", FORMAT.encode())
    add("architecture", _folder_identity(storage_root, "target_model", args.target_model))
    for (field, path), length in zip(population_folders(args), setup.population.lengths, strict=True):
        add("dataset", _folder_identity(storage_root, field, path) + str(length).encode())
    add("members", np.packbits(setup.masks[index]).tobytes())
    training = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                "seed": shadow_seed(setup.seed, index), "views": [repr(view) for view in setup.views]}
    add("training", json.dumps(training, sort_keys=True).encode())
    return digest.hexdigest()


class ShadowCache:
    """Entries in a writable folder shared by the workers."""

    def __init__(self, folder: str | PathLike[str]):
        self.folder = Path(folder)

    def load(self, key: str, in_mask: np.ndarray, num_views: int) -> np.ndarray | None:
        """The logits stored under `key`, or None when there is no usable entry (absent, unreadable,
        or not of this training mask and number of views)."""
        path = self.folder / f"{key}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path) as entry:
                logits, stored_mask = entry["logits"], entry["in_mask"]
        except Exception as exc:
            log.warning("shadow cache entry %s is unreadable, training again: %s", path, storage.one_line(exc))
            return None
        fits = logits.ndim == 3 and logits.shape[:2] == (num_views, len(in_mask))
        if not fits or not np.array_equal(stored_mask, in_mask):
            log.warning("shadow cache entry %s does not fit its key, training again", path)
            return None
        return logits

    def store(self, key: str, logits: np.ndarray, in_mask: np.ndarray) -> None:
        """Writes the entry atomically; a failure is logged, not raised."""
        temporary: Path | None = None
        try:
            handle, name = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
            temporary = Path(name)
            with os.fdopen(handle, "wb") as file:
                np.savez(file, logits=np.asarray(logits, dtype=np.float32), in_mask=np.asarray(in_mask, dtype=bool))
            temporary.chmod(0o644)  # mkstemp's 0600 would hide it from workers running as other users
            temporary.replace(self.folder / f"{key}.npz")
        except OSError as exc:
            log.warning("cannot write shadow cache entry %s in %s: %s", key, self.folder, storage.one_line(exc))
            if temporary is not None:
                temporary.unlink(missing_ok=True)


def _folder_identity(storage_root: str | PathLike[str], field: str, path: str) -> bytes:
    """A folder's path relative to the real storage root, and the names and contents of its `.py` files."""
    folder = storage.resolve_folder(storage_root, path, field)
    parts = [str(folder.relative_to(os.path.realpath(storage_root))).encode()]
    for code in sorted(folder.glob("*.py")):
        parts += [code.name.encode(), hashlib.sha256(code.read_bytes()).digest()]
    return b"\0".join(parts)
