"""Shadow entries moved in bounded chunks between workers that share no cache folder: the
chunking and assembly (`entry_transfer`), a worker's checks of what it is sent
(`entry_exchange`: what it stores and what it streams),
and the orchestrator's relay (`entry_relay`): received, kept, uploaded, removed.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import grpc
import numpy as np
import pytest

from privaudit.services.attack_worker import entry_exchange
from privaudit.services.attack_worker.npz_store import NpzStore
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.attack_worker.shadow_cache import ShadowCache
from privaudit.services.common.entry_transfer import CHUNK_BYTES, EntryAssembly, Fingerprint, TransferError, read_chunks
from privaudit.services.common.errors import InvalidArgument, Unavailable
from privaudit.services.orchestrator.entry_relay import EntryRelay
from privaudit.v1 import attack_worker_pb2

TASK = "0123456789ab"


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def entry_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def chunks_of(key: str, data: bytes, announce: Fingerprint | None = None) -> list[tuple]:
    """`ShadowCache.receive`'s chunks of an entry, cut at CHUNK_BYTES, the first announcing it."""
    announce = announce or Fingerprint.of(data)
    return [(key, offset, data[offset:offset + CHUNK_BYTES], announce if offset == 0 else None)
            for offset in range(0, len(data), CHUNK_BYTES)]


def shadow_cache(folder: Path, max_bytes: int = 2**30) -> ShadowCache:
    return ShadowCache(NpzStore(folder, max_bytes, ShadowCache.KEEP_RECENT_S))


# ---------------------------------------------------------------- chunks and their assembly


@pytest.mark.parametrize("size", [1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 17])
def test_chunks_are_bounded_follow_each_other_and_reassemble_the_bytes(tmp_path, size):
    data = entry_bytes(size)
    source = tmp_path / "source"
    source.write_bytes(data)
    with source.open("rb") as file:
        chunks = list(read_chunks(file, Fingerprint.of(data)))
    assert all(0 < len(chunk) <= CHUNK_BYTES for _, chunk in chunks)
    assert [offset for offset, _ in chunks] == list(np.cumsum([0] + [len(c) for _, c in chunks[:-1]]))
    assembly = EntryAssembly("k", Fingerprint.of(data), tmp_path / "in", tmp_path / "in" / "k.npz")
    for offset, chunk in chunks:
        assembly.add(offset, chunk)
    assert assembly.finish() == Fingerprint.of(data)
    assert (tmp_path / "in" / "k.npz").read_bytes() == data
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["k.npz"], "no temporary file left"


@pytest.mark.parametrize("changed", ["a byte", "longer", "shorter"])
def test_reading_an_entry_that_is_not_as_described_fails_by_its_last_chunk(tmp_path, changed):
    data = entry_bytes(2 * CHUNK_BYTES + 5)
    stored = {"a byte": data[:9] + bytes([data[9] ^ 1]) + data[10:], "longer": data + b"x",
              "shorter": data[:-1]}[changed]
    (tmp_path / "e").write_bytes(stored)
    with (tmp_path / "e").open("rb") as file, pytest.raises(TransferError, match="changed or damaged"):
        list(read_chunks(file, Fingerprint.of(data)))


@pytest.mark.parametrize("fault", ["gap", "overlap", "repeat", "oversized", "past the size", "empty", "short",
                                   "other digest"])
def test_an_assembly_keeps_nothing_of_chunks_that_do_not_make_the_announced_entry(tmp_path, fault):
    data = entry_bytes(2 * CHUNK_BYTES + 100)
    announced = Fingerprint.of(data) if fault != "other digest" else Fingerprint(len(data), "0" * 64)
    if fault in ("oversized", "past the size"):
        announced = Fingerprint(len(data) + (CHUNK_BYTES if fault == "oversized" else 0), announced.sha256)
    target = tmp_path / "in" / "k.npz"
    assembly = EntryAssembly("k", announced, target.parent, target)
    first = data[:CHUNK_BYTES]
    steps = {"gap": [(0, first), (CHUNK_BYTES + 1, data[CHUNK_BYTES + 1:2 * CHUNK_BYTES])],
             "overlap": [(0, first), (CHUNK_BYTES - 1, data[CHUNK_BYTES - 1:2 * CHUNK_BYTES])],
             "repeat": [(0, first), (0, first)],
             "oversized": [(0, data[:CHUNK_BYTES + 1])],
             "past the size": [(0, first), (CHUNK_BYTES, data[CHUNK_BYTES:2 * CHUNK_BYTES]),
                               (2 * CHUNK_BYTES, data[2 * CHUNK_BYTES:] + b"extra")],
             "empty": [(0, b"")],
             "short": [(0, first)],
             "other digest": [(o, data[o:o + CHUNK_BYTES]) for o in range(0, len(data), CHUNK_BYTES)]}[fault]
    with pytest.raises(TransferError, match="entry k: "):
        for offset, chunk in steps:
            assembly.add(offset, chunk)
        assembly.finish()
    assert list(target.parent.iterdir()) == [], "neither the entry nor a temporary file is left"


