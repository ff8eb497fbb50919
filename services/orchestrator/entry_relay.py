"""Shadow-cache entries relayed through the orchestrator, for workers that share no cache folder.

A shadow part asked to (`ShadowPart.stream_entry`) streams its stored entry's bytes in chunks
before its ShadowOutput by reference; `Receiving` writes them to `<folder>/<task id>/<key>.npz`
(a temporary file, renamed once size and SHA-256 are the output's: `entry_transfer`). Before a
score job runs on a worker, `upload` sends that worker the task's entries it is not known to
hold (`PutEntries`); the score job then reads every entry by reference from its own cache, as on
a shared folder. Workers of a shared folder stream nothing, and their references need no upload.

The folder holds the entries of running audits only: `forget_task` removes an audit's when it
ends, `keep_tasks` those of audits that did not survive a restart, and a new entry that would
take it past `max_bytes` is refused (the shadow part fails as a retryable overload). Which worker
holds which entry is kept in memory only (a restarted orchestrator uploads again); an entry a
worker evicted before its score job read it comes back through the ShadowsMissing round.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from privaudit.services.common.entry_transfer import (
    EntryAssembly,
    Fingerprint,
    TransferError,
    check_fingerprint,
    check_key,
    is_key,
    read_chunks,
)
from privaudit.services.common.errors import Overloaded, Unavailable
from privaudit.v1 import attack_worker_pb2

log = logging.getLogger(__name__)

# A PutEntries call to one worker: the stream of requests in, its answer out.
PutEntries = Callable[[Iterator[attack_worker_pb2.PutEntriesRequest]], attack_worker_pb2.PutEntriesResponse]
DEFAULT_MAX_BYTES = 64 * 2**30  # some 200 audits of 64 CIFAR-10 LiRA shadow models with augmentations (4.8 MB each)


class EntryRelay:
    """Entries held for running audits in `folder` (None: a private temporary folder, removed by
    `close`), at most `max_bytes` of them."""

    def __init__(self, folder: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        self._temporary = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="privaudit-entries-")) if folder is None else folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], set[str]] = {}  # (task id, key) -> addresses of workers holding it

    def path(self, task_id: str, key: str) -> Path:
        return self.folder / task_id / f"{check_key(key)}.npz"

    def receiving(self, task_id: str, worker: str) -> Receiving:
        """Takes the entry chunks of one shadow part's stream from `worker`."""
        return Receiving(self, task_id, worker)

    def held_by(self, task_id: str, key: str, worker: str) -> None:
        with self._lock:
            self._held.setdefault((task_id, key), set()).add(worker)

    def lost_by(self, task_id: str, worker: str) -> None:
        """`worker` may no longer hold the task's entries (its score job missed some)."""
        with self._lock:
            for (task, _), holders in self._held.items():
                if task == task_id:
                    holders.discard(worker)

    def upload(self, task_id: str, part: attack_worker_pb2.ScorePart, worker: str, put: PutEntries) -> int:
        """Sends `worker` the entries of the score part's references that this orchestrator holds
        and the worker is not known to hold, in one PutEntries call (`put`, given the stream of
        requests); the bytes sent. An entry whose copy here is damaged is removed and not sent
        (the score job will miss it, and it is trained again). What `put` raises when the call
        fails otherwise (grpc.RpcError)."""
        with self._lock:
            wanted = [(o.cache_key, Fingerprint(o.entry.size_bytes, o.entry.sha256)) for o in part.shadows
                      if o.HasField("entry") and is_key(o.cache_key)
                      and worker not in self._held.get((task_id, o.cache_key), set())
                      and self.path(task_id, o.cache_key).exists()]
        if not wanted:
            return 0
        damaged: list[str] = []
        sent = [0]

        def chunks() -> Iterator[attack_worker_pb2.PutEntriesRequest]:
            for key, expected in wanted:
                path = self.path(task_id, key)
                try:
                    with path.open("rb") as file:
                        announce: attack_worker_pb2.StoredEntry | None = attack_worker_pb2.StoredEntry(
                            size_bytes=expected.size, sha256=expected.sha256)
                        for offset, data in read_chunks(file, expected):
                            yield attack_worker_pb2.PutEntriesRequest(chunk=attack_worker_pb2.EntryChunk(
                                cache_key=key, offset=offset, data=data, entry=announce))
                            announce = None
                            sent[0] += len(data)
                except (OSError, TransferError) as problem:
                    log.warning("task=%s: the relayed entry %s is unreadable or damaged here (%s); not sent",
                                task_id, path, problem)
                    path.unlink(missing_ok=True)
                    damaged.append(key)
                    return  # the worker refuses the entry it was receiving; those before it are stored

        try:
            stored = put(chunks()).cache_key
        except grpc.RpcError as error:
            if not damaged or error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            keys = [key for key, _ in wanted]
            stored = keys[:keys.index(damaged[0])]  # those sent before the damaged one
        for key in stored:
            self.held_by(task_id, key, worker)
        return sent[0]

    def forget_task(self, task_id: str) -> None:
        """Removes an ended audit's entries."""
        with self._lock:
            for held in [held for held in self._held if held[0] == task_id]:
                del self._held[held]
        shutil.rmtree(self.folder / task_id, ignore_errors=True)

    def keep_tasks(self, task_ids: set[str]) -> None:
        """Removes the entries of every audit but these (those a restarted orchestrator resumes)."""
        for folder in self.folder.iterdir():
            if folder.is_dir() and folder.name not in task_ids:
                shutil.rmtree(folder, ignore_errors=True)

    def used_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.folder.glob("*/*") if path.is_file())

    def close(self) -> None:
        if self._temporary:
            shutil.rmtree(self.folder, ignore_errors=True)


