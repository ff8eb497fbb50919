"""The orchestrator's durable state: tasks and their event streams, in SQLite (WAL).

An audit's events are the single source of truth: its results, report and end
are all events. After a restart, an unfinished audit's finished attacks are the
ones with an `attack_result` event; the rest are queued again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from privaudit.v1 import attack_worker_pb2, orchestrator_pb2, task_pb2

SCHEMA = """
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


@dataclass(frozen=True)
class StoredTask:
    task_id: str
    created: float
    task: task_pb2.Task
    report_format: int
    finished: bool


class TaskStore:
    """Thread-safe access to the state database; `path=None` keeps it in memory."""

    def __init__(self, path: Path | None):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                                   isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create_task(self, task_id: str, task: task_pb2.Task, report_format: int) -> float:
        created = time.time()
        with self._lock:
            self._db.execute("INSERT INTO tasks (task_id, created, task, report_format) VALUES (?, ?, ?, ?)",
                             (task_id, created, task.SerializeToString(), report_format))
        return created

    def append(self, task_id: str, first_sequence: int, events: Sequence[orchestrator_pb2.AuditEvent]) -> None:
        """Stores events numbered from `first_sequence` in one transaction; the last may be `done`."""
        rows = [(task_id, first_sequence + i, e.SerializeToString()) for i, e in enumerate(events)]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO events (task_id, sequence, event) VALUES (?, ?, ?)", rows)
                if events and events[-1].HasField("done"):
                    self._db.execute("UPDATE tasks SET finished = 1 WHERE task_id = ?", (task_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def save_shadow(self, task_id: str, attack_index: int, output: attack_worker_pb2.ShadowOutput) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO shadow_outputs (task_id, attack_index, shadow_index, output) "
                             "VALUES (?, ?, ?, ?)",
                             (task_id, attack_index, output.shadow_index, output.SerializeToString()))

    def shadows(self, task_id: str, attack_index: int) -> list[attack_worker_pb2.ShadowOutput]:
        """The attack's finished shadow models, by shadow index."""
        with self._lock:
            rows = self._db.execute("SELECT output FROM shadow_outputs WHERE task_id = ? AND attack_index = ? "
                                    "ORDER BY shadow_index", (task_id, attack_index)).fetchall()
        return [attack_worker_pb2.ShadowOutput.FromString(row[0]) for row in rows]

    def events(self, task_id: str, start: int = 0) -> list[orchestrator_pb2.AuditEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT event FROM events WHERE task_id = ? AND sequence >= ? ORDER BY sequence",
                (task_id, start)).fetchall()
        return [orchestrator_pb2.AuditEvent.FromString(row[0]) for row in rows]

    def event_count(self, task_id: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM events WHERE task_id = ?", (task_id,)).fetchone()[0]

    def task(self, task_id: str) -> StoredTask | None:
        with self._lock:
            row = self._db.execute("SELECT task_id, created, task, report_format, finished FROM tasks "
                                   "WHERE task_id = ?", (task_id,)).fetchone()
        return _stored(row) if row else None

    def tasks(self, limit: int | None = None, unfinished_only: bool = False) -> list[StoredTask]:
        """Newest first."""
        query = "SELECT task_id, created, task, report_format, finished FROM tasks"
        if unfinished_only:
            query += " WHERE finished = 0"
        query += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(query).fetchall()
        return [_stored(row) for row in rows]


def _stored(row: tuple) -> StoredTask:
    task_id, created, task, report_format, finished = row
    return StoredTask(task_id, created, task_pb2.Task.FromString(task), report_format, bool(finished))
