"""The orchestrator's state before and after status columns and queued writes, measured in one run.

`python tests/benchmarks/orchestrator_state.py [--before REV]` loads the task store,
event log and status code of commit REV (default: the last one before status
columns) next to today's, and measures them interleaved (old, new, old, new...)
on files in one temporary folder:

1. ListAudits (a page of 100) and GetAudit (with results) over 200 finished audits
   of 500 events each (two results with every record's score, a report in chunks):
   before, both replay the stored events; after, a row (and the results).
2. Concurrent appends: 32 audits, one thread each, 200 progress events each, appended
   as the audit runner does (under the audit's lock); a reader asks for a status
   every READ_PAUSE seconds meanwhile. Figures: how long the audit's lock is held per event, each append's
   latency, the reader's latency, and the time for all the appends.

Medians and 99th percentiles over every sample; ratios are before / after.
Every figure is from this run on this machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "protos" / "gen" / "python")]

from privaudit.services.orchestrator.event_log import EventLog  # noqa: E402
from privaudit.services.orchestrator.store import TaskStore  # noqa: E402
from privaudit.v1 import orchestrator_pb2, report_pb2, results_pb2, task_pb2  # noqa: E402

BEFORE = "a25ab26"  # the last commit before status columns and queued writes
AUDITS, EVENTS, RECORDS = 200, 500, 1000  # finished audits, events each, records per dataset
WRITERS, APPENDS = 32, 200
READ_PAUSE = 0.002  # seconds between the reader's status reads
ROUNDS = 5


def load_before(revision: str) -> types.SimpleNamespace:
    """The store, event log and `describe` of `revision`, as modules beside today's."""
    modules = {}
    for name in ("store", "event_log", "audit"):
        source = subprocess.run(["git", "show", f"{revision}:services/orchestrator/{name}.py"], cwd=REPO,
                                check=True, capture_output=True, text=True).stdout
        module = sys.modules[f"before_{name}"] = types.ModuleType(f"before_{name}")
        exec(compile(source, f"{revision}:{name}.py", "exec"), module.__dict__)
        modules[name] = module
    return types.SimpleNamespace(TaskStore=modules["store"].TaskStore, EventLog=modules["event_log"].EventLog,
                                 describe=modules["audit"].describe)


