"""One log format for every service (time, level, service, message), and a throttle for
records a caller can cause in bulk."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# A kind of record a caller can cause over and over (a bug's traceback, a refused call) is
# written at most once per this many seconds.
THROTTLE_INTERVAL_S = 60.0
_MAX_KINDS = 1024  # kinds remembered; past it, those quiet for an interval are forgotten


def setup(service: str, level: str = "INFO") -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s {service} %(message)s",
        force=True,
    )


@dataclass(frozen=True)
class Admission:
    """Whether to write a record, and what it should say."""

    write: bool
    held_back: int  # records of its kind not written since the last one that was (when `write`)
    label: str  # the label of the last record of its kind written: this one's when `write`

    @property
    def note(self) -> str:
        """What to add to a written record about those held back before it ('' for none)."""
        return f" [{self.held_back:,} more of this kind since the last one were not logged]" if self.held_back else ""


@dataclass
class _Kind:
    written_at: float
    label: str
    held_back: int = 0


class Throttle:
    """Decides which of many similar records to write: the first of each kind, then at most
    one per `interval` seconds, which carries the count of those held back since. A held-back
    record's `label` is the written one's (e.g. the incident id whose traceback is logged).
    Thread-safe."""

    def __init__(self, interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.interval = THROTTLE_INTERVAL_S if interval is None else interval
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[Hashable, _Kind] = {}

    def admit(self, kind: Hashable, label: str = "") -> Admission:
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen.written_at < self.interval:
                seen.held_back += 1
                return Admission(False, 0, seen.label)
            if seen is None and len(self._kinds) >= _MAX_KINDS:
                self._kinds = {k: v for k, v in self._kinds.items() if now - v.written_at < self.interval}
            self._kinds[kind] = _Kind(now, label)
            return Admission(True, seen.held_back if seen else 0, label)
