"""An audit's append-only stream of events, stored durably and readable by any number of followers.

The audit's runner appends; each client stream (SubmitAudit, WatchAudit) follows
from an event number, reading stored events and waiting for more. The stream
ends with the `done` event. A follower that has had nothing to send for
HEARTBEAT_SECONDS sends a heartbeat (never stored), so that a client can put an
idle deadline on its stream without mistaking a long quiet job for a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from privaudit.v1 import orchestrator_pb2
from services.orchestrator.store import TaskStore

HEARTBEAT_SECONDS = 10.0


class EventLog:
    def __init__(self, store: TaskStore, task_id: str):
        self.store = store
        self.task_id = task_id
        self._changed = threading.Condition()
        stored = store.events(task_id)
        self._length = len(stored)
        self._finished = bool(stored) and stored[-1].HasField("done")

    def append(self, **kind: Any) -> orchestrator_pb2.AuditEvent:
        """Appends one event with one `kind` field set, e.g. `append(accepted=...)`."""
        return self.extend([kind])[0]

    def extend(self, kinds: list[Mapping[str, Any]]) -> list[orchestrator_pb2.AuditEvent]:
        """Appends several events in one transaction, so a reader sees all or none of them."""
        with self._changed:
            if self._finished:
                raise RuntimeError(f"audit {self.task_id} is done; its stream takes no more events")
            events = [orchestrator_pb2.AuditEvent(sequence=self._length + i, task_id=self.task_id, **kind)
                      for i, kind in enumerate(kinds)]
            self.store.append(self.task_id, self._length, events)
            self._length += len(events)
            self._finished = bool(events) and events[-1].HasField("done")
            self._changed.notify_all()
        return events

    @property
    def finished(self) -> bool:
        with self._changed:
            return self._finished

    def __len__(self) -> int:
        with self._changed:
            return self._length

    def follow(self, start: int = 0, keep_going: Callable[[], bool] = lambda: True, poll_seconds: float = 1.0,
               heartbeat_seconds: float | None = None) -> Iterator[orchestrator_pb2.AuditEvent]:
        """Yields events from number `start` on, waiting for new ones, until `done` or
        until keep_going() turns false (the reader went away); a heartbeat whenever
        `heartbeat_seconds` (default HEARTBEAT_SECONDS) pass without anything to yield."""
        heartbeat_seconds = HEARTBEAT_SECONDS if heartbeat_seconds is None else heartbeat_seconds
        position, quiet_since = start, time.monotonic()
        while True:
            with self._changed:
                while position >= self._length and not self._finished:
                    if not keep_going():
                        return
                    if time.monotonic() - quiet_since >= heartbeat_seconds:
                        break
                    self._changed.wait(min(poll_seconds, heartbeat_seconds))
                has_news = position < self._length or self._finished
            if not has_news:
                yield orchestrator_pb2.AuditEvent(sequence=position, task_id=self.task_id,
                                                  heartbeat=orchestrator_pb2.AuditHeartbeat())
                quiet_since = time.monotonic()
                continue
            batch = self.store.events(self.task_id, position)
            if not batch:
                return  # finished, and `start` was past the end
            for event in batch:
                yield event
                if event.HasField("done"):
                    return
            position, quiet_since = batch[-1].sequence + 1, time.monotonic()