def finished_audit(task_id: str, rng: random.Random) -> list[orchestrator_pb2.AuditEvent]:
    """EVENTS events as an audit of two attacks leaves them."""
    scores = results_pb2.RecordScores(members=[rng.random() for _ in range(RECORDS)],
                                      non_members=[rng.random() for _ in range(RECORDS)],
                                      member_labels=[rng.randrange(10) for _ in range(RECORDS)],
                                      non_member_labels=[rng.randrange(10) for _ in range(RECORDS)])
    kinds = [{"accepted": orchestrator_pb2.AuditAccepted(attack_names=["LOSS", "LIRA"], seed=1)}]
    kinds += [{"progress": results_pb2.JobProgress(attack_index=i % 2, stage=results_pb2.STAGE_TRAIN_SHADOW,
                                                   fraction=i / EVENTS, message="epoch")} for i in range(EVENTS - 10)]
    kinds += [{"attack_result": results_pb2.AttackResult(
        attack_index=i, attack_name="LOSS", status=results_pb2.ATTACK_STATUS_SUCCEEDED,
        metrics=results_pb2.Metrics(auc=0.6), record_scores=scores)} for i in range(2)]
    kinds += [{"report_summary": report_pb2.ReportSummary(overall_risk=report_pb2.RISK_LEVEL_HIGH)}]
    kinds += [{"report_chunk": report_pb2.ReportChunk(data=b"r" * 4000)} for _ in range(6)]
    kinds += [{"done": orchestrator_pb2.AuditDone(succeeded_attacks=2)}]
    return [orchestrator_pb2.AuditEvent(sequence=i, task_id=task_id, **kind) for i, kind in enumerate(kinds)]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def summary(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile, in milliseconds."""
    ordered = sorted(samples)
    return 1e3 * statistics.median(ordered), 1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def queries(before: types.SimpleNamespace, folder: Path) -> dict[str, dict[str, list[float]]]:
    old, new = before.TaskStore(folder / "before.sqlite3"), TaskStore(folder / "after.sqlite3")
    rng = random.Random(15)
    task_ids = [f"task{number:04d}" for number in range(AUDITS)]
    for task_id in task_ids:
        events = finished_audit(task_id, rng)
        old.create_task(task_id, task_pb2.Task(), report_pb2.REPORT_FORMAT_TEXT)
        old.append(task_id, 0, events)
        new.create_task(task_id, task_pb2.Task(), report_pb2.REPORT_FORMAT_TEXT, events).wait()
    calls = {
        "ListAudits": (lambda: [before.describe(s, old.events(s.task_id), with_results=False)
                                for s in old.tasks(limit=100)],
                       lambda: new.statuses(100)),
        "GetAudit": (lambda: before.describe(old.task(task_id := rng.choice(task_ids)), old.events(task_id)),
                     lambda: new.status(rng.choice(task_ids))),
    }
    samples: dict[str, dict[str, list[float]]] = {name: {"before": [], "after": []} for name in calls}
    for _ in range(ROUNDS * 4):
        for name, (old_call, new_call) in calls.items():
            samples[name]["before"].append(timed(old_call))
            samples[name]["after"].append(timed(new_call))
    # The same answers (but for `created`, which each store set itself), or the comparison means nothing.
    listed = [calls["ListAudits"][0](), calls["ListAudits"][1]()]
    got = [before.describe(old.task(task_ids[0]), old.events(task_ids[0])), new.status(task_ids[0])]
    for status in (*listed[0], *listed[1], *got):
        status.ClearField("created")
    assert listed[0] == listed[1] and got[0] == got[1], "before and after answer differently"
    old.close()
    new.close()
    return samples


def appends(make_store: Callable[[], object], make_log: Callable[[object, str], object], queued: bool,
            ) -> dict[str, list[float]]:
    """WRITERS threads append APPENDS events each to their own audit, as the audit runner does;
    a reader reads statuses meanwhile."""
    store = make_store()
    logs = []
    for number in range(WRITERS):
        task_id = f"live{number:03d}"
        created = store.create_task(task_id, task_pb2.Task(), report_pb2.REPORT_FORMAT_TEXT)
        if queued:
            created.wait()
        logs.append(make_log(store, task_id))
    held, latency, reads = [], [], []
    done = threading.Event()
    event = {"progress": results_pb2.JobProgress(stage=results_pb2.STAGE_TRAIN_SHADOW, fraction=0.5)}

    def write(log) -> None:
        audit_lock = threading.Lock()
        for _ in range(APPENDS):
            started = time.perf_counter()
            with audit_lock:
                locked = time.perf_counter()
                pending = log.queue([event]) if queued else log.append(**event)
                released = time.perf_counter()
            if queued:
                pending.wait()
            latency.append(time.perf_counter() - started)
            held.append(released - locked)

    def read() -> None:
        rng = random.Random(1)
        status = (lambda task_id: store.status(task_id, with_results=False)) if queued else store.task
        while not done.wait(READ_PAUSE):
            task_id = f"live{rng.randrange(WRITERS):03d}"
            started = time.perf_counter()
            status(task_id)
            reads.append(time.perf_counter() - started)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(log,)) for log in logs]
    reader.start()
    started = time.perf_counter()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    total = time.perf_counter() - started
    done.set()
    reader.join()
    store.close()
    return {"lock held per append": held, "append latency": latency, "status read during appends": reads,
            "all appends (wall)": [total]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with (default %(default)s)")
    args = parser.parse_args()
    before = load_before(args.before)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        figures = queries(before, folder)
        contention: dict[str, dict[str, list[float]]] = {}
        for number in range(ROUNDS):
            runs = {"before": appends(lambda n=number: before.TaskStore(folder / f"b{n}.sqlite3"), before.EventLog,
                                      queued=False),
                    "after": appends(lambda n=number: TaskStore(folder / f"a{n}.sqlite3"), EventLog, queued=True)}
            for side, measured in runs.items():
                for name, samples in measured.items():
                    contention.setdefault(name, {"before": [], "after": []})[side] += samples
        figures.update(contention)
    print(f"{AUDITS} finished audits of {EVENTS} events; {WRITERS} audits appending {APPENDS} events each; "
          f"before = {args.before}")
    print(f"{'':28} {'before ms (p50/p99)':>22} {'after ms (p50/p99)':>22} {'ratio p50':>10} {'ratio p99':>10}")
    for name, sides in figures.items():
        (old50, old99), (new50, new99) = summary(sides["before"]), summary(sides["after"])
        print(f"{name:28} {old50:10.3f} /{old99:10.3f} {new50:10.3f} /{new99:10.3f} "
              f"{old50 / new50:10.1f} {old99 / new99:10.1f}")


if __name__ == "__main__":
    main()
