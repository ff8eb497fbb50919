"""Showing an audit's progress: live bars on a terminal, plain lines otherwise.

Both displays are called with each event of the audit's stream, and told by `step` what the
local cluster is doing while it starts.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.table import Column
from rich.text import Text

from privaudit.client.progress_state import AuditState
from privaudit.client.status_view import risk_word
from privaudit.v1 import orchestrator_pb2, results_pb2

LABEL_WIDTH = 18
TIME_WIDTH = 7  # h:mm:ss
MIN_STATUS_WIDTH = 24


def column_widths(terminal: int) -> tuple[int, int]:
    """The bar's and the status text's widths for a terminal `terminal` columns wide: fixed for
    the display's life, so that nothing moves as the text changes, and the whole row fits."""
    bar = 30 if terminal >= 120 else 12
    fixed = LABEL_WIDTH + bar + len("100%") + TIME_WIDTH + 4  # a space between the five columns
    return bar, max(MIN_STATUS_WIDTH, terminal - fixed - 1)


class Display(Protocol):
    def __call__(self, event: orchestrator_pb2.AuditEvent) -> None: ...

    def step(self, what: str, finished: bool = False) -> None:
        """What the local cluster is doing (`finished`: it is ready, or gave up)."""


def outcome_words(result: results_pb2.AttackResult, short: bool = False) -> str:
    """How the attack ended; `short`: without the advantage, so that a bar's risk, which
    follows, fits a narrow terminal."""
    if result.status != results_pb2.ATTACK_STATUS_SUCCEEDED:
        return f"FAILED: {result.error.message}"
    words = f"done: auc {result.metrics.auc:.4f}"
    return words if short else f"{words}, advantage {result.metrics.advantage:.4f}"


