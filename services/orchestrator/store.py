"""The orchestrator's durable state: tasks, their event streams and each task's status, in SQLite (WAL).

An audit's events are its history: its results, report and end are all events.
After a restart, an unfinished audit's finished attacks are the ones with an
`attack_result` event; the rest are queued again. Each task's status (state,
attack names, report summary, error, event count) has a row of its own, changed
in the same transaction as the events that change it, so GetAudit and
ListAudits read rows (and GetAudit's results the `attack_result` events alone)
instead of replaying streams.

Writes are queued, then made in the order they were queued. Queueing is quick
and in memory: a caller may queue under its own lock, which fixes the order, and
`wait()` for the write after releasing it. The first waiter makes every write
queued so far, in one transaction (group commit: while one commits, the others
queue, and the next waiter commits them all at once); a later waiter whose write
that included just returns. An append says which event number it starts at and
is refused unless that is the task's stored event count, so a task's stored
events are always numbered 0, 1, 2... with no gap, whatever fails. Reads use
connections of their own, which WAL lets read while a write is made; a store in
memory has one connection, shared under a lock.

A finished shadow model of a LIRA/RMIA attack is a row of `shadow_outputs`: from workers sharing
their cache folder a reference to the stored entry (key, size, SHA-256: about 100 bytes), else
its logits inline as older orchestrators stored them.

Schema versions are PRAGMA user_version; a folder written by an older
orchestrator is migrated when it is opened (status rows derived from the stored
events, once).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from privaudit.v1 import attack_worker_pb2, orchestrator_pb2, report_pb2, results_pb2, task_pb2

log = logging.getLogger(__name__)

# Schema 0: the first release's tables (kept as it was; later versions only add to it).
SCHEMA_0 = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    created REAL NOT NULL,          -- seconds since the epoch
    task BLOB NOT NULL,             -- privaudit.v1.Task, defaults filled in
    report_format INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS shadow_outputs (  -- finished shadow models of LIRA/RMIA attacks
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    attack_index INTEGER NOT NULL,
    shadow_index INTEGER NOT NULL,
    output BLOB NOT NULL,           -- privaudit.v1.ShadowOutput
    PRIMARY KEY (task_id, attack_index, shadow_index)
);
CREATE TABLE IF NOT EXISTS events (
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    sequence INTEGER NOT NULL,
    event BLOB NOT NULL,            -- privaudit.v1.AuditEvent
    PRIMARY KEY (task_id, sequence)
);
"""
# Schema 1: each task's status in a row of its own (small, so that updating it per event does not
# copy the task); each event's kind, so that results are read alone (a partial index holds them).
SCHEMA_1 = f"""
CREATE TABLE audit_status (
    task_id TEXT PRIMARY KEY REFERENCES tasks(task_id),
    state INTEGER NOT NULL DEFAULT {orchestrator_pb2.AUDIT_STATE_QUEUED},
    attack_names TEXT NOT NULL DEFAULT '[]',  -- JSON list, from `accepted`
    summary BLOB,                             -- privaudit.v1.ReportSummary
    error TEXT NOT NULL DEFAULT '',           -- `done`'s
    event_count INTEGER NOT NULL DEFAULT 0
);
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT '';  -- the AuditEvent's `kind` field
CREATE INDEX attack_results ON events (task_id, sequence) WHERE kind = 'attack_result';
CREATE INDEX tasks_by_created ON tasks (created);
"""
# Schema 2: the report a task's report is compared with.
SCHEMA_2 = """
ALTER TABLE tasks ADD COLUMN baseline_report_json TEXT NOT NULL DEFAULT '';  -- empty: none
"""
SCHEMA_VERSION = 2
ENDED = frozenset({orchestrator_pb2.AUDIT_STATE_SUCCEEDED, orchestrator_pb2.AUDIT_STATE_FAILED,
                   orchestrator_pb2.AUDIT_STATE_CANCELLED})
_STATUS = ("SELECT task_id, created, state, attack_names, summary, error, event_count "
           "FROM tasks JOIN audit_status USING (task_id)")


# Told, by whoever made a queued write, whether it was committed (None) or why not; may return
# the exception that the write's `wait()` raises in place of the store's.
Settled = Callable[[BaseException | None], BaseException | None]


class StoreClosed(RuntimeError):
    """A write was queued after the store closed."""


class NewerSchema(RuntimeError):
    """The state folder was written by a newer orchestrator."""


@dataclass(frozen=True)
class StoredTask:
    """What resuming an unfinished audit needs."""

    task_id: str
    task: task_pb2.Task
    report_format: int
    baseline_report_json: str = ""


