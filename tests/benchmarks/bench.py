"""`make bench`: what the audit service costs beyond the model work, measured in one run.

Prints a table and writes the same figures as JSON to $BENCH_OUT (default
bench-results.json):

1. overhead: the example task through a local cluster of real processes (one
   worker) vs the same jobs called in this process with no gRPC, with the same
   worker settings (the same kind of output cache);
2. scaling: four independent attacks, and a LIRA with 16 shadow models, on two
   single-threaded workers vs one single-threaded worker (pure scale-out), and vs
   one worker given both cores (what a one-worker cluster runs with);
3. memory: the peak resident set of the process running a LABEL-ONLY job, as the
   dataset grows and as the number of augmented queries grows (it must not grow
   with those);
4. time per stage of each attack, as the workers report them.

`bench.py --profile` instead prints where the time of one in-process run of the
example task goes (cProfile, by cumulative and by own time).

Every timed run is a new task (its own seed), so no run finds the shadow models
of the one before in a worker's cache; outputs of the target model are shared
within and across tasks, as in service. Every figure is a ratio or an absolute
measured in this run on this machine; compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "protos" / "gen" / "python")]

from client import AuditClient, LocalCluster  # noqa: E402
from privaudit.v1 import attack_worker_pb2, results_pb2  # noqa: E402
from services.attack_worker.settings import WorkerSettings  # noqa: E402
from services.common import task_spec  # noqa: E402

EXAMPLE = REPO / "example" / "tasks" / "mem_inf.yaml"
REPEATS = 3
MEMBERS = "./example/datasets/digits_target_members"
NON_MEMBERS = "./example/datasets/digits_target_non_members"
SHADOW = "[./example/datasets/digits_shadow_members, ./example/datasets/digits_shadow_non_members]"
FOUR_ATTACKS = EXAMPLE.read_text() + f"""
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: ML-LEAK
  args:
    target_datasets: [{MEMBERS}, {NON_MEMBERS}]
    target_model: ./example/models/digits_mlp
    shadow_model: ./example/models/digits_mlp
    shadow_datasets: {SHADOW}
    shadow_epoch: 200
    shadow_lr: 0.003
    classifier_epoch: 200
    batch_size: 64
"""
LIRA_16 = f"""
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: LIRA
  args:
    target_datasets: [{MEMBERS}, {NON_MEMBERS}]
    target_model: ./example/models/digits_mlp
    population_datasets: {SHADOW}
    num_shadow: 16
    epochs: 100
    lr: 0.003
    batch_size: 64
"""
# A new seed for every timed run: each is a task of its own.
SEEDS = itertools.count(1)
ONE_THREAD = ["--threads", "1"]


def timed_audit(cluster: LocalCluster, task: str) -> tuple[float, dict[str, dict[str, float]]]:
    """The audit's wall time, and each attack's seconds per stage as its JSON report gives them."""
    with AuditClient(cluster.address) as auditor:
        started = time.perf_counter()
        outcome = auditor.run(task, report_format="json", seed=next(SEEDS))
        elapsed = time.perf_counter() - started
    failed = [r.error.message for r in outcome.results if r.status != results_pb2.ATTACK_STATUS_SUCCEEDED]
    if failed:
        raise SystemExit(f"bench: an attack failed: {failed}")
    stages = {attack["name"]: {stage: round(seconds, 4) for stage, seconds in attack["timings"].items()}
              for attack in json.loads(outcome.report)["attacks"]}
    return elapsed, stages


def best_of(run, repeats: int = REPEATS) -> float:
    """The median of `repeats` timings after one warm-up run."""
    run()
    return statistics.median(run() for _ in range(repeats))


def in_process_seconds(task: str, settings: WorkerSettings) -> float:
    """The task's jobs called one after another in this process: no gRPC, no scheduler."""
    from services.attack_worker.job import run_job  # imports Paddle

    spec, seed = task_spec.parse_yaml(task), next(SEEDS)
    started = time.perf_counter()
    for index, attack in enumerate(spec.attacks):
        request = attack_worker_pb2.RunAttackRequest(task_id="bench", attack_index=index,
                                                     attack=task_spec.attack_to_proto(attack), seed=seed)
        result = run_job(request, settings, lambda progress: None)
        if result.status != results_pb2.ATTACK_STATUS_SUCCEEDED:
            raise SystemExit(f"bench: in-process {attack.name} failed: {result.error.message}")
    return time.perf_counter() - started


