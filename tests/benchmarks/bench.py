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
4. time per stage of each attack, as the workers report them;
5. cold start (issue 17), against one Python process that imports Paddle and runs the
   example's attacks in turn (the shape of the seed's own tool; `--single-process`): a cold
   `python3 main.py` (local cluster) and that process, interleaved A B A B, wall time and the
   peak of the summed PSS (/proc/PID/smaps_rollup) of every process of each; an unchanged
   rerun and a new seed on a kept cluster (`privaudit cluster up`); the time from the last
   attack's result to the printed report; and the start-up timeline of one cold run.

`bench.py --profile` instead prints where the time of one in-process run of the
example task goes (cProfile, by cumulative and by own time); `bench.py --cold` runs
section 5 alone (and merges its keys into $BENCH_OUT).

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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "protos" / "gen" / "python")]

from proc_memory import descendants, high_water_mb, pss_mb  # noqa: E402

from privaudit.client import AuditClient, LocalCluster, cli  # noqa: E402
from privaudit.services.attack_worker.settings import WorkerSettings  # noqa: E402
from privaudit.services.common import task_spec  # noqa: E402
from privaudit.v1 import attack_worker_pb2, results_pb2  # noqa: E402

EXAMPLE = REPO / "example" / "tasks" / "mem_inf.yaml"
REPEATS = 3
COLD_PAIRS = 3  # cold runs of each kind, interleaved
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
              for attack in json.loads(outcome.rendered)["attacks"]}
    return elapsed, stages


def best_of(run, repeats: int = REPEATS) -> float:
    """The median of `repeats` timings after one warm-up run."""
    run()
    return statistics.median(run() for _ in range(repeats))


def in_process_seconds(task: str, settings: WorkerSettings) -> float:
    """The task's jobs called one after another in this process: no gRPC, no scheduler."""
    from privaudit.services.attack_worker.job import run_job  # imports Paddle

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


def peak_rss_mb(task: str) -> float:
    """Peak resident set (VmHWM) of the processes that ran the task's jobs in a fresh worker: its job
    processes (forked per job) are sampled every 20 ms while the audit runs."""
    with LocalCluster(workers=1, storage_root=REPO) as cluster:
        worker = cluster.service("worker-0").process.pid
        peak, done = [0.0], threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max([peak[0], *(high_water_mb(pid) for pid in descendants(worker))])

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


# ---------------------------------------------------------------- cold start (issue 17)


def single_process(task_path: Path) -> None:
    """`--single-process TASK`: one Python process importing Paddle and running the task's attacks
    in turn, caches in a fresh folder: what the seed's tool does (the report aside)."""
    with tempfile.TemporaryDirectory(prefix="privaudit-bench-single-") as cache:
        in_process_seconds(task_path.read_text(), WorkerSettings(str(REPO), cache_dir=cache))


def _tree(root: int) -> list[int]:
    return [root, *descendants(root)]


