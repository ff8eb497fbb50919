"""`make bench-scale`: LiRA with 64 shadow models over 30,000 records through a local cluster.

What the pool costs at the size it exists for, measured in one run on this machine:

- wall time of the audit, and time per shadow model as the workers report it;
- peak resident set (VmHWM) of every process of the cluster: orchestrator, reporter, each
  worker's server and job launcher, and every job process (the score job's separately);
- bytes through gRPC: each shadow part's answer and each result as the orchestrator stored them
  (the messages it received), the score part's request, and the largest of all; the services run
  with `--max-message-bytes` 1 MiB, so a larger request would fail the audit;
- growth of the orchestrator's database per shadow model;
- a projection to Carlini et al.'s CIFAR-10 setting (K = 64 shadow models) on N GPU workers,
  from the time per shadow model measured here scaled by an assumed GPU time per CIFAR shadow
  model (`--cifar-shadow-minutes`, a stated assumption, not a measurement).

The data are synthetic (10 classes, 32 features, some label noise so that a small MLP
memorises): 10,000 target members, 10,000 non-members and 10,000 population records, written as
`.npy` files with a `get_dataset()` loader into a temporary storage root. The target trains in
this process before the cluster starts.

    .venv/bin/python tests/benchmarks/bench_scale.py [--shadows 64] [--records 30000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "protos" / "gen" / "python")]

import numpy as np  # noqa: E402
from proc_memory import high_water_mb, parents  # noqa: E402

from privaudit.client import AuditClient, LocalCluster  # noqa: E402
from privaudit.services.orchestrator.app import STATE_FILE  # noqa: E402
from privaudit.v1 import results_pb2  # noqa: E402

MIB = 2**20
MESSAGE_LIMIT = MIB  # every service's --max-message-bytes in this run
FEATURES, CLASSES, HIDDEN = 32, 10, 64
EPOCHS, LEARNING_RATE, BATCH_SIZE = 10, 0.003, 128
SEED = 20190224

MODEL_CODE = f'''"""A small MLP for the scale benchmark's synthetic records."""
import paddle


def get_model():
    return paddle.nn.Sequential(paddle.nn.Linear({FEATURES}, {HIDDEN}), paddle.nn.ReLU(),
                                paddle.nn.Linear({HIDDEN}, {CLASSES}))
'''

DATASET_CODE = '''"""Records of the scale benchmark, from the .npy files next to this file."""
from pathlib import Path

import numpy as np
import paddle

_HERE = Path(__file__).parent


class Records(paddle.io.Dataset):
    def __init__(self):
        super().__init__()
        self.x = np.load(_HERE / "x.npy")
        self.y = np.load(_HERE / "y.npy")

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __len__(self):
        return len(self.y)


def get_dataset():
    return Records()
