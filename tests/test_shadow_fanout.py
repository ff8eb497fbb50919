"""LIRA and RMIA fanned out over real worker processes, through a real orchestrator, with shadow
outputs going by reference through the workers' shared cache folder: the same numbers as the
attack run as one job on a worker of its own, after a worker is killed mid-fan-out, and after a
stored entry is deleted or corrupted before the score job reads it. Then over workers with
private cache folders, every service taking messages of at most 1 MiB: the entries go through
the orchestrator in chunks, on a task whose inline score request would pass that limit.

Tiny models and data (the 4x4 linear model of worker_fixtures), so the module runs in well under
a minute or two. The orchestrator's database bytes per shadow model are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from service_processes import ServiceProcesses
from worker_fixtures import MODEL_CODE, identity_weights, records, write_audit_tree, write_dataset, write_model

from privaudit.client import AuditClient, LocalCluster
from privaudit.services.common import task_spec
from privaudit.services.common.channels import open_channel
from privaudit.services.common.entry_transfer import CHUNK_BYTES
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc, orchestrator_pb2, results_pb2

pytestmark = pytest.mark.e2e

SEED = 11
NUM_SHADOW = 4
# The target (the model loaded with its weights) answers slowly while `slow_target` exists in its
# folder: the time for a test to damage stored entries after the score job has started.
SLOW_TARGET_CODE = MODEL_CODE + '''
import os
import time

_SLOW = os.path.join(os.path.dirname(__file__), "slow_target")


class Target(Net):
    def set_state_dict(self, *args, **kwargs):
        self.is_target = True
        return super().set_state_dict(*args, **kwargs)

    def forward(self, x):
        if getattr(self, "is_target", False) and os.path.exists(_SLOW):
            time.sleep(1.5)
        return super().forward(x)


def get_model():
    return Target()
'''
TASK = f"""
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: LIRA
  args: &shadow
    target_datasets: [datasets/members, datasets/non_members]
    target_model: models/net
    population_datasets: [datasets/pop_a, datasets/pop_b]
    num_shadow: {NUM_SHADOW}
    epochs: 3
    lr: 0.05
    batch_size: 64
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: RMIA
  args: {{<<: *shadow, online: false, num_population: 12}}
"""


def write_tree(root: Path) -> Path:
    write_audit_tree(root, member_correct=[True] * 10 + [False] * 2, non_member_correct=[True] * 5 + [False] * 7)
    write_model(root / "models" / "net", identity_weights(), code=SLOW_TARGET_CODE)
    for name, count, seed in (("pop_a", 10, 1), ("pop_b", 6, 2)):
        rng = np.random.default_rng(seed)
        labels = [int(v) for v in rng.integers(0, 4, size=count)]
        write_dataset(root / "datasets" / name, *records(labels, list(rng.random(count) < 0.7)))
    return root


def measurements(result: results_pb2.AttackResult) -> tuple:
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    return result.attack_name, result.metrics, list(result.roc), list(result.most_exposed), result.score_histogram


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("fanout") / "root")


@pytest.fixture(scope="module")
def one_job(tree, tmp_path_factory) -> list[tuple]:
    """What the fanned-out audits of TASK must give."""
    return one_job_results(tree, tmp_path_factory.mktemp("lone-worker"), TASK)


def one_job_results(tree: Path, folder: Path, task_yaml: str) -> list[tuple]:
    """Each attack of the task run as one job (no parts) on a worker process of its own, with a
    cache of its own."""
    (folder / "cache").mkdir(parents=True)
    services = ServiceProcesses(folder)
    try:
        address = services.start("attack_worker", "--storage-root", str(tree), "--cache-dir", str(folder / "cache"))
        task = task_spec.to_proto(task_spec.parse_yaml(task_yaml, seed=SEED))
        with open_channel(address) as channel:
            stub = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel)
            answers = [list(stub.RunAttack(attack_worker_pb2.RunAttackRequest(
                task_id="0123456789ab", attack_index=index, attack=attack, seed=task.seed), timeout=600))[-1]
                for index, attack in enumerate(task.attacks)]
    finally:
        services.stop()
    return [measurements(answer.result) for answer in answers]


@pytest.fixture(scope="module")
def cluster(tree) -> Iterator[LocalCluster]:
    with LocalCluster(workers=2, storage_root=tree, log_level="DEBUG") as running:
        yield running


def shadow_rows(cluster: LocalCluster, task_id: str) -> dict[tuple[int, int], bytes]:
    """(attack index, shadow index) -> the stored ShadowOutput, as the orchestrator's database holds it."""
    db = sqlite3.connect(f"file:{cluster.state_dir / 'orchestrator' / 'orchestrator.sqlite3'}?mode=ro", uri=True)
    try:
        return {(attack, shadow): output for attack, shadow, output in db.execute(
            "SELECT attack_index, shadow_index, output FROM shadow_outputs WHERE task_id = ?", (task_id,))}
    finally:
        db.close()