@dataclass(frozen=True)
class StatusChange:
    """What a run of events changes in their task's status row. States only move forward (QUEUED,
    RUNNING, then one end, with `done`, the last event), and the enum numbers them in that
    order, so a row takes the larger of its state and `state`."""

    events: int
    state: int
    attack_names: list[str] | None
    summary: report_pb2.ReportSummary | None
    error: str | None

    @classmethod
    def of(cls, events: Iterable[orchestrator_pb2.AuditEvent]) -> StatusChange:
        count, state, names, summary, error = 0, orchestrator_pb2.AUDIT_STATE_QUEUED, None, None, None
        for event in events:
            count += 1
            kind = event.WhichOneof("kind")
            if kind == "accepted":
                names = list(event.accepted.attack_names)
            elif kind == "attack_result" or (kind == "progress" and event.progress.stage not in (
                    results_pb2.STAGE_UNSPECIFIED, results_pb2.STAGE_QUEUED)):
                state = max(state, orchestrator_pb2.AUDIT_STATE_RUNNING)
            elif kind == "report_summary":
                summary = event.report_summary
            elif kind == "done":
                error = event.done.error
                state = (orchestrator_pb2.AUDIT_STATE_CANCELLED if event.done.cancelled
                         else orchestrator_pb2.AUDIT_STATE_FAILED if event.done.error
                         else orchestrator_pb2.AUDIT_STATE_SUCCEEDED)
        return cls(count, state, names, summary, error)

    def apply(self, db: sqlite3.Connection, task_id: str, stored_events: int) -> bool:
        """Changes the row of `task_id` if it holds `stored_events` events; False if not."""
        names = json.dumps(self.attack_names) if self.attack_names is not None else None
        summary = self.summary.SerializeToString() if self.summary is not None else None
        if db.execute(
            "UPDATE audit_status SET event_count = event_count + ?, state = MAX(state, ?), "
            "attack_names = COALESCE(?, attack_names), summary = COALESCE(?, summary), error = COALESCE(?, error) "
            "WHERE task_id = ? AND event_count = ?",
            (self.events, self.state, names, summary, self.error, task_id, stored_events),
        ).rowcount != 1:
            return False
        if self.state in ENDED:
            db.execute("UPDATE tasks SET finished = 1 WHERE task_id = ?", (task_id,))
        return True


class Pending:
    """A queued write. `wait()` returns once it is committed, or raises why it was not; wait
    for every write queued (the waiters make the writes; otherwise only `close` does)."""

    def __init__(self, write: Callable[[sqlite3.Connection], None], flush: Callable[[], None],
                 on_settled: Settled | None = None):
        self.write = write
        self._flush = flush
        self._on_settled = on_settled
        self._settled = False
        self._error: BaseException | None = None

    def wait(self) -> None:
        if not self._settled:
            self._flush()
        if self._error is not None:
            raise self._error

    def settle(self, error: BaseException | None) -> None:
        """Called by whoever made the write: it was committed (error None) or not."""
        self._error = error
        try:
            if self._on_settled is not None:
                self._error = self._on_settled(error) or error
        except Exception:  # the other writes of the batch must still be settled
            log.exception("a task store write's callback failed")
        finally:
            self._settled = True


