"""Shadow-cache entries moved between processes as bytes, in bounded chunks.

A pool whose workers keep private cache folders moves a shadow model's stored entry through the
orchestrator: the worker that trained it streams its bytes (`EntryChunk` messages of at most
CHUNK_BYTES each), the orchestrator keeps them in a file, and uploads them to the worker of the
score job before it runs (`PutEntries`). Both ends assemble what they receive the same way
(`EntryAssembly`): chunks must follow each other from offset 0, the total must be the size the
sender announced, and the SHA-256 of the bytes must be the one it announced, or nothing is kept.

CHUNK_BYTES is 512 KiB: half of the smallest message limit a deployment is expected to set
(1 MiB, what the tests run every service at), so a chunk and its envelope fit with room to
spare; large enough that a CIFAR-10 LiRA entry (2 views x 60,000 records x 10 classes, 4.8 MB)
is 10 messages, whose per-message cost (a few HTTP/2 frames, one write) is small next to moving
the bytes; and small enough that either end holds a few of them at most, never a whole entry.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 512 * 1024
_KEY = re.compile(r"[0-9a-f]{64}")  # a shadow_key: SHA-256, lowercase hex


@dataclass(frozen=True)
class Fingerprint:
    """What identifies an entry's bytes: their number and SHA-256 (lowercase hex)."""

    size: int
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Fingerprint:
        return cls(len(data), hashlib.sha256(data).hexdigest())


class TransferError(ValueError):
    """Chunks that do not make the entry they announce, in words naming the entry and what is wrong."""


def is_key(key: str) -> bool:
    return bool(_KEY.fullmatch(key))


def check_key(key: str) -> str:
    """`key` when it is a cache key (64 lowercase hex digits: it names a file); TransferError otherwise."""
    if not is_key(key):
        raise TransferError(f"cache_key {key[:80]!r} is not a cache key (64 lowercase hexadecimal digits)")
    return key


def check_fingerprint(key: str, size: int, sha256: str, max_bytes: int) -> Fingerprint:
    """The announced fingerprint of entry `key`, checked to be one: a size from 1 to `max_bytes`
    and a SHA-256 in lowercase hex; TransferError otherwise."""
    if not 0 < size <= max_bytes:
        raise TransferError(f"entry {key}: size_bytes {size} is not between 1 and {max_bytes}, the most "
                            "this side keeps")
    if not _KEY.fullmatch(sha256):
        raise TransferError(f"entry {key}: sha256 {sha256[:80]!r} is not a SHA-256 (64 lowercase hexadecimal "
                            "digits)")
    return Fingerprint(size, sha256)


def read_chunks(file: BinaryIO, expected: Fingerprint) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) chunks of at most CHUNK_BYTES of the open entry `file`, from its start.
    TransferError (after the last chunk at the latest) when its bytes are not `expected`: the
    receiver then refuses what it got, and the sender must not announce success."""
    digest, offset = hashlib.sha256(), 0
    while data := file.read(CHUNK_BYTES):
        if offset + len(data) > expected.size:
            break
        digest.update(data)
        yield offset, data
        offset += len(data)
    if offset != expected.size or digest.hexdigest() != expected.sha256:
        raise TransferError(f"the stored entry is not the {expected.size} bytes of SHA-256 "
                            f"{expected.sha256[:12]}... it was described as (changed or damaged since)")


class EntryAssembly:
    """An entry being received into a temporary file of `folder`: `add` each chunk in order,
    then `finish` moves it to `target` once its size and SHA-256 are the announced ones;
    `discard` (or a failed `add`/`finish`) removes the temporary file."""

    def __init__(self, key: str, expected: Fingerprint, folder: Path, target: Path):
        self.key = key
        self.expected = expected
        self.target = target
        self.received = 0
        self._digest = hashlib.sha256()
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".part")
        self._path = Path(name)
        self._file: BinaryIO | None = os.fdopen(handle, "wb")

    @property
    def complete(self) -> bool:
        return self.received == self.expected.size

    def add(self, offset: int, data: bytes) -> None:
        """Appends a chunk; TransferError (the assembly discarded) when it does not start where
        the last one ended, is empty or larger than CHUNK_BYTES, or runs past the announced size."""
        problem = (f"a chunk at offset {offset}, but {self.received} bytes had come: chunks must follow each "
                   "other from offset 0" if offset != self.received else
                   "an empty chunk" if not data else
                   f"a chunk of {len(data)} bytes, past the {CHUNK_BYTES} a chunk may hold" if len(data) > CHUNK_BYTES
                   else f"{offset + len(data)} bytes, past its announced {self.expected.size}"
                   if offset + len(data) > self.expected.size else "")
        if problem:
            self.discard()
            raise TransferError(f"entry {self.key}: {problem}")
        assert self._file is not None
        try:
            self._file.write(data)
        except OSError:
            self.discard()
            raise
        self._digest.update(data)
        self.received += len(data)

    def finish(self) -> Fingerprint:
        """Moves the complete entry into place and returns its fingerprint; TransferError (the
        assembly discarded) when it is short or its digest is not the announced one."""
        problem = (f"{self.received} of its announced {self.expected.size} bytes came" if not self.complete else
                   f"its bytes have SHA-256 {self._digest.hexdigest()[:12]}..., not the announced "
                   f"{self.expected.sha256[:12]}..." if self._digest.hexdigest() != self.expected.sha256 else "")
        if problem:
            self.discard()
            raise TransferError(f"entry {self.key}: {problem}")
        assert self._file is not None
        try:
            self._file.close()
            self._file = None
            self._path.chmod(0o644)  # mkstemp's 0600 would hide it from workers running as other users
            self._path.replace(self.target)
        except OSError:
            self.discard()
            raise
        return self.expected

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)
