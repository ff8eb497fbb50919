"""The orchestrator's task store and event logs: status columns, migration of older state
folders, event numbering under concurrency and failure, and readers that never wait for the disk."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from privaudit.services.orchestrator import store as store_module
from privaudit.services.orchestrator.event_log import EventLog, EventsNotStored
from privaudit.services.orchestrator.store import SCHEMA_VERSION, NewerSchema, StoredTask, TaskStore
from privaudit.v1 import attack_worker_pb2, orchestrator_pb2, report_pb2, results_pb2, task_pb2

REPO = Path(__file__).resolve().parents[1]
# A state folder's database made by the orchestrator of commit e9d0521 (schema 0, before status
# columns), dumped as SQL: two succeeded audits, one failed (the reporter refused), one cancelled,
# one stopped with attack 0 finished and attack 1 running, and a LIRA with shadow models 0-1 stored.
SCHEMA_0_DUMP = REPO / "tests" / "data" / "orchestrator_state_v0.sql"
S = orchestrator_pb2
# What that orchestrator's GetAudit answered for each (state, attack names, event count, result
# indices in the order they finished, overall risk, error).
SCHEMA_0_STATUS = {
    "76f0e775182d": (S.AUDIT_STATE_QUEUED, ["LIRA"], 2, [], report_pb2.RISK_LEVEL_UNSPECIFIED, ""),
    "f6c1fd1e18d9": (S.AUDIT_STATE_RUNNING, ["BASELINE"] * 2, 6, [0], report_pb2.RISK_LEVEL_UNSPECIFIED, ""),
    "099ea9ba6b7d": (S.AUDIT_STATE_CANCELLED, ["BASELINE"], 4, [], report_pb2.RISK_LEVEL_UNSPECIFIED, ""),
    "e6a567e9282f": (S.AUDIT_STATE_FAILED, ["BASELINE"], 5, [0], report_pb2.RISK_LEVEL_UNSPECIFIED,
                     "the report could not be built: reporter INVALID_ARGUMENT: results: the reporter refuses a "
                     "lone result"),
    "f02bd15acf1c": (S.AUDIT_STATE_SUCCEEDED, ["BASELINE"] * 2, 9, [1, 0], report_pb2.RISK_LEVEL_LOW, ""),
    "caae1ff628ee": (S.AUDIT_STATE_SUCCEEDED, ["BASELINE"] * 2, 10, [1, 0], report_pb2.RISK_LEVEL_LOW, ""),
}


def schema_0_folder(folder: Path) -> Path:
    """The schema-0 database restored into `folder`; returns its path."""
    path = folder / "orchestrator.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_0_DUMP.read_text())
    db.close()
    return path


def new_task(store: TaskStore, task_id: str) -> EventLog:
    store.create_task(task_id, task_pb2.Task(), report_pb2.REPORT_FORMAT_TEXT).wait()
    return EventLog(store, task_id)


def progress(stage: int = results_pb2.STAGE_PREDICT, index: int = 0) -> dict:
    return {"progress": results_pb2.JobProgress(attack_index=index, stage=stage)}


def result(index: int, status: int = results_pb2.ATTACK_STATUS_SUCCEEDED) -> dict:
    return {"attack_result": results_pb2.AttackResult(attack_index=index, status=status)}


def summary(risk: int = report_pb2.RISK_LEVEL_HIGH) -> dict:
    return {"report_summary": report_pb2.ReportSummary(overall_risk=risk)}


def sketch(status: orchestrator_pb2.AuditStatus) -> tuple:
    return (status.state, list(status.attack_names), status.event_count, [r.attack_index for r in status.results],
            status.summary.overall_risk, status.error)


# ------------------------------------------------------------------ migration


def test_a_schema_0_folder_opens_with_the_status_its_orchestrator_gave(tmp_path):
    path = schema_0_folder(tmp_path)
    store = TaskStore(path)
    try:
        assert {task_id: sketch(store.status(task_id)) for task_id in SCHEMA_0_STATUS} == SCHEMA_0_STATUS
        assert [s.task_id for s in store.statuses(10)] == list(SCHEMA_0_STATUS), "newest first, as before"
        assert {t.task_id for t in store.unfinished()} == {"76f0e775182d", "f6c1fd1e18d9"}
        assert store.shadow_indices("76f0e775182d") == {0: {0, 1}}
        assert len(store.events("caae1ff628ee")) == 10
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    for kind, event in db.execute("SELECT kind, event FROM events"):  # every event's kind, from the event itself
        assert kind == orchestrator_pb2.AuditEvent.FromString(event).WhichOneof("kind")


def test_a_migrated_folder_takes_new_events_and_reopens_as_it_was(tmp_path):
    path = schema_0_folder(tmp_path)
    store = TaskStore(path)
    log = EventLog(store, "f6c1fd1e18d9")
    log.extend([result(1), summary(), {"done": orchestrator_pb2.AuditDone(succeeded_attacks=2)}])
    store.close()
    store = TaskStore(path)  # schema 1 already: opened as it is
    try:
        assert sketch(store.status("f6c1fd1e18d9")) == (
            S.AUDIT_STATE_SUCCEEDED, ["BASELINE"] * 2, 9, [0, 1], report_pb2.RISK_LEVEL_HIGH, "")
        assert [e.sequence for e in store.events("f6c1fd1e18d9")] == list(range(9))
        assert sketch(store.status("caae1ff628ee")) == SCHEMA_0_STATUS["caae1ff628ee"]
    finally:
        store.close()


def test_a_folder_of_a_newer_orchestrator_is_refused_untouched(tmp_path):
    path = tmp_path / "orchestrator.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(NewerSchema, match=f"schema {SCHEMA_VERSION + 1}, written by a newer orchestrator"):
        TaskStore(path)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0


# ------------------------------------------------------------------ status columns


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "file"])
def test_status_follows_the_events_as_they_are_appended(tmp_path, in_memory):
    store = TaskStore(None if in_memory else tmp_path / "state.sqlite3")
    log = new_task(store, "t")
    state = lambda: store.status("t").state  # noqa: E731
    assert state() == S.AUDIT_STATE_QUEUED and store.status("t").event_count == 0
    log.extend([{"accepted": orchestrator_pb2.AuditAccepted(attack_names=["LOSS", "LIRA"])},
                progress(results_pb2.STAGE_QUEUED, 0), progress(results_pb2.STAGE_QUEUED, 1)])
    assert state() == S.AUDIT_STATE_QUEUED, "queued jobs are not running"
    log.append(**progress(results_pb2.STAGE_TRAIN_SHADOW))
    assert state() == S.AUDIT_STATE_RUNNING
    log.append(**progress(results_pb2.STAGE_QUEUED))  # a retry, queued again: the audit still runs
    log.extend([result(1, results_pb2.ATTACK_STATUS_FAILED), result(0)])
    status = store.status("t")
    assert sketch(status) == (S.AUDIT_STATE_RUNNING, ["LOSS", "LIRA"], 7, [1, 0], 0, "")
    assert not store.status("t", with_results=False).results
    log.extend([summary(report_pb2.RISK_LEVEL_MIDDLE), {"report_chunk": report_pb2.ReportChunk(data=b"r")},
                {"done": orchestrator_pb2.AuditDone()}])
    assert sketch(store.status("t")) == (S.AUDIT_STATE_SUCCEEDED, ["LOSS", "LIRA"], 10, [1, 0],
                                          report_pb2.RISK_LEVEL_MIDDLE, "")
    assert not store.unfinished()
    store.close()


@pytest.mark.parametrize(("done", "state"), [
    (orchestrator_pb2.AuditDone(cancelled=True), S.AUDIT_STATE_CANCELLED),
    (orchestrator_pb2.AuditDone(error="the report could not be built: x"), S.AUDIT_STATE_FAILED),
    (orchestrator_pb2.AuditDone(), S.AUDIT_STATE_SUCCEEDED),
])
def test_the_done_event_decides_the_end_state(done, state):
    store = TaskStore(None)
    log = new_task(store, "t")
    log.extend([progress(), {"done": done}])
    assert (store.status("t").state, store.status("t").error) == (state, done.error)
    assert EventLog(store, "t").finished and len(EventLog(store, "t")) == 2
    with pytest.raises(RuntimeError, match="is done"):
        log.append(**progress())
    store.close()


def test_statuses_are_newest_first_and_limited():
    store = TaskStore(None)
    for number in range(5):
        new_task(store, f"t{number}")
    assert [s.task_id for s in store.statuses(3)] == ["t4", "t3", "t2"]
    assert store.status("nope") is None
    store.close()


# ------------------------------------------------------------------ numbering and atomicity


def test_concurrent_appenders_and_followers_see_every_audit_dense_and_in_order(tmp_path):
    store = TaskStore(tmp_path / "state.sqlite3")
    logs = [new_task(store, f"t{number}") for number in range(6)]
    followed: dict[str, list[int]] = {}

    def follow(log: EventLog) -> None:
        followed[log.task_id] = [e.sequence for e in log.follow(0, heartbeat_seconds=60, poll_seconds=0.01)]

    def append(log: EventLog, worker: int) -> None:
        for _ in range(40):
            log.queue([progress(index=worker)] * (1 + worker % 3)).wait()

    followers = [threading.Thread(target=follow, args=(log,)) for log in logs]
    appenders = [threading.Thread(target=append, args=(log, worker)) for log in logs for worker in range(4)]
    for thread in followers + appenders:
        thread.start()
    for thread in appenders:
        thread.join(30)
    for log in logs:
        log.append(done=orchestrator_pb2.AuditDone())
    for thread in followers:
        thread.join(30)
    expected = list(range(40 * (1 + 2 + 3 + 1) + 1))
    assert all(followed[log.task_id] == expected for log in logs)
    store.close()
    store = TaskStore(tmp_path / "state.sqlite3")
    assert all([e.sequence for e in store.events(log.task_id)] == expected for log in logs)
    store.close()


def test_a_report_is_seen_whole_or_not_at_all(tmp_path):
    store = TaskStore(tmp_path / "state.sqlite3")
    log = new_task(store, "t")
    log.extend([progress()] * 20)
    report = [summary(), *[{"report_chunk": report_pb2.ReportChunk(data=b"x" * 1000)}] * 50,
              {"done": orchestrator_pb2.AuditDone()}]
    statuses, streams = set(), set()  # what each read saw
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            status = store.status("t")
            statuses.add((status.state, status.event_count, status.summary.overall_risk))
            kinds = [e.WhichOneof("kind") for e in store.events("t", 20)]
            streams.add((len(kinds), kinds.count("report_chunk")))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    time.sleep(0.05)
    log.extend(report)
    time.sleep(0.05)
    stop.set()
    for reader in readers:
        reader.join(10)
    assert statuses == {(S.AUDIT_STATE_RUNNING, 20, 0), (S.AUDIT_STATE_SUCCEEDED, 72, report_pb2.RISK_LEVEL_HIGH)}
    assert streams == {(0, 0), (52, 50)}
    store.close()


def test_events_that_would_leave_a_gap_are_refused():
    store = TaskStore(None)
    new_task(store, "t")
    event = lambda number: orchestrator_pb2.AuditEvent(sequence=number, task_id="t", **progress())  # noqa: E731
    store.append("t", 0, [event(0)]).wait()
    for first in (0, 2):
        with pytest.raises(ValueError, match=f"numbered from {first} do not follow the stored ones \\(1\\)"):
            store.append("t", first, [event(first)]).wait()
    assert [e.sequence for e in store.events("t")] == [0] and store.status("t").event_count == 1
    store.close()


def test_a_write_that_fails_fails_its_audit_alone_and_its_followers_are_told(tmp_path):
    """Events of an audit whose task row is missing cannot be stored; written in one batch with
    another audit's, they fail alone."""
    path = tmp_path / "state.sqlite3"
    store = TaskStore(path)
    fine, ghost = new_task(store, "fine"), EventLog(store, "ghost")
    follower = ghost.follow(0, heartbeat_seconds=60, poll_seconds=0.01)
    first, failing, also_fine = fine.queue([progress()]), ghost.queue([progress()]), fine.queue([progress()])
    first.wait()  # makes all three, in one transaction that fails, then each alone
    also_fine.wait()
    with pytest.raises(EventsNotStored, match="audit ghost: events from number 0 could not be stored"):
        failing.wait()
    with pytest.raises(EventsNotStored):
        next(follower)  # told, not left waiting
    with pytest.raises(EventsNotStored):
        ghost.append(**progress())
    assert store.events("ghost") == [] and store.status("fine").event_count == 2
    store.close()