def clock(seconds: float) -> str:
    """`0:42`, `12:05`, `1:02:03`."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressPrinter:
    """Plain lines: one each time an attack changes stage, trains a shadow model, retries or ends."""

    def __init__(self, out: TextIO):
        self.out = out
        self.state = AuditState()
        self.shown: dict[int, str] = {}

    def __call__(self, event: orchestrator_pb2.AuditEvent) -> None:
        kind = event.WhichOneof("kind")
        words = outcome_words(event.attack_result) if kind == "attack_result" else ""
        attack = self.state.event(event, words)
        if kind == "accepted":
            self._line(f"audit {event.task_id}: {len(self.state.attacks)} attacks, seed {event.accepted.seed}")
        elif kind == "progress" and attack is not None:
            index = event.progress.attack_index
            if event.progress.message.startswith("retrying"):
                self._line(f"{self._label(index)} {event.progress.message}")
            summary = attack.words(note=False)
            if self.shown.get(index) != summary:
                self.shown[index] = summary
                self._line(f"{self._label(index)} {summary}")
        elif kind == "attack_result" and attack is not None:
            index = event.attack_result.attack_index
            self._line(f"{self._label(index)} {words} ({clock(attack.elapsed(time.monotonic()))})")
        elif kind == "report_summary":
            for assessed in event.report_summary.attacks:
                if assessed.risk:
                    self._line(f"{self._label(assessed.attack_index)} risk {risk_word(assessed.risk)}")
        elif kind == "notice":
            self._line(f"audit {event.task_id}: {event.notice.message}")
        elif kind == "done" and event.done.error:
            self._line(f"audit {event.task_id}: {event.done.error}")

    def step(self, what: str, finished: bool = False) -> None:
        self._line(f"local cluster: {what}")

    def _label(self, index: int) -> str:
        name = self.state.attacks[index].name if index < len(self.state.attacks) else "?"
        return f"[{index + 1}/{len(self.state.attacks)} {name}]"

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class _Elapsed(ProgressColumn):
    """The time a row has run, from its own start and end (rich's elapsed time stops once a
    bar reaches 100%, which an attack's stage does long before the attack ends)."""

    def render(self, task: Task) -> Text:
        started, ended = task.fields.get("started"), task.fields.get("ended")
        if started is None:
            return Text("-:--", style="progress.elapsed")
        return Text(clock((ended if ended is not None else time.monotonic()) - started), style="progress.elapsed")


class LiveProgress:
    """On a terminal: a spinner line while the local cluster starts, a bar for the whole audit
    (share done, time run, time left), and a bar per attack (share done, stage, shadow models
    trained, time run, then its outcome and risk). Bars and columns have fixed widths. Use as
    a context manager around the audit so that the display is closed."""

    def __init__(self, out: TextIO):
        self.console = Console(file=out)
        self.starting = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description}", table_column=Column(
                width=max(MIN_STATUS_WIDTH, self.console.width - TIME_WIDTH - 5), no_wrap=True, overflow="ellipsis")),
            _Elapsed(table_column=Column(width=TIME_WIDTH, no_wrap=True, justify="right")),
            console=self.console, expand=False)
        bar, status = column_widths(self.console.width)
        self.bars = Progress(
            TextColumn("{task.fields[label]}", style="bold",
                       table_column=Column(width=LABEL_WIDTH, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=bar, table_column=Column(width=bar, no_wrap=True)),
            TextColumn("{task.percentage:>3.0f}%", table_column=Column(width=4, no_wrap=True)),
            TextColumn("{task.fields[status]}", table_column=Column(width=status, no_wrap=True, overflow="ellipsis")),
            _Elapsed(table_column=Column(width=TIME_WIDTH, no_wrap=True, justify="right")),
            console=self.console, expand=False)
        self.live = Live(Group(self.starting, self.bars), console=self.console, refresh_per_second=4,
                         redirect_stdout=False, redirect_stderr=False)
        self.state = AuditState()
        self.rows: dict[int, TaskID] = {}
        self.overall: TaskID | None = None
        self.cluster: TaskID | None = None
        self._lock = threading.Lock()  # step() comes from the cluster's starting thread

    def __enter__(self) -> LiveProgress:
        self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._refresh_overall()
        self.live.stop()

    def step(self, what: str, finished: bool = False) -> None:
        with self._lock:
            if self.cluster is None:
                self.cluster = self.starting.add_task(f"local cluster: {what}", total=1, started=time.monotonic(),
                                                      ended=None)
            fields = {"ended": time.monotonic()} if finished else {}
            self.starting.update(self.cluster, description=f"local cluster: {escape(what)}",
                                 completed=1 if finished else 0, **fields)

    def __call__(self, event: orchestrator_pb2.AuditEvent) -> None:
        kind = event.WhichOneof("kind")
        words = outcome_words(event.attack_result, short=True) if kind == "attack_result" else ""
        with self._lock:
            attack = self.state.event(event, words)
            if kind == "accepted":
                self._accepted(event)
            elif attack is not None:
                index = event.progress.attack_index if kind == "progress" else event.attack_result.attack_index
                self.bars.update(self.rows[index], completed=attack.fraction, status=escape(attack.words()),
                                 started=attack.started, ended=attack.ended)
            elif kind == "report_summary":
                for assessed in event.report_summary.attacks:
                    if assessed.attack_index in self.rows and assessed.risk:
                        row = self.rows[assessed.attack_index]
                        current = self.bars.tasks[row].fields["status"]
                        self.bars.update(row, status=f"{current}, risk {risk_word(assessed.risk)}")
            elif kind == "notice":
                self.console.print(f"[yellow]audit {event.task_id}: {escape(event.notice.message)}[/]")
            elif kind == "done" and event.done.error:
                self.console.print(f"[red]audit {event.task_id}: {escape(event.done.error)}[/]")
            self._refresh_overall()

    def _accepted(self, event: orchestrator_pb2.AuditEvent) -> None:
        names = event.accepted.attack_names
        self.console.print(f"audit [bold]{event.task_id}[/]: {len(names)} attacks, seed {event.accepted.seed}")
        self.overall = self.bars.add_task("", total=1.0, label="all attacks", status="", started=self.state.started,
                                          ended=None)
        for index, name in enumerate(names):
            self.rows[index] = self.bars.add_task("", total=1.0, label=f"{index + 1}/{len(names)} {name}",
                                                  status="queued", started=None, ended=None)

    def _refresh_overall(self) -> None:
        if self.overall is None:
            return
        now = time.monotonic()
        finished = sum(1 for attack in self.state.attacks if attack.ended is not None)
        left = self.state.seconds_left(now)
        status = f"{finished}/{len(self.state.attacks)} finished"
        if finished < len(self.state.attacks):
            status += f", about {clock(left)} left" if left is not None else ", estimating time left"
        ended = now if finished == len(self.state.attacks) else None
        self.bars.update(self.overall, completed=self.state.fraction(), status=status, ended=ended)