class TaskStore:
    """Thread-safe access to the state database; `path=None` keeps it in memory."""

    def __init__(self, path: Path | None):
        self._path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        _upgrade(self._db)
        # In memory there is one connection: readers and writes take turns (no I/O to wait for).
        self._shared = threading.Lock() if path is None else nullcontext()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._queued = threading.Lock()  # guards the queue
        self._writes: deque[Pending] = deque()
        self._writing = threading.Lock()  # held by whoever makes the writes
        self._closed = False

    def close(self) -> None:
        """Makes the writes queued so far, then closes."""
        with self._queued:
            self._closed = True
        self._flush()
        self._db.close()
        while not self._readers.empty():
            self._readers.get().close()

    # ---------------------------------------------------------------- writes (queued)

    def create_task(self, task_id: str, task: task_pb2.Task, report_format: int,
                    events: Sequence[orchestrator_pb2.AuditEvent] = (),
                    on_settled: Settled | None = None, baseline_report_json: str = "") -> Pending:
        """Queues a new task with its first events (numbered from 0), in one transaction."""
        row = (task_id, time.time(), task.SerializeToString(), report_format, baseline_report_json)

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO tasks (task_id, created, task, report_format, baseline_report_json) "
                       "VALUES (?, ?, ?, ?, ?)", row)
            db.execute("INSERT INTO audit_status (task_id) VALUES (?)", (task_id,))
            _append(db, task_id, 0, events)
        return self._queue(write, on_settled)

    def append(self, task_id: str, first_sequence: int, events: Sequence[orchestrator_pb2.AuditEvent],
               on_settled: Settled | None = None) -> Pending:
        """Queues events numbered from `first_sequence`, to be stored in one transaction with the
        status they change; refused unless the task holds `first_sequence` events by then."""
        return self._queue(lambda db: _append(db, task_id, first_sequence, events), on_settled)

    def save_shadow(self, task_id: str, attack_index: int, output: attack_worker_pb2.ShadowOutput) -> Pending:
        row = (task_id, attack_index, output.shadow_index, output.SerializeToString())
        return self._queue(lambda db: db.execute(
            "INSERT OR REPLACE INTO shadow_outputs (task_id, attack_index, shadow_index, output) VALUES (?, ?, ?, ?)",
            row))

    def forget_shadows(self, task_id: str, attack_index: int, shadow_indices: Iterable[int]) -> Pending:
        """Queues the removal of stored shadow models (their outputs are gone: trained again)."""
        rows = [(task_id, attack_index, index) for index in shadow_indices]
        return self._queue(lambda db: db.executemany(
            "DELETE FROM shadow_outputs WHERE task_id = ? AND attack_index = ? AND shadow_index = ?", rows))

    # ---------------------------------------------------------------- reads

    def status(self, task_id: str, with_results: bool = True) -> orchestrator_pb2.AuditStatus | None:
        """The task's status as stored; with its results (in the order they were stored), read in
        the same snapshot as the row."""
        with self._reading() as db:
            row = db.execute(f"{_STATUS} WHERE task_id = ?", (task_id,)).fetchone()
            results = _results(db, task_id) if row and with_results else []
        if row is None:
            return None
        status = _status(row)
        status.results.extend(results)
        return status

    def statuses(self, limit: int) -> list[orchestrator_pb2.AuditStatus]:
        """The newest `limit` tasks' statuses, newest first, without results."""
        with self._reading() as db:
            rows = db.execute(f"{_STATUS} ORDER BY created DESC, tasks.rowid DESC LIMIT ?", (limit,)).fetchall()
        return [_status(row) for row in rows]

    def results(self, task_id: str) -> list[results_pb2.AttackResult]:
        """The task's attack results, in the order they were stored."""
        with self._reading() as db:
            return _results(db, task_id)

    def events(self, task_id: str, start: int = 0) -> list[orchestrator_pb2.AuditEvent]:
        with self._reading() as db:
            rows = db.execute("SELECT event FROM events WHERE task_id = ? AND sequence >= ? ORDER BY sequence",
                              (task_id, start)).fetchall()
        return [orchestrator_pb2.AuditEvent.FromString(event) for (event,) in rows]

    def unfinished(self) -> list[StoredTask]:
        """The tasks without a `done` event, oldest first."""
        with self._reading() as db:
            rows = db.execute("SELECT task_id, task, report_format, baseline_report_json FROM tasks "
                              "WHERE finished = 0 ORDER BY created, rowid").fetchall()
        return [StoredTask(task_id, task_pb2.Task.FromString(task), report_format, baseline)
                for task_id, task, report_format, baseline in rows]

    def shadow_indices(self, task_id: str) -> dict[int, set[int]]:
        """Attack index -> the indices of its stored shadow models."""
        with self._reading() as db:
            rows = db.execute("SELECT attack_index, shadow_index FROM shadow_outputs WHERE task_id = ?",
                              (task_id,)).fetchall()
        stored: dict[int, set[int]] = {}
        for attack_index, shadow_index in rows:
            stored.setdefault(attack_index, set()).add(shadow_index)
        return stored

    def shadows(self, task_id: str, attack_index: int) -> list[attack_worker_pb2.ShadowOutput]:
        """The attack's stored shadow models, by shadow index."""
        with self._reading() as db:
            rows = db.execute("SELECT output FROM shadow_outputs WHERE task_id = ? AND attack_index = ? "
                              "ORDER BY shadow_index", (task_id, attack_index)).fetchall()
        return [attack_worker_pb2.ShadowOutput.FromString(output) for (output,) in rows]

    # ---------------------------------------------------------------- internals

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self._path) if self._path else ":memory:", check_same_thread=False,
                               isolation_level=None)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection to read from, in one read transaction (one snapshot for all its reads)."""
        if self._path is None:
            with self._shared:
                yield self._db
            return
        try:
            db = self._readers.get_nowait()
        except queue.Empty:
            db = self._connect()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("ROLLBACK")
            self._readers.put(db)

    def _queue(self, write: Callable[[sqlite3.Connection], None],
               on_settled: Settled | None = None) -> Pending:
        pending = Pending(write, self._flush, on_settled)
        with self._queued:
            if self._closed:
                raise StoreClosed("the task store is closed")
            self._writes.append(pending)
        return pending

    def _flush(self) -> None:
        """Makes every write queued so far. A write queued before the call is settled when it
        returns: this call made it, or the one before it (which settles before letting go)."""
        with self._writing:
            with self._queued:
                batch = list(self._writes)
                self._writes.clear()
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[Pending]) -> None:
        """Makes the writes in one transaction; when that fails, each in its own, so that one bad
        write fails alone (and a task's later appends with it: they no longer follow on)."""
        try:
            self._transaction(batch)
            errors: list[BaseException | None] = [None] * len(batch)
        except Exception:
            errors = []
            for pending in batch:
                try:
                    self._transaction([pending])
                    errors.append(None)
                except Exception as error:
                    log.error("a write to the task store failed: %s", error)
                    errors.append(error)
        for pending, error in zip(batch, errors, strict=True):
            pending.settle(error)

    def _transaction(self, batch: list[Pending]) -> None:
        with self._shared:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for pending in batch:
                    pending.write(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


def _append(db: sqlite3.Connection, task_id: str, first_sequence: int,
            events: Sequence[orchestrator_pb2.AuditEvent]) -> None:
    if not events:
        return
    if not StatusChange.of(events).apply(db, task_id, first_sequence):
        stored = db.execute("SELECT event_count FROM audit_status WHERE task_id = ?", (task_id,)).fetchone()
        raise ValueError(f"audit {task_id}: events numbered from {first_sequence} do not follow the stored ones "
                         f"({stored[0] if stored else 'no such task'})")
    db.executemany("INSERT INTO events (task_id, sequence, kind, event) VALUES (?, ?, ?, ?)",
                   [(task_id, first_sequence + i, e.WhichOneof("kind"), e.SerializeToString())
                    for i, e in enumerate(events)])


def _results(db: sqlite3.Connection, task_id: str) -> list[results_pb2.AttackResult]:
    """The task's attack results in the order they were stored (through the partial index)."""
    rows = db.execute("SELECT event FROM events WHERE task_id = ? AND kind = 'attack_result' ORDER BY sequence",
                      (task_id,)).fetchall()
    return [orchestrator_pb2.AuditEvent.FromString(event).attack_result for (event,) in rows]


def _status(row: tuple) -> orchestrator_pb2.AuditStatus:
    task_id, created, state, attack_names, summary, error, event_count = row
    stamp = Timestamp()
    stamp.FromNanoseconds(int(created * 1e9))
    status = orchestrator_pb2.AuditStatus(task_id=task_id, created=stamp, state=state,
                                          attack_names=json.loads(attack_names), error=error,
                                          event_count=event_count)
    if summary is not None:
        status.summary.ParseFromString(summary)
    return status


def _upgrade(db: sqlite3.Connection) -> None:
    """Brings the database to SCHEMA_VERSION in one transaction: each schema after its version in
    turn (a new one gets them all); one of schema 0 gets the status rows, derived from its events."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise NewerSchema(f"the state database is of schema {version}, written by a newer orchestrator; this one "
                          f"reads schemas up to {SCHEMA_VERSION}")
    if version == SCHEMA_VERSION:
        return
    scripts = (SCHEMA_0 + SCHEMA_1, SCHEMA_2)  # scripts[v] brings schema v to v + 1 (0: also a new database)
    db.executescript("BEGIN IMMEDIATE;" + "".join(scripts[version:]))  # the script leaves the transaction open
    try:
        if version == 0:
            _derive_status(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _derive_status(db: sqlite3.Connection) -> None:
    """Fills the status rows and event kinds of tasks stored before they existed."""
    task_ids = [task_id for (task_id,) in db.execute("SELECT task_id FROM tasks").fetchall()]
    for task_id in task_ids:
        db.execute("INSERT INTO audit_status (task_id) VALUES (?)", (task_id,))
        rows = db.execute("SELECT sequence, event FROM events WHERE task_id = ? ORDER BY sequence",
                          (task_id,)).fetchall()
        events = [orchestrator_pb2.AuditEvent.FromString(event) for _, event in rows]
        db.executemany("UPDATE events SET kind = ? WHERE task_id = ? AND sequence = ?",
                       [(event.WhichOneof("kind"), task_id, sequence)
                        for (sequence, _), event in zip(rows, events, strict=True)])
        StatusChange.of(events).apply(db, task_id, 0)
    if task_ids:
        log.info("state database migrated to schema %d: status of %d task(s) derived from their events",
                 SCHEMA_VERSION, len(task_ids))