# ---------------------------------------------------------------- the worker's side


def test_a_worker_stores_every_entry_of_an_upload_and_streams_back_the_same_bytes(tmp_path):
    cache = shadow_cache(tmp_path / "cache")
    entries = {key_of(str(i)): entry_bytes(size, i) for i, size in enumerate([10, CHUNK_BYTES, 2 * CHUNK_BYTES + 3])}
    stored = cache.receive(chunk for key, data in entries.items() for chunk in chunks_of(key, data))
    assert stored == list(entries)
    for key, data in entries.items():
        assert (tmp_path / "cache" / f"{key}.npz").read_bytes() == data
        assert b"".join(chunk for _, chunk in cache.send(key, Fingerprint.of(data))) == data


def invalid_uploads(data: bytes) -> dict[str, tuple[list, str]]:
    """Uploads a worker refuses, each with what its refusal must say."""
    key, other = key_of("a"), key_of("b")
    good = chunks_of(key, data)
    return {
        "a key that is a path": ([("../../etc/x", 0, data[:10], Fingerprint.of(data))], "is not a cache key"),
        "no announcement": ([(key, 0, data[:CHUNK_BYTES], None)], "carry the entry's size and SHA-256"),
        "starting mid-way": ([(key, CHUNK_BYTES, data[CHUNK_BYTES:], Fingerprint.of(data))], "offset 0"),
        "a bad digest": ([(key, 0, data[:10], Fingerprint(len(data), "xyz"))], "is not a SHA-256"),
        "larger than the cache": ([(key, 0, data[:10], Fingerprint(2**31, Fingerprint.of(data).sha256))],
                                  "is not between 1 and"),
        "a huge offset": ([good[0], (key, 2**63, data[CHUNK_BYTES:], None)], f"a chunk at offset {2**63}"),
        "another entry mid-way": ([good[0], *chunks_of(other, data)[:1]], f"entry {other} started before"),
        "the stream ending mid-way": (good[:-1], "the stream ended after"),
        "other bytes": ([(k, o, bytes(len(c)), f) for k, o, c, f in good], "not the announced"),
    }


@pytest.mark.parametrize("upload", ["a key that is a path", "no announcement", "starting mid-way", "a bad digest",
                                    "larger than the cache", "a huge offset", "another entry mid-way",
                                    "the stream ending mid-way", "other bytes"])
def test_a_worker_refuses_an_upload_that_is_not_as_announced_naming_what_and_keeps_none_of_it(tmp_path, upload):
    data = entry_bytes(CHUNK_BYTES + 50)
    earlier = chunks_of(key_of("earlier"), entry_bytes(100, 1))
    chunks, said = invalid_uploads(data)[upload]
    settings = WorkerSettings(str(tmp_path), cache_dir=str(tmp_path))
    requests = [attack_worker_pb2.PutEntriesRequest(chunk=attack_worker_pb2.EntryChunk(
        cache_key=k, offset=o, data=c, entry=attack_worker_pb2.StoredEntry(size_bytes=f.size, sha256=f.sha256)
        if f else None)) for k, o, c, f in [*earlier, *chunks]]
    with pytest.raises(InvalidArgument, match=said.replace("(", r"\(")) as refused:
        entry_exchange.put_entries(iter(requests), settings)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and refused.value.field == "chunk"
    kept = sorted(p.name for p in (tmp_path / "shadows").iterdir())
    assert kept == [f"{key_of('earlier')}.npz"], "the complete entry before it stays, nothing of it"


