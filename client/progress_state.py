"""What an audit's progress events say, gathered: per attack its stage, how far it is, how long
it has run and, for LIRA/RMIA, how many of its shadow models are trained; overall, the share of
the audit done and an estimate of the time left. No drawing here (client/progress.py draws).

Shadow models are counted from the progress messages the workers label `shadow k/N` (one
attack's shadow models train in parallel jobs that report under the same attack index): model k
is trained when its TRAIN_SHADOW stage ends (the stage's last event carries the label alone) or
when it was found in the shadow cache.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from privaudit.v1 import orchestrator_pb2, results_pb2

STAGE_WORDS = {
    results_pb2.STAGE_QUEUED: "queued",
    results_pb2.STAGE_LOAD: "loading model and data",
    results_pb2.STAGE_PREDICT: "querying the model",
    results_pb2.STAGE_TRAIN_SHADOW: "training the shadow model",
    results_pb2.STAGE_FIT_ATTACK: "training the attack classifier",
    results_pb2.STAGE_SCORE: "scoring",
}
# The share of an attack's work each stage ends at, in the order stages run: an estimate that
# only moves forward (an attack that skips a stage jumps over its share).
_STAGE_ENDS = {
    results_pb2.STAGE_QUEUED: 0.0,
    results_pb2.STAGE_LOAD: 0.05,
    results_pb2.STAGE_PREDICT: 0.25,
    results_pb2.STAGE_TRAIN_SHADOW: 0.7,
    results_pb2.STAGE_FIT_ATTACK: 0.85,
    results_pb2.STAGE_SCORE: 1.0,
}
_STAGE_STARTS = dict(zip(_STAGE_ENDS, [0.0, *list(_STAGE_ENDS.values())[:-1]], strict=True))
# Of an attack that trains shadow models in parallel jobs, the share those jobs are (the rest:
# the target's outputs and the score job).
SHADOW_SHARE = 0.9
_SHADOW_LABEL = re.compile(r"shadow (\d+)/(\d+)")
_SHADOW_DONE = re.compile(r"shadow (\d+)/(\d+)(: found in the shadow cache.*)?")
# The overall estimate of time left is shown once this share of the audit is done.
ETA_AFTER = 0.05


@dataclass
class AttackState:
    """One attack as its events describe it; times are time.monotonic()."""

    name: str
    stage: int = results_pb2.STAGE_QUEUED
    stage_fraction: float = 0.0
    message: str = ""
    started: float | None = None  # when it left the queue
    ended: float | None = None  # when its result arrived
    outcome: str = ""  # its result in words, once it arrived
    num_shadow: int = 0  # 0: no shadow model seen
    shadows_trained: set[int] = field(default_factory=set)
    shadows_seen: set[int] = field(default_factory=set)
    _fraction: float = 0.0

    @property
    def fraction(self) -> float:
        """The share of the attack done, from 0 to 1; never decreasing."""
        return 1.0 if self.ended is not None else self._fraction

    def elapsed(self, now: float) -> float:
        """Seconds since it left the queue, running until its result arrives."""
        if self.started is None:
            return 0.0
        return (self.ended if self.ended is not None else now) - self.started

    def words(self, note: bool = True) -> str:
        """Where it is, e.g. `shadows 5/16 trained, 2 training`; with `note` (else without
        it), the latest message of its stage (e.g. `epoch 3/10`) and the shadow models in training."""
        if self.outcome:
            return self.outcome
        words = STAGE_WORDS.get(self.stage, "working")
        if self.num_shadow and (len(self.shadows_trained) < self.num_shadow
                                or self.stage == results_pb2.STAGE_TRAIN_SHADOW):
            training = len(self.shadows_seen - self.shadows_trained)
            words = f"shadows {len(self.shadows_trained)}/{self.num_shadow} trained"
            if note and training:
                words += f", {training} training"
        elif note and self.message:
            words += f" ({self.message})"
        return words

    def progress(self, progress: results_pb2.JobProgress, now: float) -> None:
        if progress.stage != results_pb2.STAGE_QUEUED and self.started is None:
            self.started = now
        self.stage, self.stage_fraction, self.message = progress.stage, progress.fraction, progress.message
        label = _SHADOW_LABEL.match(progress.message)
        if label:
            index, self.num_shadow = int(label[1]), int(label[2])
            self.shadows_seen.add(index)
            if progress.fraction >= 1.0 and _SHADOW_DONE.fullmatch(progress.message):
                self.shadows_trained.add(index)
        self._fraction = max(self._fraction, self._estimate())

    def result(self, outcome: str, now: float) -> None:
        self.outcome, self.ended = outcome, now
        if self.started is None:
            self.started = now

    def _estimate(self) -> float:
        if self.num_shadow:
            trained = len(self.shadows_trained) / self.num_shadow
            scoring = self.stage_fraction if trained == 1.0 and self.stage == results_pb2.STAGE_SCORE else 0.0
            return SHADOW_SHARE * trained + (1 - SHADOW_SHARE) * scoring
        start = _STAGE_STARTS.get(self.stage, 0.0)
        end = _STAGE_ENDS.get(self.stage, start)
        return start + min(max(self.stage_fraction, 0.0), 1.0) * (end - start)


@dataclass
class AuditState:
    """Every attack of an audit, and the audit as a whole."""

    attacks: list[AttackState] = field(default_factory=list)
    started: float | None = None  # when the audit was accepted

    def accepted(self, names: list[str], now: float) -> None:
        self.attacks = [AttackState(name) for name in names]
        self.started = now

    def fraction(self) -> float:
        """The share of the audit done: the mean of its attacks'."""
        return sum(a.fraction for a in self.attacks) / len(self.attacks) if self.attacks else 0.0

    def seconds_left(self, now: float) -> float | None:
        """Time left at the pace so far; None until ETA_AFTER of the audit is done."""
        done = self.fraction()
        if self.started is None or done < ETA_AFTER:
            return None
        return (now - self.started) * (1 - done) / done

    def event(self, event: orchestrator_pb2.AuditEvent, outcome_words: str = "",
              now: float | None = None) -> AttackState | None:
        """Takes in an event; returns the attack it moved, if any."""
        now = time.monotonic() if now is None else now
        kind = event.WhichOneof("kind")
        if kind == "accepted":
            self.accepted(list(event.accepted.attack_names), now)
        elif kind == "progress" and event.progress.attack_index < len(self.attacks):
            attack = self.attacks[event.progress.attack_index]
            attack.progress(event.progress, now)
            return attack
        elif kind == "attack_result" and event.attack_result.attack_index < len(self.attacks):
            attack = self.attacks[event.attack_result.attack_index]
            attack.result(outcome_words, now)
            return attack
        return None
