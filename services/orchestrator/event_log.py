"""An audit's append-only stream of events, readable by any number of followers.

The audit's runner appends; every client stream (and, later, a re-attaching
watcher) follows from an event number and blocks until more arrive. The log
ends with the `done` event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from privaudit.v1 import orchestrator_pb2


class EventLog:
    def __init__(self, task_id: str):
        self.task_id = task_id
        self._events: list[orchestrator_pb2.AuditEvent] = []
        self._changed = threading.Condition()

    def append(self, **kind: object) -> orchestrator_pb2.AuditEvent:
        """Appends an event with one `kind` field set, e.g. `append(accepted=...)`."""
        with self._changed:
            event = orchestrator_pb2.AuditEvent(sequence=len(self._events), task_id=self.task_id, **kind)
            self._events.append(event)
            self._changed.notify_all()
        return event

    @property
    def finished(self) -> bool:
        with self._changed:
            return bool(self._events) and self._events[-1].HasField("done")

    def follow(self, start: int = 0, keep_going: Callable[[], bool] = lambda: True,
               poll_seconds: float = 1.0) -> Iterator[orchestrator_pb2.AuditEvent]:
        """Yields events from number `start` on, waiting for new ones, until `done` or
        until keep_going() turns false (the client went away)."""
        position = start
        while True:
            with self._changed:
                while position >= len(self._events):
                    if not keep_going():
                        return
                    self._changed.wait(poll_seconds)
                event = self._events[position]
            position += 1
            yield event
            if event.HasField("done"):
                return