def stored_output(cache_dir: Path, index: int = 3) -> attack_worker_pb2.ShadowOutput:
    """A shadow part's output by reference to an entry it stored in `cache_dir`."""
    cache = ShadowCache.of(WorkerSettings(str(cache_dir), cache_dir=str(cache_dir)))
    rng = np.random.default_rng(index)
    fingerprint = cache.store(key_of(f"shadow {index}"), rng.normal(size=(1, 70_000, 4)), rng.random(70_000) < 0.5)
    output = attack_worker_pb2.ShadowOutput(shadow_index=index, cache_key=key_of(f"shadow {index}"))
    output.entry.size_bytes, output.entry.sha256 = fingerprint.size, fingerprint.sha256
    return output


def shadow_request(stream: bool) -> attack_worker_pb2.RunAttackRequest:
    return attack_worker_pb2.RunAttackRequest(shadow=attack_worker_pb2.ShadowPart(shadow_index=3, stream_entry=stream))


def test_a_shadow_part_streams_its_entry_only_when_asked_and_its_cache_is_private(tmp_path):
    output = stored_output(tmp_path)
    private = WorkerSettings(str(tmp_path), cache_dir=str(tmp_path))
    shared = WorkerSettings(str(tmp_path), cache_dir=str(tmp_path), cache_shared=True)
    assert list(entry_exchange.entry_chunks(shadow_request(False), output, private)) == []
    assert list(entry_exchange.entry_chunks(shadow_request(True), output, shared)) == []
    chunks = [r.entry_chunk for r in entry_exchange.entry_chunks(shadow_request(True), output, private)]
    assert len(chunks) == -(-output.entry.size_bytes // CHUNK_BYTES) > 1
    assert [c.HasField("entry") for c in chunks] == [True] + [False] * (len(chunks) - 1)
    assert chunks[0].entry == output.entry and {c.cache_key for c in chunks} == {output.cache_key}
    data = b"".join(c.data for c in chunks)
    assert Fingerprint.of(data) == Fingerprint(output.entry.size_bytes, output.entry.sha256)
    assert max(r.ByteSize() for r in entry_exchange.entry_chunks(shadow_request(True), output, private)) \
        < CHUNK_BYTES + 200


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_an_entry_gone_or_changed_before_it_is_streamed_reruns_the_shadow_part(tmp_path, damage):
    output = stored_output(tmp_path)
    path = tmp_path / "shadows" / f"{output.cache_key}.npz"
    if damage == "deleted":
        path.unlink()
    else:
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(Unavailable, match="shadow 3: its entry could not be sent") as failure:
        list(entry_exchange.entry_chunks(shadow_request(True), output, WorkerSettings("/", cache_dir=str(tmp_path))))
    assert failure.value.retryable


# ---------------------------------------------------------------- the orchestrator's relay


class RecordingWorker:
    """A worker's PutEntries (`put`), storing into a real shadow cache; the calls it had."""

    def __init__(self, folder: Path):
        self.settings = WorkerSettings(str(folder), cache_dir=str(folder))
        self.calls: list[list[attack_worker_pb2.PutEntriesRequest]] = []

    def put(self, requests):
        self.calls.append(list(requests))
        return entry_exchange.put_entries(iter(self.calls[-1]), self.settings)


def relayed(relay: EntryRelay, worker_dir: Path, index: int, worker: str = "a:1") -> attack_worker_pb2.ShadowOutput:
    """Shadow model `index` trained on a worker with a private cache in `worker_dir`, its
    chunks received by the relay as the scheduler does."""
    output = stored_output(worker_dir, index)
    receiving = relay.receiving(TASK, worker)
    settings = WorkerSettings(str(worker_dir), cache_dir=str(worker_dir))
    request = attack_worker_pb2.RunAttackRequest(shadow=attack_worker_pb2.ShadowPart(shadow_index=index,
                                                                                     stream_entry=True))
    for response in entry_exchange.entry_chunks(request, output, settings):
        receiving.add(response.entry_chunk)
    receiving.finish(output)
    return output


def test_the_relay_keeps_streamed_entries_uploads_what_a_worker_lacks_once_and_forgets_them(tmp_path):
    relay = EntryRelay(tmp_path / "entries")
    outputs = [relayed(relay, tmp_path / "a", index) for index in range(3)]
    for output in outputs:
        kept = relay.path(TASK, output.cache_key)
        assert kept.read_bytes() == (tmp_path / "a" / "shadows" / f"{output.cache_key}.npz").read_bytes()
    part = attack_worker_pb2.ScorePart(shadows=outputs)
    assert relay.upload(TASK, part, "a:1", None) == 0, "the worker that streamed them holds them"

    other = RecordingWorker(tmp_path / "b")
    sent = relay.upload(TASK, part, "b:1", other.put)
    assert sent == sum(o.entry.size_bytes for o in outputs)
    for output in outputs:
        assert (tmp_path / "b" / "shadows" / f"{output.cache_key}.npz").read_bytes() == \
            relay.path(TASK, output.cache_key).read_bytes()
    assert max(r.ByteSize() for r in other.calls[0]) < CHUNK_BYTES + 200
    assert relay.upload(TASK, part, "b:1", other.put) == 0 and len(other.calls) == 1, "uploaded once"
    relay.lost_by(TASK, "b:1")  # its score job missed some: they go again
    assert relay.upload(TASK, part, "b:1", other.put) == sent

    relay.keep_tasks({TASK})
    assert relay.path(TASK, outputs[0].cache_key).exists()
    relay.forget_task(TASK)
    assert list((tmp_path / "entries").iterdir()) == []


def test_a_damaged_copy_in_the_relay_is_dropped_and_the_entries_sent_before_it_stay_uploaded(tmp_path):
    relay = EntryRelay(tmp_path / "entries")
    outputs = [relayed(relay, tmp_path / "a", index) for index in range(3)]
    damaged = relay.path(TASK, outputs[1].cache_key)
    data = bytearray(damaged.read_bytes())
    data[100] ^= 1
    damaged.write_bytes(bytes(data))
    worker = RecordingWorker(tmp_path / "b")

    def put_entries(requests):
        try:
            return worker.put(requests)
        except InvalidArgument as refused:  # as gRPC would carry it
            raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT) from refused

    relay.upload(TASK, attack_worker_pb2.ScorePart(shadows=outputs), "b:1", put_entries)
    assert not damaged.exists()
    assert sorted(p.name for p in (tmp_path / "b" / "shadows").iterdir()) == [f"{outputs[0].cache_key}.npz"]
    assert relay.upload(TASK, attack_worker_pb2.ScorePart(shadows=outputs), "b:1", put_entries) == \
        outputs[2].entry.size_bytes, "only the one never sent is left to upload"


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize("fault", ["other bytes", "another entry described", "a bigger one described",
                                   "no announcement"])
