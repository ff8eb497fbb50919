"""Bytes a distributed LIRA moves and keeps per shadow model, inline (the only way before issue 16,
and still the way without --cache-shared) and by reference (--cache-shared).

Runs K shadow parts and the score part in this process (no gRPC, the same messages) of a LIRA on
a few thousand records of a 10-class linear model, then stores the shadow outputs as the
orchestrator does, and prints in bytes: one ShadowOutput message (RunAttackResponse), the score
request, a shadow model's row in the orchestrator's database, and the database file's growth
per shadow model.

    .venv/bin/python tests/benchmarks/shadow_messages.py [--num-shadow 16] [--records 3000] [--augment]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "protos" / "gen" / "python"), str(REPO / "tests")]

from worker_fixtures import write_dataset, write_model  # noqa: E402

from privaudit.services.attack_worker.job import run_job  # noqa: E402
from privaudit.services.attack_worker.settings import WorkerSettings  # noqa: E402
from privaudit.services.common import task_spec  # noqa: E402
from privaudit.services.orchestrator.store import TaskStore  # noqa: E402
from privaudit.v1 import attack_worker_pb2, results_pb2, task_pb2  # noqa: E402

CLASSES = 10
MODEL = f'''
import paddle


class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.linear = paddle.nn.Linear(16, {CLASSES})

    def forward(self, x):
        return self.linear(paddle.flatten(x, start_axis=1))


def get_model():
    return Net()
'''


def write_tree(root: Path, records: int) -> None:
    """Members and non-members of `records` // 2 each, and as many population records."""
    rng = np.random.default_rng(0)
    weights = {"linear.weight": rng.normal(size=(16, CLASSES)).astype(np.float32),
               "linear.bias": np.zeros(CLASSES, np.float32)}
    write_model(root / "models" / "net", weights, code=MODEL)
    for name, count in (("members", records // 2), ("non_members", records // 2), ("population", records)):
        samples = rng.normal(size=(count, 4, 4)).astype(np.float32)
        write_dataset(root / "datasets" / name, samples, rng.integers(0, CLASSES, size=count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-shadow", type=int, default=16)
    parser.add_argument("--records", type=int, default=3000, help="audited records (half members)")
    parser.add_argument("--augment", action="store_true", help="LIRA's two views per record")
    flags = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "root"
        write_tree(root, flags.records)
        args = task_spec.LiraArgs(target_datasets=["datasets/members", "datasets/non_members"],
                                  target_model="models/net", population_datasets=["datasets/population"],
                                  num_shadow=flags.num_shadow, epochs=1, batch_size=256, augment=flags.augment)
        spec = task_spec.attack_to_proto(args)
        print(f"LIRA, K = {flags.num_shadow}, {flags.records} audited records, {CLASSES} classes, "
              f"{2 if flags.augment else 1} view(s)")
        print(f"{'':>14} {'ShadowOutput':>14} {'score request':>14} {'DB row':>14} {'DB file/shadow':>14}")
        for mode, shared in (("inline", False), ("by reference", True)):
            settings = WorkerSettings(str(root), cache_dir=str(Path(folder) / f"cache-{mode}"), cache_shared=shared)
            (Path(settings.cache_dir)).mkdir()
            outputs = []
            for index in range(flags.num_shadow):
                job = attack_worker_pb2.RunAttackRequest(task_id="0123456789ab", attack=spec, seed=1)
                job.shadow.shadow_index = index
                outputs.append(run_job(job, settings, lambda _: None))
            score = attack_worker_pb2.RunAttackRequest(task_id="0123456789ab", attack=spec, seed=1)
            score.score.shadows.extend(outputs)
            result = run_job(score, settings, lambda _: None)
            assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
            database = Path(folder) / f"state-{mode}" / "orchestrator.sqlite3"
            store = TaskStore(database)
            store.create_task("0123456789ab", task_pb2.Task(), 0).wait()
            store.close()
            before = database.stat().st_size
            store = TaskStore(database)
            for output in outputs:
                store.save_shadow("0123456789ab", 0, output).wait()
            store.close()  # checkpoints the write-ahead log into the file
            growth = (database.stat().st_size - before) / flags.num_shadow
            row = sum(output.ByteSize() for output in outputs) / flags.num_shadow
            message = attack_worker_pb2.RunAttackResponse(shadow=outputs[0]).ByteSize()
            print(f"{mode:>14} {message:>14,} {score.ByteSize():>14,} {row:>14,.0f} {growth:>14,.0f}   "
                  f"AUC {result.metrics.auc:.4f}")


if __name__ == "__main__":
    main()