def worker_jobs(cluster: LocalCluster, name: str, task_id: str) -> tuple[int, int]:
    """How many jobs of the task the worker started and ended, from its log."""
    log = (cluster.state_dir / "logs" / f"{name}.log").read_text()
    return len(re.findall(f"job start: task {task_id} ", log)), len(re.findall(f"job end: task {task_id} ", log))


def test_fanned_out_over_two_workers_by_reference_it_gives_the_one_job_numbers(cluster, one_job):
    with AuditClient(cluster.address) as client:
        outcome = client.run(TASK, seed=SEED)
    assert [measurements(result) for result in sorted(outcome.results, key=lambda r: r.attack_index)] == one_job
    task_id = outcome.task_id
    assert all(worker_jobs(cluster, f"worker-{i}", task_id)[0] for i in (0, 1)), "both workers ran jobs"

    rows = shadow_rows(cluster, task_id)
    assert sorted(rows) == [(attack, shadow) for attack in (0, 1) for shadow in range(NUM_SHADOW)]
    for row in rows.values():
        output = attack_worker_pb2.ShadowOutput.FromString(row)
        assert output.HasField("entry") and not output.logits and not output.in_mask
        assert (cluster.state_dir / "cache" / "shadows" / f"{output.cache_key}.npz").stat().st_size == \
            output.entry.size_bytes
    print(f"\norchestrator database: {max(map(len, rows.values()))} bytes at most per shadow model's row")


def test_a_worker_killed_mid_fan_out_changes_nothing(tree, one_job, tmp_path):
    with LocalCluster(workers=2, storage_root=tree, state_dir=tmp_path / "state") as fresh, \
            AuditClient(fresh.address) as client:
        victim = fresh.service("worker-1").process
        messages: list[str] = []

        def kill_while_it_runs_a_job(event: orchestrator_pb2.AuditEvent) -> None:
            messages.append(event.progress.message)
            if victim.poll() is None:
                started, ended = worker_jobs(fresh, "worker-1", event.task_id)
                if started > ended:
                    os.kill(victim.pid, signal.SIGKILL)

        outcome = client.run(TASK, seed=SEED, on_event=kill_while_it_runs_a_job)
        assert victim.poll() == -signal.SIGKILL, "worker-1 was killed while running a job of the audit"
        assert any(m.startswith("retrying:") for m in messages), "its job ran again elsewhere"
    assert [measurements(result) for result in sorted(outcome.results, key=lambda r: r.attack_index)] == one_job


def test_entries_damaged_before_the_score_job_reads_them_are_trained_again(cluster, tree, one_job):
    """The shadow parts find their entries in the cache (from the first test) and answer with
    references; while the score job queries the (slowed) target, LIRA's shadow model 1's entry is
    deleted and shadow model 2's corrupted: the score job answers them missing, they are trained
    again, and the score is the one-job score."""
    slow = tree / "models" / "net" / "slow_target"
    slow.touch()
    damaged: list[str] = []
    messages: list[str] = []

    def damage_once_scoring(event: orchestrator_pb2.AuditEvent) -> None:
        messages.append(event.progress.message)
        if damaged or event.WhichOneof("kind") != "progress" or event.progress.attack_index != 0 \
                or event.progress.stage != results_pb2.STAGE_PREDICT:
            return
        rows = shadow_rows(cluster, event.task_id)
        deleted, corrupted = (cluster.state_dir / "cache" / "shadows" /
                              f"{attack_worker_pb2.ShadowOutput.FromString(rows[(0, index)]).cache_key}.npz"
                              for index in (1, 2))
        deleted.unlink()
        data = bytearray(corrupted.read_bytes())
        data[len(data) // 2] ^= 0xFF
        corrupted.write_bytes(bytes(data))
        slow.unlink()
        damaged.append(event.task_id)

    try:
        with AuditClient(cluster.address) as client:
            outcome = client.run(TASK, seed=SEED, on_event=damage_once_scoring)
    finally:
        slow.unlink(missing_ok=True)
    assert damaged, "the score job was seen"
    again = [m for m in messages if m.startswith("training shadow models")]
    assert len(again) == 1 and again[0].startswith("training shadow models 1 and 2 again (round 1 of at most 2)")
    assert [measurements(result) for result in sorted(outcome.results, key=lambda r: r.attack_index)] == one_job


# ---------------------------------------------------------------- private cache folders, 1 MiB messages

MESSAGE_LIMIT = 2**20
# Large enough that each shadow entry (every population record's logits) takes several chunks,
# and that the score request with every shadow model's logits inline passes MESSAGE_LIMIT.
BIG_MEMBERS, BIG_POPULATION = 12_000, 8_000
BIG_TASK = TASK.replace("batch_size: 64", "batch_size: 512").replace("num_population: 12", "num_population: 12, a: 0.3")


def write_big_tree(root: Path) -> Path:
    rng = np.random.default_rng(5)
    write_model(root / "models" / "net", identity_weights())
    for name, count, accuracy in (("members", BIG_MEMBERS, 0.8), ("non_members", BIG_MEMBERS, 0.6),
                                  ("pop_a", BIG_POPULATION, 0.7), ("pop_b", BIG_POPULATION, 0.7)):
        labels = [int(v) for v in rng.integers(0, 4, size=count)]
        write_dataset(root / "datasets" / name, *records(labels, list(rng.random(count) < accuracy)))
    return root


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory) -> Path:
    return write_big_tree(tmp_path_factory.mktemp("fanout-big") / "root")