def cluster_seconds(task: str, workers: int, worker_flags: list[str] | None = None,
                    ) -> tuple[float, dict[str, dict[str, float]]]:
    """The median wall time of the task on a local cluster, and the stages of its last run."""
    with LocalCluster(workers=workers, storage_root=REPO, worker_flags=worker_flags or []) as cluster:
        stages: dict[str, dict[str, float]] = {}

        def run() -> float:
            elapsed, last = timed_audit(cluster, task)
            stages.update(last)
            return elapsed

        return best_of(run), stages


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _high_water_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return int(next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")), 0)) / 1024


def peak_rss_mb(task: str) -> float:
    """Peak resident set (VmHWM) of the processes that ran the task's jobs in a fresh worker: its job
    processes (forked per job) are sampled every 20 ms while the audit runs."""
    with LocalCluster(workers=1, storage_root=REPO) as cluster:
        worker = cluster.service("worker-0").process.pid
        peak, done = [0.0], threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max([peak[0], *(_high_water_mb(pid) for pid in _descendants(worker))])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timed_audit(cluster, task)
        done.set()
        sampler.join()
    return peak[0]


def label_only(r: int, members: str = MEMBERS, non_members: str = NON_MEMBERS) -> str:
    return f"""
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: LABEL-ONLY
  args:
    target_datasets: [{members}, {non_members}]
    target_model: ./example/models/digits_mlp
    shadow_model: ./example/models/digits_mlp
    shadow_datasets: {SHADOW}
    shadow_epoch: 20
    batch_size: 64
    attack_type: r
    r: {r}
"""


def repeated_dataset(root: Path, name: str, source: str, times: int) -> str:
    """A dataset folder that serves `source`'s records `times` over, to grow a dataset."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text(f'''"""{source} repeated {times} times (benchmark data)."""
import importlib.util
from pathlib import Path

_folder = Path("{(REPO / source).resolve()}")
_spec = importlib.util.spec_from_file_location("bench_source", next(_folder.glob("*.py")))
_source = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_source)


class Repeated:
    def __init__(self):
        self.data = _source.get_dataset()

    def __len__(self):
        return len(self.data) * {times}

    def __getitem__(self, index):
        return self.data[index % len(self.data)]


def get_dataset():
    return Repeated()
''')
    return f"./{folder.relative_to(REPO)}"


class Rows(list):
    """The table's rows, each also printed as soon as it is measured."""

    def __iadd__(self, rows):
        for label, value in rows:
            print(f"  {label:<52}  {value}", flush=True)
        return super().__iadd__(rows)

    def append(self, row):
        self += [row]


def main() -> None:
    figures: dict[str, object] = {"cores": os.cpu_count(), "repeats": REPEATS}
    print(f"privaudit benchmark ({os.cpu_count()} cores, median of {REPEATS} after a warm-up)", flush=True)
    rows = Rows()

    example = EXAMPLE.read_text()
    with tempfile.TemporaryDirectory(prefix="privaudit-bench-cache-") as cache:  # as a worker's own
        settings = WorkerSettings(str(REPO), cache_dir=cache)
        local = best_of(lambda: in_process_seconds(example, settings))  # the warm-up: Paddle's first calls
    remote, stages = cluster_seconds(example, workers=1, worker_flags=ONE_THREAD)
    figures.update(in_process_s=local, cluster_1_worker_s=remote, overhead_ratio=remote / local)
    rows += [("example task in-process (s)", f"{local:.2f}"),
             ("example task via cluster, 1 worker x 1 thread (s)", f"{remote:.2f}"),
             ("overhead ratio (target <= 1.10)", f"{remote / local:.3f}")]
    figures["stage_seconds"] = stages

    for label, task, key in (("4 attacks", FOUR_ATTACKS, "attacks"), ("LIRA K=16", LIRA_16, "lira")):
        one, _ = cluster_seconds(task, workers=1, worker_flags=ONE_THREAD)
        one_wide, _ = cluster_seconds(task, workers=1)
        two, stages = cluster_seconds(task, workers=2)
        if key == "lira":  # its shadow jobs' stages are summed over the jobs: machine time, not elapsed
            figures["stage_seconds"].update(stages)
        figures.update({f"seconds_1_worker_{key}": one, f"seconds_1_worker_2_threads_{key}": one_wide,
                        f"seconds_2_workers_{key}": two, f"speedup_2_workers_{key}": one / two,
                        f"speedup_2_workers_{key}_vs_1_worker_2_threads": one_wide / two})
        rows += [(f"{label}: 1 worker x 1 thread / x 2 threads (s)", f"{one:.2f} / {one_wide:.2f}"),
                 (f"{label}: 2 workers x 1 thread (s)", f"{two:.2f}"),
                 (f"{label}: speed-up over 1 x 1 (target >= 1.8)", f"{one / two:.2f}"),
                 (f"{label}: speed-up over 1 x 2", f"{one_wide / two:.2f}")]

    with tempfile.TemporaryDirectory(dir=REPO / "example", prefix=".bench-") as scratch:
        root = Path(scratch)
        memory = {"r=1 (3 queries)": peak_rss_mb(label_only(1)), "r=15 (31 queries)": peak_rss_mb(label_only(15))}
        bigger = (repeated_dataset(root, "members_x4", MEMBERS, 4),
                  repeated_dataset(root, "non_members_x4", NON_MEMBERS, 4))
        memory["r=1, dataset x4"] = peak_rss_mb(label_only(1, *bigger))
    figures["worker_peak_rss_mb"] = memory["r=1 (3 queries)"]
    figures["worker_peak_rss_mb_by_case"] = memory
    rows += [(f"worker peak RSS, LABEL-ONLY {case} (MB)", f"{mb:.0f}") for case, mb in memory.items()]

    for attack, stages in figures["stage_seconds"].items():
        rows.append((f"stages of {attack} (s)", ", ".join(f"{s} {t:.2f}" for s, t in stages.items())))

    out = Path(os.environ.get("BENCH_OUT", "bench-results.json"))
    out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"\nwritten to {out}")


def profile(lines: int = 25) -> None:
    """Prints cProfile's view of one in-process run of the example task, after a warm-up."""
    example = EXAMPLE.read_text()
    with tempfile.TemporaryDirectory(prefix="privaudit-bench-cache-") as cache:
        settings = WorkerSettings(str(REPO), cache_dir=cache)
        in_process_seconds(example, settings)
        profiler = cProfile.Profile()
        profiler.runcall(in_process_seconds, example, settings)
    stats = pstats.Stats(profiler)
    for order in ("cumulative", "tottime"):
        stats.sort_stats(order).print_stats(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="profile one in-process run of the example instead")
    if parser.parse_args().profile:
        profile()
    else:
        main()
