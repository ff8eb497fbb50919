"""Progress people can trust: shares that only move forward, elapsed time that runs until the
attack's result, shadow models counted k/N, an overall bar with the time left, fixed widths."""

from __future__ import annotations

import io
import re

import pytest

from privaudit.client.progress import LABEL_WIDTH, LiveProgress, ProgressPrinter
from privaudit.client.progress_state import SHADOW_SHARE, AuditState
from privaudit.v1 import orchestrator_pb2, results_pb2

TRAIN, SCORE, LOAD = results_pb2.STAGE_TRAIN_SHADOW, results_pb2.STAGE_SCORE, results_pb2.STAGE_LOAD


def accepted(*names: str) -> orchestrator_pb2.AuditEvent:
    return orchestrator_pb2.AuditEvent(task_id="t", accepted=orchestrator_pb2.AuditAccepted(attack_names=names))


def progress(index: int, stage: int, fraction: float, message: str = "") -> orchestrator_pb2.AuditEvent:
    return orchestrator_pb2.AuditEvent(task_id="t", progress=results_pb2.JobProgress(
        attack_index=index, stage=stage, fraction=fraction, message=message))


def result(index: int) -> orchestrator_pb2.AuditEvent:
    return orchestrator_pb2.AuditEvent(task_id="t", attack_result=results_pb2.AttackResult(
        attack_index=index, status=results_pb2.ATTACK_STATUS_SUCCEEDED))


def shadow_events(k: int, n: int, index: int = 0) -> list[orchestrator_pb2.AuditEvent]:
    """What a worker sends for shadow model k of n (paddle_runtime: a stage opens at 0 and closes
    at 1 with the label alone; training notes in between)."""
    label = f"shadow {k}/{n}"
    return [progress(index, TRAIN, 0.0, label), progress(index, TRAIN, 0.5, f"{label}: epoch 5/10"),
            progress(index, TRAIN, 1.0, f"{label}: epoch 10/10"), progress(index, TRAIN, 1.0, label)]


def test_shadow_models_are_counted_when_their_stage_closes_or_the_cache_has_them():
    state = AuditState()
    state.event(accepted("LIRA"), now=0.0)
    for event in shadow_events(1, 4)[:3] + shadow_events(2, 4)[:1]:
        state.event(event, now=1.0)
    attack = state.attacks[0]
    # A training note at 100% (epoch 10/10) is not the end: the model still answers on the population.
    assert attack.shadows_trained == set() and attack.words() == "shadows 0/4 trained, 2 training"
    state.event(shadow_events(1, 4)[3], now=2.0)
    state.event(progress(0, TRAIN, 1.0, "shadow 3/4: found in the shadow cache, not trained again"), now=2.0)
    assert attack.shadows_trained == {1, 3} and attack.words() == "shadows 2/4 trained, 1 training"
    assert attack.fraction == pytest.approx(SHADOW_SHARE * 2 / 4)


def test_an_attacks_share_never_goes_back_when_a_stage_restarts_at_zero():
    state = AuditState()
    state.event(accepted("BASELINE"), now=0.0)
    shares = []
    for stage, fraction in [(LOAD, 0.0), (LOAD, 1.0), (results_pb2.STAGE_PREDICT, 0.0),
                            (results_pb2.STAGE_PREDICT, 0.6), (SCORE, 0.0), (LOAD, 0.0), (SCORE, 1.0)]:
        state.event(progress(0, stage, fraction), now=1.0)
        shares.append(state.attacks[0].fraction)
    assert shares == sorted(shares) and shares[0] == 0.0 < shares[1] and shares[-1] == 1.0


def test_elapsed_time_runs_after_a_stage_reaches_100_percent_and_stops_at_the_result():
    state = AuditState()
    state.event(accepted("BASELINE"), now=100.0)
    state.event(progress(0, results_pb2.STAGE_QUEUED, 0.0), now=101.0)
    state.event(progress(0, LOAD, 0.0), now=105.0)
    state.event(progress(0, SCORE, 1.0), now=110.0)
    assert state.attacks[0].elapsed(now=130.0) == 25.0  # from leaving the queue, still running
    state.event(result(0), "done", now=140.0)
    assert state.attacks[0].elapsed(now=500.0) == 35.0


def test_overall_share_and_time_left():
    state = AuditState()
    state.event(accepted("A", "B"), now=0.0)
    assert state.seconds_left(now=1.0) is None  # nothing done: no estimate
    state.event(result(0), "done", now=10.0)
    assert state.fraction() == 0.5
    assert state.seconds_left(now=20.0) == pytest.approx(20.0)  # half done in 20 s: 20 s more at that pace


def render(display: LiveProgress) -> list[str]:
    with display.console.capture() as captured:
        display.console.print(display.bars)
    return [line for line in captured.get().splitlines() if line.strip()]


def test_live_bars_keep_their_width_whatever_the_text_and_show_overall_and_shadow_counts():
    display = LiveProgress(io.StringIO())
    display(accepted("BASELINE", "LIRA-WITH-A-VERY-LONG-NAME-INDEED"))
    display(progress(0, LOAD, 0.3, "a short note"))
    for event in shadow_events(1, 16, index=1) + shadow_events(2, 16, index=1)[:1]:
        display(event)
    lines = render(display)
    assert lines[0].startswith("all attacks") and "0/2 finished, estimating time left" in lines[0]
    assert "shadows 1/16 trained" in lines[2]
    # The label and the bar have fixed widths, so every row's percentage starts in the same column,
    # also after a note of another length.
    percent = re.compile(r" *\d{1,3}%")
    first = [percent.search(line).end() for line in lines]
    assert len(set(first)) == 1 and first[0] > LABEL_WIDTH, lines
    display(progress(0, LOAD, 0.3, "a much, much longer note than before " * 4))
    assert [percent.search(line).end() for line in render(display)] == first
    # Every row fits the terminal (80 columns here) with its bar and its time run at the end.
    assert all(len(line) <= 80 and re.search(r" (\d+:\d\d|-:--)$", line) for line in render(display)), render(display)
    assert len({len(line.rstrip()) for line in render(display)[1:]}) <= 2  # elapsed column: same width


def test_the_cluster_spinner_says_what_is_starting():
    display = LiveProgress(io.StringIO())
    display.step("starting the reporter and 1 worker(s); each worker imports Paddle")
    display.console.width = 160
    with display.console.capture() as captured:
        display.console.print(display.starting)
    assert "local cluster: starting the reporter and 1 worker(s)" in captured.get()


def test_plain_lines_report_each_shadow_model_once_not_each_batch():
    out = io.StringIO()
    printer = ProgressPrinter(out)
    printer(accepted("LIRA"))
    printer.step("starting the orchestrator")
    for k in (1, 2):
        for event in shadow_events(k, 2):
            printer(event)
    lines = out.getvalue().splitlines()
    assert lines[1] == "local cluster: starting the orchestrator"
    assert [line for line in lines if "shadows" in line] == [
        "[1/1 LIRA] shadows 0/2 trained", "[1/1 LIRA] shadows 1/2 trained",
        "[1/1 LIRA] shadows 2/2 trained"]
    assert lines[-1] == "[1/1 LIRA] shadows 2/2 trained"