class Watched:
    """A command run to its end: wall time, the peak of its process tree's summed PSS (sampled
    every 0.1 s), and when (seconds from its start) each line of its stderr and its first
    output arrived."""

    def __init__(self, command: list[str]):
        self.lines: list[tuple[float, str]] = []
        self.first_output = 0.0
        self.peak_pss_mb = 0.0
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        done = threading.Event()

        def read_err() -> None:
            for line in iter(process.stderr.readline, b""):
                self.lines.append((time.perf_counter() - started, line.decode(errors="replace").rstrip()))

        def read_out() -> None:
            chunk = process.stdout.read(1)
            if chunk:
                self.first_output = time.perf_counter() - started
            process.stdout.read()

        def sample() -> None:
            while not done.wait(0.1):
                self.peak_pss_mb = max(self.peak_pss_mb, sum(pss_mb(pid) for pid in _tree(process.pid)))

        threads = [threading.Thread(target=work, daemon=True) for work in (read_err, read_out, sample)]
        for thread in threads:
            thread.start()
        process.wait()
        self.seconds = time.perf_counter() - started
        done.set()
        for thread in threads:
            thread.join()
        if process.returncode != 0:
            raise SystemExit(f"bench: {' '.join(command)} exited {process.returncode}:\n"
                             + "\n".join(line for _, line in self.lines[-20:]))

    def result_to_report_s(self) -> float:
        """From the last attack's result (its progress line) to the report's first byte on stdout."""
        results = [at for at, line in self.lines if "] done:" in line or "] FAILED:" in line]
        return self.first_output - results[-1]


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def cold_start(figures: dict[str, object], rows: Rows) -> None:
    main_py = [sys.executable, str(REPO / "main.py"), str(EXAMPLE)]
    single = [sys.executable, str(Path(__file__).resolve()), "--single-process", str(EXAMPLE)]
    cluster_runs: list[Watched] = []
    single_runs: list[Watched] = []
    for _ in range(COLD_PAIRS):  # A B A B: the machine's load falls on both alike
        cluster_runs.append(Watched(main_py))
        single_runs.append(Watched(single))
    wall = [r.seconds for r in cluster_runs], [r.seconds for r in single_runs]
    pss = [r.peak_pss_mb for r in cluster_runs], [r.peak_pss_mb for r in single_runs]
    to_report = [r.result_to_report_s() for r in cluster_runs]
    cold_ratio = statistics.median(wall[0]) / statistics.median(wall[1])
    pss_ratio = statistics.median(pss[0]) / statistics.median(pss[1])
    figures.update(cold_main_py_s=statistics.median(wall[0]), cold_single_process_s=statistics.median(wall[1]),
                   cold_main_py_runs_s=wall[0], cold_single_process_runs_s=wall[1], cold_ratio=cold_ratio,
                   pss_main_py_mb=statistics.median(pss[0]), pss_single_process_mb=statistics.median(pss[1]),
                   pss_ratio=pss_ratio, result_to_report_s=statistics.median(to_report),
                   load_average=os.getloadavg()[0])
    rows += [("cold main.py, local cluster (s, median (min-max))", _spread(wall[0])),
             ("cold single process, same attacks (s)", _spread(wall[1])),
             ("cold_ratio (target <= 1.15)", f"{cold_ratio:.3f}"),
             ("peak summed PSS, main.py's processes (MB)", _spread(pss[0])),
             ("peak PSS, single process (MB)", _spread(pss[1])),
             ("pss_ratio (target <= 1.5)", f"{pss_ratio:.3f}"),
             ("last attack result -> printed report (s, target <= 0.3)", _spread(to_report))]

    with tempfile.TemporaryDirectory(prefix="privaudit-bench-kept-") as state:
        cli = [sys.executable, "-c", "import sys; from privaudit.client.cli import main; sys.exit(main())"]
        up = subprocess.run([*cli, "cluster", "up", "--state-dir", state, "--storage-root", str(REPO)], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _pythonpath()})
        if up.returncode != 0:
            raise SystemExit(f"bench: cluster up failed: {up.stderr}")
        address = LocalCluster.read_record(Path(state))["orchestrator"]["address"]
        try:
            kept = [*main_py, "--orchestrator", address]
            Watched(kept)  # fills the kept cluster's caches
            unchanged = [Watched(kept).seconds for _ in range(COLD_PAIRS)]
            new_seed = [Watched([*kept, "--seed", str(next(SEEDS) + 1000)]).seconds for _ in range(COLD_PAIRS)]
        finally:
            LocalCluster.stop_recorded(Path(state))
    single_wall = statistics.median(wall[1])
    figures.update(warm_rerun_s=statistics.median(unchanged),
                   warm_rerun_ratio=statistics.median(unchanged) / single_wall,
                   warm_new_seed_s=statistics.median(new_seed),
                   warm_new_seed_ratio=statistics.median(new_seed) / single_wall)
    rows += [("kept cluster, unchanged rerun (s)", _spread(unchanged)),
             ("warm_rerun_ratio (target <= 0.25)", f"{figures['warm_rerun_ratio']:.3f}"),
             ("kept cluster, new seed (s)", _spread(new_seed)),
             ("warm_new_seed_ratio", f"{figures['warm_new_seed_ratio']:.3f}")]
    figures["startup_timeline"] = startup_timeline()


def _pythonpath() -> str:
    return os.pathsep.join([str(REPO), str(REPO / "protos" / "gen" / "python"), os.environ.get("PYTHONPATH", "")])


