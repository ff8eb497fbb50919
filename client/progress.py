"""Plain-line progress of an audit: one line each time an attack changes stage or ends."""

from __future__ import annotations

from typing import TextIO

from privaudit.v1 import orchestrator_pb2, results_pb2

_STAGE_WORDS = {
    results_pb2.STAGE_QUEUED: "queued",
    results_pb2.STAGE_LOAD: "loading model and data",
    results_pb2.STAGE_PREDICT: "querying the model",
    results_pb2.STAGE_TRAIN_SHADOW: "training the shadow model",
    results_pb2.STAGE_FIT_ATTACK: "training the attack classifier",
    results_pb2.STAGE_SCORE: "scoring",
}


class ProgressPrinter:
    """Called with each event of an audit; writes a line when something worth saying happens."""

    def __init__(self, out: TextIO):
        self.out = out
        self.names: list[str] = []
        self.stages: dict[int, int] = {}

    def __call__(self, event: orchestrator_pb2.AuditEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "accepted":
            self.names = list(event.accepted.attack_names)
            self._line(f"audit {event.task_id}: {len(self.names)} attacks, seed {event.accepted.seed}")
        elif kind == "progress":
            progress = event.progress
            if progress.message.startswith("retrying"):
                self._line(f"{self._label(progress.attack_index)} {progress.message}")
            if self.stages.get(progress.attack_index) != progress.stage:
                self.stages[progress.attack_index] = progress.stage
                self._line(f"{self._label(progress.attack_index)} {_STAGE_WORDS.get(progress.stage, 'working')}")
        elif kind == "attack_result":
            result = event.attack_result
            if result.status == results_pb2.ATTACK_STATUS_SUCCEEDED:
                outcome = f"done: auc {result.metrics.auc:.4f}, advantage {result.metrics.advantage:.4f}"
            else:
                outcome = f"FAILED: {result.error.message}"
            self._line(f"{self._label(result.attack_index)} {outcome}")
        elif kind == "done" and event.done.error:
            self._line(f"audit {event.task_id}: {event.done.error}")

    def _label(self, index: int) -> str:
        name = self.names[index] if index < len(self.names) else "?"
        return f"[{index + 1}/{len(self.names)} {name}]"

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)