ACKNOWLEDGING_WRITER = """
import sys, threading
sys.path[:0] = [{repo!r}, {protos!r}]
from pathlib import Path
from privaudit.v1 import attack_worker_pb2, orchestrator_pb2, report_pb2, results_pb2, task_pb2
from privaudit.services.orchestrator.event_log import EventLog
from privaudit.services.orchestrator.store import TaskStore
store = TaskStore(Path({path!r}))
logs = []
for number in range(8):
    store.create_task(f"t{{number}}", task_pb2.Task(), report_pb2.REPORT_FORMAT_TEXT).wait()
    logs.append(EventLog(store, f"t{{number}}"))
printing = threading.Lock()
def append(log):
    while True:
        log.extend([{{"progress": results_pb2.JobProgress(fraction=0.5)}}] * 3)
        with printing:
            print(log.task_id, len(log), flush=True)  # acknowledged: stored
threads = [threading.Thread(target=append, args=(log,)) for log in logs]
for thread in threads:
    thread.start()
threads[0].join()
"""


def test_a_killed_orchestrator_loses_no_acknowledged_event_and_leaves_no_gap(tmp_path):
    path = tmp_path / "state.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", ACKNOWLEDGING_WRITER.format(
        repo=str(REPO), protos=str(REPO / "protos" / "gen" / "python"), path=str(path))],
        stdout=subprocess.PIPE, text=True)
    acknowledged: dict[str, int] = {}
    try:
        for line in writer.stdout:
            task_id, count = line.split()
            acknowledged[task_id] = int(count)
            if sum(acknowledged.values()) > 3000:
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        writer.stdout.close()
    assert len(acknowledged) == 8
    store = TaskStore(path)
    try:
        for task_id, count in acknowledged.items():
            stored = [e.sequence for e in store.events(task_id)]
            assert stored == list(range(len(stored))) and len(stored) >= count
            assert store.status(task_id).event_count == len(stored)
    finally:
        store.close()


