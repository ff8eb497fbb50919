"""The shadow cache: trained shadow models' outputs kept on shared storage (`--cache-dir`), so
that a rerun, or another attack that would train the same shadow model, skips the training.

An entry (see `npz_store`) holds the shadow model's logits on every population record
(views, N, classes) and its training mask (N,). The key is a SHA-256 digest of everything that
decides those outputs: the architecture's code, each population dataset's records (their digest,
when the dataset was read into memory; else its folder relative to the storage root, its code and
its length, so that changing the data files of such a dataset in place needs a new folder or an
emptied cache), the training
mask, the training arguments, the shadow model's seed and the query views. An entry that does
not fit its key counts as absent. When the workers share the folder, a shadow job's output
refers to its entry by key and fingerprint (size, SHA-256), and the score job reads it from here.
When they do not, the orchestrator relays the entry's bytes in chunks (`entry_exchange`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from os import PathLike

import numpy as np

from privaudit.services.attack_worker import storage
from privaudit.services.attack_worker.attacks.shadow_models import Setup, population_folders
from privaudit.services.attack_worker.attacks.shadow_population import shadow_seed
from privaudit.services.attack_worker.entry_exchange import ShadowEntries
from privaudit.services.attack_worker.npz_store import EntryProblem
from privaudit.services.common.entry_transfer import Fingerprint

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
    add("architecture", _folder_identity(storage_root, *args.target_architecture()))
    for (field, path), dataset in zip(population_folders(args), setup.datasets, strict=True):
        in_memory = getattr(dataset, "digest", None)
        add("dataset", in_memory.encode() if in_memory else
            _folder_identity(storage_root, field, path) + str(len(dataset)).encode())
    add("members", np.packbits(setup.masks[index]).tobytes())
    training = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                "seed": shadow_seed(setup.seed, index), "views": [repr(view) for view in setup.views]}
    add("training", json.dumps(training, sort_keys=True).encode())
    return digest.hexdigest()


class ShadowCache(ShadowEntries):
    """Shadow outputs in the `shadows` folder of a worker's cache folder (see `ShadowEntries`
    for its bound), read and written as arrays."""

    def load(self, key: str, in_mask: np.ndarray, num_views: int) -> tuple[np.ndarray, Fingerprint] | None:
        """The logits stored under `key` and the entry's fingerprint, or None when there is no
        usable entry (absent, unreadable, or not of this training mask and number of views)."""
        try:
            return self.read(key, in_mask, num_views)
        except EntryProblem as problem:
            if not problem.absent:
                log.warning("shadow cache entry %s: %s; training again", key, problem)
            return None

    def read(self, key: str, in_mask: np.ndarray, num_views: int,
             expected: Fingerprint | None = None) -> tuple[np.ndarray, Fingerprint]:
        """The logits (views, N, classes) stored under `key` and the entry's fingerprint.
        EntryProblem when the entry is absent, is not `expected`, cannot be read, or does not
        fit its key (another training mask or number of views)."""
        entry, fingerprint = self._store.fetch(key, expected)
        logits, stored_mask = entry.get("logits"), entry.get("in_mask")
        fits = (logits is not None and stored_mask is not None and logits.ndim == 3
                and logits.shape[:2] == (num_views, len(in_mask)) and np.array_equal(stored_mask, in_mask))
        if not fits:
            raise EntryProblem(f"entry {key} does not fit its key (other records or views)")
        return logits, fingerprint

    def store(self, key: str, logits: np.ndarray, in_mask: np.ndarray) -> Fingerprint | None:
        """Keeps the entry; its fingerprint, or None when it could not be written (logged)."""
        return self._store.store(key, logits=np.asarray(logits, dtype=np.float32),
                                 in_mask=np.asarray(in_mask, dtype=bool))


def _folder_identity(storage_root: str | PathLike[str], field: str, path: str) -> bytes:
    """A folder's path relative to the real storage root, and the names and contents of its `.py` files."""
    folder = storage.resolve_folder(storage_root, path, field)
    parts = [str(folder.relative_to(os.path.realpath(storage_root))).encode()]
    for code in sorted(folder.glob("*.py")):
        parts += [code.name.encode(), hashlib.sha256(code.read_bytes()).digest()]
    return b"\0".join(parts)