'''


def write_storage(root: Path, records: int) -> None:
    """Three equal splits (members, non-members, population) of synthetic records, the model's
    code, and the target's weights trained on the members."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=records, n_features=FEATURES, n_informative=16, n_classes=CLASSES,
                               n_clusters_per_class=2, flip_y=0.1, random_state=SEED)
    x = x.astype(np.float32)
    for name, part in zip(("members", "non_members", "population"), np.array_split(np.arange(records), 3),
                          strict=True):
        folder = root / "datasets" / name
        folder.mkdir(parents=True)
        np.save(folder / "x.npy", x[part])
        np.save(folder / "y.npy", y[part].astype(np.int64))
        (folder / f"{name}.py").write_text(DATASET_CODE)
    model = root / "models" / "mlp"
    model.mkdir(parents=True)
    (model / "mlp.py").write_text(MODEL_CODE)
    members = np.array_split(np.arange(records), 3)[0]
    train_target(model, x[members], y[members].astype(np.int64))


def train_target(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    import paddle

    namespace: dict = {}
    exec(compile(MODEL_CODE, "mlp.py", "exec"), namespace)  # the model code this function just wrote
    paddle.seed(SEED)
    model = namespace["get_model"]()
    optimizer = paddle.optimizer.Adam(learning_rate=LEARNING_RATE, parameters=model.parameters())
    order = np.random.default_rng(SEED)
    for _ in range(EPOCHS):
        shuffled = order.permutation(len(y))
        for start in range(0, len(y), BATCH_SIZE):
            batch = shuffled[start:start + BATCH_SIZE]
            loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(x[batch])), paddle.to_tensor(y[batch]))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
    paddle.save(model.state_dict(), str(folder / "mlp.pdparams"))


def lira_task(shadows: int) -> str:
    return f"""
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: LIRA
  args:
    target_datasets: [./datasets/members, ./datasets/non_members]
    target_model: ./models/mlp
    population_datasets: [./datasets/population]
    num_shadow: {shadows}
    epochs: {EPOCHS}
    lr: {LEARNING_RATE}
    batch_size: {BATCH_SIZE}
"""


@dataclass
class Peaks:
    """Highest VmHWM seen of each process under the cluster's processes, by a name that says
    what it is; job processes are numbered in the order they appeared."""

    by_pid: dict[int, tuple[str, float]] = field(default_factory=dict)
    jobs: list[int] = field(default_factory=list)  # job process ids, in the order they appeared

    def sample(self, roots: dict[str, int]) -> None:
        of = parents()
        for name, root in roots.items():
            self._note(root, name)
            launchers = [pid for pid, parent in of.items() if parent == root]
            for launcher in launchers:
                self._note(launcher, f"{name} launcher")
                for job in (pid for pid, parent in of.items() if parent == launcher):
                    if job not in self.by_pid:
                        self.jobs.append(job)
                        self.by_pid[job] = (f"job {len(self.jobs)} ({name})", 0.0)
                    self._note(job, self.by_pid[job][0])

    def _note(self, pid: int, name: str) -> None:
        known = self.by_pid.get(pid, (name, 0.0))
        self.by_pid[pid] = (known[0], max(known[1], high_water_mb(pid)))


def database_bytes(state: Path) -> int:
    return sum(path.stat().st_size for path in (state / "orchestrator").glob("*") if path.is_file())


def stored_messages(state: Path) -> tuple[list[int], list[int]]:
    """Sizes of the shadow parts' answers and of the attack results the orchestrator stored."""
    with sqlite3.connect(state / "orchestrator" / STATE_FILE) as connection:
        shadows = [len(row[0]) for row in connection.execute("SELECT output FROM shadow_outputs")]
        results = [len(row[0]) for row in connection.execute("SELECT event FROM events WHERE kind = 'attack_result'")]
    return shadows, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shadows", type=int, default=64)
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cifar-shadow-minutes", type=float, default=5.0,
                        help="assumed GPU minutes to train one CIFAR-10 shadow model (for the projection only)")
    parser.add_argument("--output", type=Path, default=Path(os.environ.get("BENCH_OUT", "bench-scale-results.json")))
    args = parser.parse_args()
    # Inherited by the cluster's services (a task is far smaller than the orchestrator's default bound).
    os.environ.update(PRIVAUDIT_MAX_MESSAGE_BYTES=str(MESSAGE_LIMIT), PRIVAUDIT_MAX_TASK_BYTES=str(MESSAGE_LIMIT // 2))

    with tempfile.TemporaryDirectory(prefix="privaudit-scale-") as scratch:
        root, state = Path(scratch) / "storage", Path(scratch) / "state"
        started = time.perf_counter()
        write_storage(root, args.records)
        print(f"data and target: {time.perf_counter() - started:.1f} s ({args.records:,} records)", flush=True)
        with LocalCluster(workers=args.workers, storage_root=root, state_dir=state) as cluster:
            roots = {service.name: service.process.pid for service in cluster.processes}
            database_before = database_bytes(state)
            peaks, done = Peaks(), threading.Event()

            def sample() -> None:
                while not done.wait(0.05):
                    peaks.sample(roots)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            with AuditClient(cluster.address) as auditor:
                started = time.perf_counter()
                outcome = auditor.run(lira_task(args.shadows), report_format="json", seed=SEED)
                wall = time.perf_counter() - started
            done.set()
            sampler.join()
            database_growth = database_bytes(state) - database_before
            shadow_sizes, result_sizes = stored_messages(state)
        failed = [r.error.message for r in outcome.results if r.status != results_pb2.ATTACK_STATUS_SUCCEEDED]
        if failed:
            raise SystemExit(f"bench-scale: LIRA failed: {failed}")

    report = json.loads(outcome.rendered)["attacks"][0]
    timings = report["timings"]
    per_shadow = timings.get("train_shadow", 0.0) / args.shadows
    job_peaks = [peaks.by_pid[pid][1] for pid in peaks.jobs]
    figures = {
        "records": args.records, "shadows": args.shadows, "workers": args.workers,
        "wall_s": round(wall, 1), "train_shadow_s_per_model": round(per_shadow, 3),
        "auc": report["metrics"]["auc"], "tpr_at_1pct_fpr": report["metrics"]["tpr_at_1pct_fpr"],
        "peak_rss_mb": {name: round(mb, 1) for name, mb in sorted(peaks.by_pid.values())
                        if not name.startswith("job ")},
        "jobs": len(job_peaks),
        "shadow_job_peak_rss_mb_max": round(max(job_peaks[:-1], default=0.0), 1),
        "score_job_peak_rss_mb": round(job_peaks[-1], 1) if job_peaks else None,  # the last job to start
        "shadow_answer_bytes_max": max(shadow_sizes, default=0),
        "score_request_bytes": sum(shadow_sizes),  # it carries every shadow part's answer
        "result_bytes_max": max(result_sizes, default=0),
        "database_growth_bytes_per_shadow": round(database_growth / args.shadows),
        "message_limit_bytes": MESSAGE_LIMIT,
    }
    overhead = wall - math.ceil(args.shadows / args.workers) * per_shadow
    for workers in (8, 16, 64):
        figures[f"cifar_projection_h_{workers}_gpu_workers"] = round(
            (math.ceil(64 / workers) * args.cifar_shadow_minutes * 60 + max(overhead, 0.0)) / 3600, 2)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    for name, value in figures.items():
        print(f"  {name:<42} {value}")


if __name__ == "__main__":
    main()
