"""An audit's append-only stream of events, stored durably and readable by any number of followers.

The audit's runner appends; each client stream (SubmitAudit, WatchAudit) follows
from an event number, reading stored events and waiting for more. The stream
ends with the `done` event. A follower that has had nothing to send for
HEARTBEAT_SECONDS sends a heartbeat (never stored), so that a client can put an
idle deadline on its stream without mistaking a long quiet job for a hang.

Appending is two steps: `queue` numbers the events and queues their write (in
memory, so a caller may do it under its own lock, which then decides the order),
and the returned write is waited for after the lock is released. The store makes
a log's writes in the order they were queued; followers see an event once it is
stored, so every follower sees 0, 1, 2... in order, and nothing a restart would
lose.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

from privaudit.services.common.errors import INFRASTRUCTURE, Failure
from privaudit.services.orchestrator.store import ENDED, Pending, Settled, TaskStore
from privaudit.v1 import orchestrator_pb2, task_pb2

HEARTBEAT_SECONDS = 10.0


class EventsNotStored(Failure):
    """An audit's events could not be stored; the stream stops at the last stored one, and an
    orchestrator restarted on the same state resumes the audit from there."""

    fault = INFRASTRUCTURE


class EventLog:
    def __init__(self, store: TaskStore, task_id: str):
        self.store = store
        self.task_id = task_id
        self._changed = threading.Condition()
        stored = store.status(task_id, with_results=False)
        self._length = self._stored = stored.event_count if stored else 0  # numbered; stored
        self._finished = stored is not None and stored.state in ENDED  # `done` is numbered
        self._failure: EventsNotStored | None = None

    def queue_task(self, task: task_pb2.Task, report_format: int, kinds: list[Mapping[str, Any]],
                   baseline_report_json: str = "") -> Pending:
        """Queues the write of a new task with its first events (see `queue`)."""
        return self._queue(kinds, lambda first, events, on_settled: self.store.create_task(
            self.task_id, task, report_format, events, on_settled, baseline_report_json))[1]

    def append(self, **kind: Any) -> orchestrator_pb2.AuditEvent:
        """Appends one event with one `kind` field set, e.g. `append(accepted=...)`, once stored."""
        return self.extend([kind])[0]

    def extend(self, kinds: list[Mapping[str, Any]]) -> list[orchestrator_pb2.AuditEvent]:
        """Appends several events in one transaction (a reader sees all or none of them) and
        returns once they are stored."""
        events, pending = self._queue(kinds)
        pending.wait()
        return events

    def queue(self, kinds: list[Mapping[str, Any]]) -> Pending:
        """Numbers the events and queues their write (see the module's docstring)."""
        return self._queue(kinds)[1]

    @property
    def finished(self) -> bool:
        """Whether `done` has been appended (followers see it once it is stored)."""
        with self._changed:
            return self._finished

    def __len__(self) -> int:
        """The number of events stored so far."""
        with self._changed:
            return self._stored

    def follow(self, start: int = 0, keep_going: Callable[[], bool] = lambda: True, poll_seconds: float = 1.0,
               heartbeat_seconds: float | None = None) -> Iterator[orchestrator_pb2.AuditEvent]:
        """Yields events from number `start` on, waiting for new ones, until `done` or
        until keep_going() turns false (the reader went away); a heartbeat whenever
        `heartbeat_seconds` (default HEARTBEAT_SECONDS) pass without anything to yield.
        Raises EventsNotStored when the events it waits for could not be stored."""
        heartbeat_seconds = HEARTBEAT_SECONDS if heartbeat_seconds is None else heartbeat_seconds
        position, quiet_since = start, time.monotonic()
        while True:
            with self._changed:
                while position >= self._stored and not self._complete():
                    if self._failure is not None:
                        raise self._failure
                    if not keep_going():
                        return
                    if time.monotonic() - quiet_since >= heartbeat_seconds:
                        break
                    self._changed.wait(min(poll_seconds, heartbeat_seconds))
                has_news = position < self._stored or self._complete()
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

    # ---------------------------------------------------------------- internals

    def _queue(self, kinds: list[Mapping[str, Any]], write: Callable[..., Pending] | None = None,
               ) -> tuple[list[orchestrator_pb2.AuditEvent], Pending]:
        """Numbers the events and queues `write(first, events, settled)`, by default their append."""
        write = write or partial(self.store.append, self.task_id)
        with self._changed:
            if self._failure is not None:
                raise self._failure
            if self._finished:
                raise RuntimeError(f"audit {self.task_id} is done; its stream takes no more events")
            first = self._length
            events = self._number(kinds)
            try:
                return events, write(first, events, on_settled=self._settled_until(self._length))
            except BaseException:
                self._length, self._finished = first, False
                raise

    def _number(self, kinds: list[Mapping[str, Any]]) -> list[orchestrator_pb2.AuditEvent]:
        """The events, numbered after those numbered so far (called with the lock held)."""
        events = [orchestrator_pb2.AuditEvent(sequence=self._length + i, task_id=self.task_id, **kind)
                  for i, kind in enumerate(kinds)]
        self._length += len(events)
        self._finished = bool(events) and events[-1].HasField("done")
        return events

    def _settled_until(self, end: int) -> Settled:
        """What the store tells once events up to number `end` (exclusive) are stored, or not;
        a failure breaks the log (its waiters, followers and later appends raise EventsNotStored)."""
        def settled(error: BaseException | None) -> EventsNotStored | None:
            with self._changed:
                if error is None:
                    self._stored = max(self._stored, end)
                elif self._failure is None:
                    self._failure = EventsNotStored(f"audit {self.task_id}: events from number {self._stored} "
                                                    f"could not be stored ({error})")
                self._changed.notify_all()
                return self._failure if error is not None else None
        return settled

    def _complete(self) -> bool:
        """`done` is stored (called with the lock held)."""
        return self._finished and self._stored == self._length