def test_a_streamed_entry_not_as_described_fails_the_shadow_part_as_retryable_and_keeps_nothing(tmp_path, fault):
    relay = EntryRelay(tmp_path / "entries")
    output = stored_output(tmp_path / "a")
    request = attack_worker_pb2.RunAttackRequest(shadow=attack_worker_pb2.ShadowPart(shadow_index=3,
                                                                                     stream_entry=True))
    settings = WorkerSettings(str(tmp_path), cache_dir=str(tmp_path / "a"))
    chunks = [r.entry_chunk for r in entry_exchange.entry_chunks(request, output, settings)]
    described = attack_worker_pb2.ShadowOutput()
    described.CopyFrom(output)
    if fault == "other bytes":
        chunks[1].data = bytes(len(chunks[1].data))
    elif fault == "another entry described":
        described.cache_key = key_of("another")
    elif fault == "a bigger one described":
        described.entry.size_bytes += 1
    else:
        chunks[0].ClearField("entry")
    receiving = relay.receiving(TASK, "a:1")
    with pytest.raises(Unavailable, match="worker a:1 streamed a shadow entry that is not as described") as failure:
        for chunk in chunks:
            receiving.add(chunk)
        receiving.finish(described)
    assert failure.value.retryable
    assert not any(path.is_file() for path in (tmp_path / "entries").rglob("*"))


def test_an_entry_past_the_relays_bound_is_refused_as_an_overload(tmp_path):
    relay = EntryRelay(tmp_path / "entries", max_bytes=1_500_000)
    relayed(relay, tmp_path / "a", 0)  # about 1.2 MB
    with pytest.raises(Exception, match="would pass its 1,500,000-byte bound") as refused:
        relayed(relay, tmp_path / "a", 1)
    assert refused.value.retryable and refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_without_a_state_folder_the_relay_uses_a_temporary_one_and_removes_it(tmp_path):
    relay = EntryRelay()
    relayed(relay, tmp_path / "a", 0)
    folder = relay.folder
    assert any(folder.rglob("*.npz"))
    relay.close()
    assert not folder.exists()