class Receiving:
    """The entry a shadow part's stream carries, written as its chunks come (`add`), kept once
    its ShadowOutput describes the same bytes (`finish`). Every problem is a retryable
    Unavailable naming the worker: the shadow part runs again."""

    def __init__(self, relay: EntryRelay, task_id: str, worker: str):
        self._relay = relay
        self._task_id = task_id
        self._worker = worker
        self._assembly: EntryAssembly | None = None

    def add(self, chunk: attack_worker_pb2.EntryChunk) -> None:
        try:
            if self._assembly is None:
                if chunk.offset != 0 or not chunk.HasField("entry"):
                    raise TransferError(f"entry {chunk.cache_key[:80]}: its first chunk must be at offset 0 and "
                                        "carry the entry's size and SHA-256")
                relay = self._relay
                expected = check_fingerprint(chunk.cache_key, chunk.entry.size_bytes, chunk.entry.sha256,
                                             relay.max_bytes)
                used = relay.used_bytes()
                if used + expected.size > relay.max_bytes:
                    raise Overloaded(f"the orchestrator's folder of relayed shadow entries ({relay.folder}) holds "
                                     f"{used:,} bytes; this entry's {expected.size:,} would pass its "
                                     f"{relay.max_bytes:,}-byte bound until running audits end")
                target = relay.path(self._task_id, chunk.cache_key)
                self._assembly = EntryAssembly(chunk.cache_key, expected, target.parent, target)
            elif chunk.cache_key != self._assembly.key or chunk.HasField("entry"):
                raise TransferError(f"entry {chunk.cache_key[:80]} started before entry {self._assembly.key} was "
                                    "complete")
            self._assembly.add(chunk.offset, chunk.data)
        except (TransferError, OSError) as problem:
            self.discard()
            raise self._failure(problem) from None

    def finish(self, output: attack_worker_pb2.ShadowOutput) -> None:
        """Keeps the entry `output` refers to, when its chunks came (none come from a worker of
        a shared cache folder: then there is nothing to keep)."""
        assembly = self._assembly
        if assembly is None:
            return
        try:
            described = Fingerprint(output.entry.size_bytes, output.entry.sha256)
            if output.cache_key != assembly.key or described != assembly.expected:
                raise TransferError(f"shadow {output.shadow_index}'s output describes entry {output.cache_key[:80]} "
                                    f"of {described.size} bytes, not the streamed {assembly.key} of "
                                    f"{assembly.expected.size}")
            assembly.finish()
            self._assembly = None
        except (TransferError, OSError) as problem:
            self.discard()
            raise self._failure(problem) from None
        self._relay.held_by(self._task_id, assembly.key, self._worker)

    def discard(self) -> None:
        if self._assembly is not None:
            self._assembly.discard()
            self._assembly = None

    def _failure(self, problem: Exception) -> Unavailable:
        return Unavailable(f"worker {self._worker} streamed a shadow entry that is not as described ({problem}); "
                           "the shadow part runs again")