def test_over_private_cache_folders_in_1_mib_messages_entries_go_in_chunks_and_give_the_one_job_numbers(
        big_tree, tmp_path):
    limited = {"PRIVAUDIT_MAX_MESSAGE_BYTES": str(MESSAGE_LIMIT)}
    services = ServiceProcesses(tmp_path)
    caches = [tmp_path / f"cache-{i}" for i in (0, 1)]
    try:
        reporter = services.start("reporter", env=limited)
        workers = []
        for cache in caches:
            cache.mkdir()
            workers.append(services.start("attack_worker", "--storage-root", str(big_tree), "--cache-dir", str(cache),
                                          env=limited))
        orchestrator = services.start("orchestrator", "--workers", ",".join(workers), "--reporter", reporter,
                                      "--state-dir", str(tmp_path / "state"),
                                      env={**limited, "PRIVAUDIT_MAX_TASK_BYTES": str(MESSAGE_LIMIT // 2)})
        with AuditClient(orchestrator) as client:
            outcome = client.run(BIG_TASK, seed=SEED)
        db = sqlite3.connect(f"file:{tmp_path / 'state' / 'orchestrator.sqlite3'}?mode=ro", uri=True)
        try:
            rows = [attack_worker_pb2.ShadowOutput.FromString(row) for (row,) in db.execute(
                "SELECT output FROM shadow_outputs WHERE task_id = ?", (outcome.task_id,))]
        finally:
            db.close()
        orchestrator_log = services.log("orchestrator")
    finally:
        services.stop()
    fanned_out = [measurements(result) for result in sorted(outcome.results, key=lambda r: r.attack_index)]
    assert fanned_out == one_job_results(big_tree, tmp_path / "lone", BIG_TASK)

    assert len(rows) == 2 * NUM_SHADOW and all(row.HasField("entry") and not row.logits for row in rows)
    entries = {row.cache_key: row.entry.size_bytes for row in rows}
    assert min(entries.values()) > CHUNK_BYTES, "each entry went in more than one chunk"
    for cache in caches:  # each worker holds what it trained and, for its score jobs, what it was sent
        held = {path.stem: path.stat().st_size for path in (cache / "shadows").glob("*.npz")}
        assert all(held[key] == size for key, size in entries.items() if key in held)
    assert "bytes of shadow entries uploaded" in orchestrator_log
    assert not any((tmp_path / "state" / "entries").rglob("*.npz")), "the audit's relayed entries are removed"

    # What the inline path would have sent: every shadow model's query logits in the score request.
    task = task_spec.to_proto(task_spec.parse_yaml(BIG_TASK, seed=SEED))
    largest_inline = max(attack_worker_pb2.RunAttackRequest(task_id=outcome.task_id, attack=task.attacks[a], score=(
        attack_worker_pb2.ScorePart(shadows=[attack_worker_pb2.ShadowOutput(
            shadow_index=k, num_rows=row.num_rows, num_classes=row.num_classes,
            logits=bytes(4 * row.num_rows * row.num_classes), in_mask=bytes(row.num_rows))
            for k, row in enumerate(rows[a * NUM_SHADOW:(a + 1) * NUM_SHADOW])]))).ByteSize() for a in (0, 1))
    by_reference = max(attack_worker_pb2.RunAttackRequest(task_id=outcome.task_id, attack=task.attacks[a],
                                                          score=attack_worker_pb2.ScorePart(
                                                              shadows=rows[a * NUM_SHADOW:(a + 1) * NUM_SHADOW])
                                                          ).ByteSize() for a in (0, 1))
    chunk_message = attack_worker_pb2.PutEntriesRequest(chunk=attack_worker_pb2.EntryChunk(
        cache_key=rows[0].cache_key, offset=max(entries.values()), data=bytes(CHUNK_BYTES), entry=rows[0].entry))
    assert largest_inline > MESSAGE_LIMIT > chunk_message.ByteSize() > by_reference
    print(f"\nprivate caches, {MESSAGE_LIMIT:,}-byte limit: inline score request {largest_inline:,} bytes; by "
          f"reference {by_reference:,}; largest entry chunk message {chunk_message.ByteSize():,}; entries "
          f"{min(entries.values()):,}-{max(entries.values()):,} bytes")