# ------------------------------------------------------------------ no waiting on the disk


def test_a_held_up_write_holds_up_no_reader_no_follower_and_no_appender(tmp_path):
    """Another connection holds the database's write lock (a slow disk would do the same): a
    write waits for it, while queueing, reading, counting and following go on."""
    path = tmp_path / "state.sqlite3"
    store = TaskStore(path)
    log = new_task(store, "t")
    log.extend([progress()] * 3)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    writing = threading.Thread(target=log.queue([progress()]).wait)
    try:
        writing.start()
        time.sleep(0.1)  # the write is under way, waiting for the lock
        started = time.monotonic()
        pending = log.queue([progress()])  # under a caller's lock, this must not wait
        queued_in = time.monotonic() - started
        follower = log.follow(0, heartbeat_seconds=0.05, poll_seconds=0.01)
        seen = [next(follower).sequence for _ in range(3)]
        beat = next(follower)
        status = store.status("t")
        count = len(log)
        answered_in = time.monotonic() - started
        assert writing.is_alive()
    finally:
        blocker.execute("COMMIT")
    writing.join(10)
    pending.wait()
    assert queued_in < 0.05 and answered_in < 1.0, (queued_in, answered_in)
    assert seen == [0, 1, 2] and beat.HasField("heartbeat") and beat.sequence == 3
    assert (status.event_count, count) == (3, 3), "only what is stored is seen"
    assert [next(follower).sequence for _ in range(2)] == [3, 4], "the events follow once they are stored"
    store.close()