def startup_timeline() -> list[str]:
    """One cold audit of the example as `privaudit run` makes it (a local cluster whose workers
    join as they serve), each step's time from the start, printed and returned."""
    marks: list[tuple[float, str]] = []
    started = time.perf_counter()

    def mark(what: str, at: float | None = None) -> None:
        marks.append(((time.perf_counter() if at is None else at) - started, what))

    def on_event(event) -> None:
        kind = event.WhichOneof("kind")
        if kind == "accepted":
            mark("audit accepted (queued)")
        elif kind == "progress" and event.progress.stage == results_pb2.STAGE_LOAD and not any(
                "first job" in what for _, what in marks):
            mark(f"first job running ({event.progress.message or 'loading'})")
        elif kind == "attack_result":
            result = event.attack_result
            mark(f"{result.attack_name} result ({results_pb2.AttackStatus.Name(result.status)[14:].lower()})")
        elif kind == "report_summary":
            mark("report summary")

    shape = cli.pool_shape(cli.build_parser().parse_args(["run", str(EXAMPLE)]))  # privaudit run's defaults
    cluster = LocalCluster(storage_root=REPO, wait_for_workers=False, host_reporter=True, **shape)
    offset = time.monotonic() - time.perf_counter()  # the cluster's times are monotonic
    cluster.start()
    mark("orchestrator serving: audit submitted")
    peaks: dict[str, float] = {}
    done = threading.Event()

    def sample() -> None:  # each service's process tree (a worker's: its launcher and jobs too)
        while not done.wait(0.1):
            for service in list(cluster.processes):
                if service.process is not None:
                    pss = sum(pss_mb(pid) for pid in _tree(service.process.pid))
                    peaks[service.name] = max(peaks.get(service.name, 0.0), pss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with AuditClient(cluster.address) as auditor:
            auditor.run(EXAMPLE.read_text(), on_event=on_event)
        mark("report received")
        done.set()
        sampler.join()
        for service in cluster.processes:
            mark(f"{service.name} spawned", service.spawned_at - offset)
            mark(f"{service.name} bound", service.bound_at - offset)
            if service.serving_at:
                mark(f"{service.name} serving", service.serving_at - offset)
    finally:
        cluster.stop()
        mark("cluster stopped")
    lines = [f"{at:6.2f} s  {what}" for at, what in sorted(marks)]
    lines += [f"peak PSS of {name}'s processes: {mb:.0f} MB" for name, mb in sorted(peaks.items())]
    print(f"\n  start-up timeline of one cold audit (privaudit run's path: {shape['workers']} worker(s) x "
          f"{shape['slots']} slots):")
    for line in lines:
        print(f"    {line}")
    return lines


class Rows(list):
    """The table's rows, each also printed as soon as it is measured."""

    def __iadd__(self, rows):
        for label, value in rows:
            print(f"  {label:<52}  {value}", flush=True)
        return super().__iadd__(rows)

    def append(self, row):
        self += [row]


def main(cold_only: bool = False) -> None:
    out = Path(os.environ.get("BENCH_OUT", "bench-results.json"))
    figures: dict[str, object] = {"cores": os.cpu_count(), "repeats": REPEATS}
    print(f"privaudit benchmark ({os.cpu_count()} cores, median of {REPEATS} after a warm-up; load average "
          f"{os.getloadavg()[0]:.1f}: a loaded machine slows the cluster's several processes more than one)",
          flush=True)
    rows = Rows()
    cold_start(figures, rows)  # first: nothing of this process is warm that a cold run would not have
    if cold_only:
        kept = json.loads(out.read_text()) if out.exists() else {}
        out.write_text(json.dumps({**kept, **figures}, indent=2, sort_keys=True) + "\n")
        print(f"\nmerged into {out}")
        return

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
    parser.add_argument("--cold", action="store_true", help="measure the cold start alone (merged into $BENCH_OUT)")
    parser.add_argument("--single-process", type=Path, metavar="TASK",
                        help="run TASK's attacks in this one process, as the seed's tool does (what --cold "
                             "compares with)")
    options = parser.parse_args()
    if options.profile:
        profile()
    elif options.single_process:
        single_process(options.single_process)
    else:
        main(cold_only=options.cold)
