"""Arrays kept on disk under keys, and the base of the worker's caches built on them.

An entry is `<key>.npz` in the store's folder, which workers may share. Entries are written to a
temporary file and renamed into place, so a reader never sees half an entry; one that cannot be
read counts as absent, and a failed write only loses the entry. An entry's bytes follow from its
arrays alone (no time stamps in the archive), so its `Fingerprint` (size and SHA-256) names its
content: whoever wrote it, a reader can check it holds what a writer described. Past `max_bytes`
the entries used least recently (reading one marks it used) are removed until the folder fits
again, except those used within the last `keep_recent_s` seconds, which stay even past the bound.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import time
import zipfile
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar, Self

from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.entry_transfer import EntryAssembly, Fingerprint
from privaudit.services.common.errors import one_line

if TYPE_CHECKING:  # numpy is imported where arrays are read or written: the worker's serving process
    import numpy as np  # only moves entries' bytes and never imports it (8 MB less a process)

log = logging.getLogger(__name__)

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # every member's time stamp, so that equal arrays give equal bytes


class EntryProblem(Exception):
    """Why an entry cannot be used, in words: absent, other bytes than expected, or unreadable."""

    def __init__(self, message: str, absent: bool = False):
        super().__init__(message)
        self.absent = absent


class NpzStore:
    """Entries in `folder` (created on the first write), at most `max_bytes` of them in all
    beyond those used in the last `keep_recent_s` seconds."""

    def __init__(self, folder: str | PathLike[str], max_bytes: int, keep_recent_s: float = 0.0):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.keep_recent_s = keep_recent_s

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under `key`, or None when there is no readable entry."""
        try:
            return self.fetch(key)[0]
        except EntryProblem as problem:
            if not problem.absent:
                log.warning("cache entry %s: %s; computing it again", self._path(key), problem)
            return None

    def fetch(self, key: str, expected: Fingerprint | None = None) -> tuple[dict[str, np.ndarray], Fingerprint]:
        """The arrays stored under `key` and the fingerprint of their bytes, both from one open
        file (so they describe the same entry even if it is replaced meanwhile), hashed in chunks
        and then parsed, never held twice. EntryProblem when there is no entry, when it is not
        `expected`, or when it cannot be read."""
        path = self._path(key)
        try:
            with path.open("rb") as file:
                fingerprint = _fingerprint(file)
                if expected is not None and fingerprint != expected:
                    raise EntryProblem(
                        f"entry {path} holds {fingerprint.size} bytes of SHA-256 {fingerprint.sha256[:12]}..., not "
                        f"the {expected.size} bytes of SHA-256 {expected.sha256[:12]}... its writer stored")
                file.seek(0)
                import numpy as np

                with np.load(file) as entry:
                    arrays = {name: entry[name] for name in entry.files}
        except FileNotFoundError:
            raise EntryProblem(f"no entry {path.name} in {self.folder}", absent=True) from None
        except EntryProblem:
            raise
        except Exception as exc:
            raise EntryProblem(f"entry {path} is unreadable: {one_line(exc)}") from None
        with contextlib.suppress(OSError):  # another user's entry in a shared folder stays unmarked
            os.utime(path)
        return arrays, fingerprint

    def store(self, key: str, **arrays: np.ndarray) -> Fingerprint | None:
        """Writes the entry atomically, then trims the store; returns the fingerprint of what
        was written, or None when writing failed (logged, not raised)."""
        data = _npz_bytes(arrays)
        temporary: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
            temporary = Path(name)
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            temporary.chmod(0o644)  # mkstemp's 0600 would hide it from workers running as other users
            temporary.replace(self._path(key))
        except OSError as exc:
            log.warning("cannot write cache entry %s in %s: %s", key, self.folder, one_line(exc))
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            return None
        self.trim()
        return Fingerprint.of(data)

    def assembly(self, key: str, expected: Fingerprint) -> EntryAssembly:
        """An entry to be received in chunks (`entry_transfer`), written to a temporary file of
        the folder; once `finish`ed it is in place, and `trim` keeps the bound."""
        return EntryAssembly(key, expected, self.folder, self._path(key))

    def open_entry(self, key: str) -> BinaryIO:
        """The entry's file, open for reading; EntryProblem (absent) when there is none."""
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise EntryProblem(f"no entry {key}.npz in {self.folder}", absent=True) from None

    def trim(self) -> None:
        """Removes the least recently used entries while the store holds more than max_bytes,
        sparing those used within keep_recent_s."""
        entries = []
        for path in self.folder.glob("*.npz"):
            try:
                status = path.stat()
            except FileNotFoundError:  # removed by another worker meanwhile
                continue
            entries.append((status.st_mtime, status.st_size, path))
        total = sum(size for _, size, _ in entries)
        recent = time.time() - self.keep_recent_s
        for used, size, path in sorted(entries):
            if total <= self.max_bytes or (self.keep_recent_s and used >= recent):
                break
            path.unlink(missing_ok=True)
            total -= size

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"


def _fingerprint(file: BinaryIO) -> Fingerprint:
    """The fingerprint of the rest of `file`, read in chunks of a MiB."""
    digest, size = hashlib.sha256(), 0
    while chunk := file.read(2**20):
        digest.update(chunk)
        size += len(chunk)
    return Fingerprint(size, digest.hexdigest())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays as `np.savez` lays them out (one uncompressed `<name>.npy` member each), with
    fixed time stamps."""
    import numpy as np

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            member.external_attr = 0o644 << 16
            with archive.open(member, "w", force_zip64=True) as file:
                np.lib.format.write_array(file, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


class WorkerCache:
    """Base of a worker's caches: entries of one kind in the `FOLDER` folder of its cache folder,
    those used within `KEEP_RECENT_S` seconds kept past the bound."""

    FOLDER: ClassVar[str]
    KEEP_RECENT_S: ClassVar[float] = 0.0

    def __init__(self, store: NpzStore):
        self._store = store

    @classmethod
    def of(cls, settings: WorkerSettings) -> Self | None:
        """The cache of a worker with `settings`; None when it has no cache folder."""
        if settings.cache_dir is None:
            return None
        return cls(NpzStore(Path(settings.cache_dir) / cls.FOLDER, settings.cache_max_mb * 2**20, cls.KEEP_RECENT_S))