def test_the_status_columns_say_what_a_replay_of_the_events_says(tmp_path):
    """The columns against the event log itself, over many random streams."""
    rng = random.Random(15)
    store = TaskStore(tmp_path / "state.sqlite3")
    kinds = [progress(stage) for stage in (results_pb2.STAGE_QUEUED, results_pb2.STAGE_LOAD,
                                             results_pb2.STAGE_UNSPECIFIED)] + [result(0), result(1), summary(),
                                                                                {"notice": S.AuditNotice()}]
    for number in range(40):
        log = new_task(store, f"t{number}")
        stream = [{"accepted": S.AuditAccepted(attack_names=[f"A{number}"])}, *rng.choices(kinds, k=rng.randint(0, 8))]
        if rng.random() < 0.7:
            stream.append({"done": S.AuditDone(cancelled=rng.random() < 0.3, error=rng.choice(["", "broke"]))})
        while stream:
            cut = rng.randint(1, len(stream))
            log.extend(stream[:cut])
            stream = stream[cut:]
    for number in range(40):
        events = store.events(f"t{number}")
        kinds_seen = [e.WhichOneof("kind") for e in events]
        running = any(k == "attack_result" or (k == "progress" and e.progress.stage > results_pb2.STAGE_QUEUED)
                      for k, e in zip(kinds_seen, events, strict=True))
        done = events[-1].done if kinds_seen[-1] == "done" else None
        state = (S.AUDIT_STATE_QUEUED if not running and done is None else S.AUDIT_STATE_RUNNING if done is None
                 else S.AUDIT_STATE_CANCELLED if done.cancelled else S.AUDIT_STATE_FAILED if done.error
                 else S.AUDIT_STATE_SUCCEEDED)
        status = store.status(f"t{number}")
        assert status.state == state
        assert list(status.attack_names) == [f"A{number}"] and status.event_count == len(events)
        assert [r.attack_index for r in status.results] == [e.attack_result.attack_index for e in events
                                                           if e.HasField("attack_result")]
        assert status.HasField("summary") == ("report_summary" in kinds_seen)
        assert status.error == (done.error if done else "")
    store.close()


