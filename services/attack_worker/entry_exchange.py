"""Shadow-cache entries exchanged as bytes, for a pool whose workers share no cache folder.

A shadow part asked for its entry's bytes (`ShadowPart.stream_entry`) answers by reference, and
the worker's server streams the stored entry from its cache in chunks before that answer
(`entry_chunks`); the orchestrator keeps them and, before a score job, uploads the entries its
worker lacks (`put_entries`, the PutEntries RPC), so that the score job reads every entry by
reference from its own cache, as on a shared folder. Chunking and its checks are
`privaudit.services.common.entry_transfer`'s. Free of the attacks' code (and so of Paddle, scikit-learn
and scipy): the worker's serving process runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from privaudit.services.attack_worker.npz_store import EntryProblem, WorkerCache
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.entry_transfer import (
    EntryAssembly,
    Fingerprint,
    TransferError,
    check_fingerprint,
    check_key,
    read_chunks,
)
from privaudit.services.common.errors import InvalidArgument, Overloaded, Unavailable, one_line
from privaudit.v1 import attack_worker_pb2


class ShadowEntries(WorkerCache):
    """The `shadows` folder of a worker's cache folder, as entries of bytes (`ShadowCache` reads
    and writes them as arrays). Entries used within the hour are never evicted: a distributed
    attack's score job reads the entries its shadow jobs wrote, possibly on other workers, and
    an entry trimmed in between would be trained again (a pool that needs more room for one
    attack's shadow models than --cache-max-mb gets it while they are in use)."""

    FOLDER = "shadows"
    KEEP_RECENT_S = 3600.0

    def send(self, key: str, expected: Fingerprint) -> Iterator[tuple[int, bytes]]:
        """The (offset, bytes) chunks of entry `key`, read from one open file; EntryProblem when
        it is absent, TransferError (after the last chunk at the latest) when it is not `expected`."""
        with self._store.open_entry(key) as file:
            yield from read_chunks(file, expected)

    def receive(self, chunks: Iterable[Chunk]) -> list[str]:
        """Stores the entries `chunks` carry, one after another, each announced by its first chunk
        (offset 0, with its fingerprint) and complete once that many bytes came with that SHA-256;
        the keys stored. TransferError naming what is wrong (nothing of that entry kept) when a
        key is not a cache key, an entry is announced mid-way or larger than this cache, its
        chunks do not follow each other, or its bytes are not the announced ones."""
        stored: list[str] = []
        assembly: EntryAssembly | None = None
        try:
            for key, offset, data, announced in chunks:
                check_key(key)
                if assembly is None:
                    if announced is None or offset != 0:
                        raise TransferError(f"entry {key}: its first chunk must be at offset 0 and carry the "
                                            f"entry's size and SHA-256 (got offset {offset}"
                                            f"{'' if announced else ' without them'})")
                    expected = check_fingerprint(key, announced.size, announced.sha256, self._store.max_bytes)
                    assembly = self._store.assembly(key, expected)
                elif key != assembly.key or announced is not None:
                    raise TransferError(f"entry {key} started before entry {assembly.key} was complete "
                                        f"({assembly.received} of {assembly.expected.size} bytes)")
                assembly.add(offset, data)
                if assembly.complete:
                    assembly.finish()
                    stored.append(assembly.key)
                    assembly = None
            if assembly is not None:
                raise TransferError(f"entry {assembly.key}: the stream ended after {assembly.received} of its "
                                    f"{assembly.expected.size} bytes")
        finally:
            if assembly is not None:
                assembly.discard()
            if stored:
                self._store.trim()
        return stored


# One chunk of an entry: its key, offset, bytes, and (first chunk only) the entry's fingerprint.
Chunk = tuple[str, int, bytes, Fingerprint | None]



def entry_chunks(request: attack_worker_pb2.RunAttackRequest, output: attack_worker_pb2.ShadowOutput,
                 settings: WorkerSettings) -> Iterator[attack_worker_pb2.RunAttackResponse]:
    """The `entry_chunk` messages to stream before the shadow part's `output`: its entry's bytes
    when the request asked for them, the output is by reference and the cache is not shared
    (none otherwise). Read as they are sent, so the worker holds a chunk, not the entry.
    Unavailable (retryable: the part runs again) when the entry is gone or changed meanwhile."""
    cache = ShadowEntries.of(settings)
    if not (request.shadow.stream_entry and output.HasField("entry") and not settings.cache_shared and cache):
        return
    key, expected = output.cache_key, Fingerprint(output.entry.size_bytes, output.entry.sha256)
    announce = output.entry
    try:
        for offset, data in cache.send(key, expected):
            yield attack_worker_pb2.RunAttackResponse(entry_chunk=attack_worker_pb2.EntryChunk(
                cache_key=key, offset=offset, data=data, entry=announce))
            announce = None
    except (EntryProblem, TransferError) as problem:
        raise Unavailable(f"shadow {output.shadow_index}: its entry could not be sent from this worker's cache "
                          f"({problem}); the shadow part runs again") from None


def put_entries(requests: Iterable[attack_worker_pb2.PutEntriesRequest],
                settings: WorkerSettings) -> attack_worker_pb2.PutEntriesResponse:
    """Stores the entries a PutEntries stream carries in the worker's shadow cache.
    InvalidArgument naming the entry and what was wrong when one is not as announced."""
    cache = ShadowEntries.of(settings)
    if cache is None:
        raise Unavailable("this worker keeps no shadow cache to store entries in")
    chunks = ((r.chunk.cache_key, r.chunk.offset, r.chunk.data,
               Fingerprint(r.chunk.entry.size_bytes, r.chunk.entry.sha256) if r.chunk.HasField("entry") else None)
              for r in requests)
    try:
        return attack_worker_pb2.PutEntriesResponse(cache_key=cache.receive(chunks))
    except TransferError as problem:
        raise InvalidArgument.at("chunk", str(problem)) from None
    except OSError as error:  # the cache folder is full or unwritable: another worker may take them
        raise Overloaded(f"this worker cannot store entries in its shadow cache: {one_line(error)}") from None
