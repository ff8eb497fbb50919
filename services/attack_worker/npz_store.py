"""Arrays kept on disk under keys, and the base of the worker's caches built on them.

An entry is `<key>.npz` in the store's folder, which workers may share. Entries are written to a
temporary file and renamed into place, so a reader never sees half an entry; one that cannot be
read counts as absent, and a failed write only loses the entry. Past `max_bytes` the entries
used least recently (reading one marks it used) are removed until the folder fits again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from services.attack_worker.settings import WorkerSettings
from services.attack_worker.storage import one_line

log = logging.getLogger(__name__)


class NpzStore:
    """Entries in `folder` (created on the first write), at most `max_bytes` of them in all."""

    def __init__(self, folder: str | PathLike[str], max_bytes: int):
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under `key`, or None when there is no readable entry."""
        path = self._path(key)
        try:
            with np.load(path) as entry:
                arrays = {name: entry[name] for name in entry.files}
        except FileNotFoundError:
            return None
        except Exception as exc:
            log.warning("cache entry %s is unreadable, computing it again: %s", path, one_line(exc))
            return None
        with contextlib.suppress(OSError):  # another user's entry in a shared folder stays unmarked
            os.utime(path)
        return arrays

    def store(self, key: str, **arrays: np.ndarray) -> None:
        """Writes the entry atomically, then trims the store; a failure is logged, not raised."""
        temporary: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
            temporary = Path(name)
            with os.fdopen(handle, "wb") as file:
                np.savez(file, **arrays)
            temporary.chmod(0o644)  # mkstemp's 0600 would hide it from workers running as other users
            temporary.replace(self._path(key))
        except OSError as exc:
            log.warning("cannot write cache entry %s in %s: %s", key, self.folder, one_line(exc))
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            return
        self._trim()

    def _trim(self) -> None:
        """Removes the least recently used entries while the store holds more than max_bytes."""
        entries = []
        for path in self.folder.glob("*.npz"):
            try:
                status = path.stat()
            except FileNotFoundError:  # removed by another worker meanwhile
                continue
            entries.append((status.st_mtime, status.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"


class WorkerCache:
    """Base of a worker's caches: entries of one kind in the `FOLDER` folder of its cache folder."""

    FOLDER: ClassVar[str]

    def __init__(self, store: NpzStore):
        self._store = store

    @classmethod
    def of(cls, settings: WorkerSettings) -> Self | None:
        """The cache of a worker with `settings`; None when it has no cache folder."""
        if settings.cache_dir is None:
            return None
        return cls(NpzStore(Path(settings.cache_dir) / cls.FOLDER, settings.cache_max_mb * 2**20))