def test_attack_names_are_kept_as_given():
    store = TaskStore(None)
    log = new_task(store, "t")
    names = ["LABEL-ONLY", 'quote " and \\ back', "ünïcode", ""]
    log.append(accepted=S.AuditAccepted(attack_names=names))
    assert list(store.status("t").attack_names) == names
    store.close()


def test_shadow_rows_hold_references_of_a_hundred_bytes_and_old_inline_rows_still_read(tmp_path):
    """A schema-0 folder's LIRA holds shadow models 0-1 inline (as stored then); new ones are
    references; a forgotten one is gone, for the runner and after a reopen alike."""
    path = schema_0_folder(tmp_path)
    store = TaskStore(path)
    try:
        old = store.shadows("76f0e775182d", 0)
        assert [o.shadow_index for o in old] == [0, 1] and not any(o.HasField("entry") for o in old)
        for index in (2, 3):
            reference = attack_worker_pb2.ShadowOutput(shadow_index=index, cache_key="e" * 64, num_rows=32000,
                                                       num_classes=10)
            reference.entry.size_bytes, reference.entry.sha256 = 2_560_384, "f" * 64
            store.save_shadow("76f0e775182d", 0, reference).wait()
        store.forget_shadows("76f0e775182d", 0, [1, 3]).wait()
        assert store.shadow_indices("76f0e775182d") == {0: {0, 2}}
    finally:
        store.close()
    store = TaskStore(path)
    try:
        assert [o.shadow_index for o in store.shadows("76f0e775182d", 0)] == [0, 2]
    finally:
        store.close()
    sizes = dict(sqlite3.connect(path).execute(
        "SELECT shadow_index, length(output) FROM shadow_outputs WHERE task_id = '76f0e775182d'"))
    assert sizes[2] < 200, "a reference: key, size and digest"


def test_a_schema_1_folder_gains_the_baseline_column_and_keeps_its_tasks(tmp_path):
    path = tmp_path / "orchestrator.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(store_module.SCHEMA_0 + store_module.SCHEMA_1 + "PRAGMA user_version = 1;")
    db.execute("INSERT INTO tasks (task_id, created, task, report_format) VALUES ('old', 1, ?, 1)",
               (task_pb2.Task(seed=3).SerializeToString(),))
    db.commit()
    db.close()
    store = TaskStore(path)
    try:
        assert store.unfinished() == [StoredTask("old", task_pb2.Task(seed=3), 1, "")]
        store.create_task("new", task_pb2.Task(seed=4), 2, baseline_report_json='{"schema_version": "3.0"}').wait()
        assert [(t.task_id, t.baseline_report_json) for t in store.unfinished()] == [
            ("old", ""), ("new", '{"schema_version": "3.0"}')]
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
