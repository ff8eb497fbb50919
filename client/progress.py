"""Showing an audit's progress: live bars on a terminal, plain lines otherwise.

Both displays are called with each event of the audit's stream. `display_for`
picks one for the stream the user watches.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from privaudit.v1 import orchestrator_pb2, report_pb2, results_pb2

STAGE_WORDS = {
    results_pb2.STAGE_QUEUED: "queued",
    results_pb2.STAGE_LOAD: "loading model and data",
    results_pb2.STAGE_PREDICT: "querying the model",
    results_pb2.STAGE_TRAIN_SHADOW: "training the shadow model",
    results_pb2.STAGE_FIT_ATTACK: "training the attack classifier",
    results_pb2.STAGE_SCORE: "scoring",
}


def outcome_words(result: results_pb2.AttackResult) -> str:
    if result.status == results_pb2.ATTACK_STATUS_SUCCEEDED:
        return f"done: auc {result.metrics.auc:.4f}, advantage {result.metrics.advantage:.4f}"
    return f"FAILED: {result.error.message}"


def risk_word(risk: int) -> str:
    return report_pb2.RiskLevel.Name(risk).removeprefix("RISK_LEVEL_")


class ProgressPrinter:
    """Plain lines: one each time an attack changes stage, retries or ends."""

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
                self._line(f"{self._label(progress.attack_index)} {STAGE_WORDS.get(progress.stage, 'working')}")
        elif kind == "attack_result":
            self._line(f"{self._label(event.attack_result.attack_index)} {outcome_words(event.attack_result)}")
        elif kind == "report_summary":
            for attack in event.report_summary.attacks:
                if attack.risk:
                    self._line(f"{self._label(attack.attack_index)} risk {risk_word(attack.risk)}")
        elif kind == "notice":
            self._line(f"audit {event.task_id}: {event.notice.message}")
        elif kind == "done" and event.done.error:
            self._line(f"audit {event.task_id}: {event.done.error}")

    def _label(self, index: int) -> str:
        name = self.names[index] if index < len(self.names) else "?"
        return f"[{index + 1}/{len(self.names)} {name}]"

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class LiveProgress:
    """A bar per attack (stage, progress within it, elapsed time), ending with its risk.
    Use as a context manager around the audit so the display is closed."""

    def __init__(self, out: TextIO):
        self.bars = Progress(TextColumn("{task.fields[label]}", style="bold"), BarColumn(),
                             TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                             console=Console(file=out), transient=False)
        self.rows: dict[int, TaskID] = {}
        self.console = self.bars.console

    def __enter__(self) -> LiveProgress:
        self.bars.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.bars.stop()

    def __call__(self, event: orchestrator_pb2.AuditEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "accepted":
            names = event.accepted.attack_names
            self.console.print(f"audit [bold]{event.task_id}[/]: {len(names)} attacks, seed {event.accepted.seed}")
            for index, name in enumerate(names):
                self.rows[index] = self.bars.add_task("", total=1.0, label=f"{index + 1}/{len(names)} {name}",
                                                      status="queued")
        elif kind == "progress" and event.progress.attack_index in self.rows:
            progress = event.progress
            status = STAGE_WORDS.get(progress.stage, "working")
            if progress.message:
                status += f" ({progress.message})"
            self.bars.update(self.rows[progress.attack_index], completed=progress.fraction, status=status)
        elif kind == "attack_result" and event.attack_result.attack_index in self.rows:
            result = event.attack_result
            self.bars.update(self.rows[result.attack_index], completed=1.0, status=outcome_words(result))
        elif kind == "report_summary":
            for attack in event.report_summary.attacks:
                if attack.attack_index in self.rows and attack.risk:
                    row = self.rows[attack.attack_index]
                    current = self.bars.tasks[row].fields["status"]
                    self.bars.update(row, status=f"{current}, risk {risk_word(attack.risk)}")
        elif kind == "notice":
            self.console.print(f"[yellow]audit {event.task_id}: {escape(event.notice.message)}[/]")
        elif kind == "done" and event.done.error:
            self.console.print(f"[red]audit {event.task_id}: {escape(event.done.error)}[/]")
