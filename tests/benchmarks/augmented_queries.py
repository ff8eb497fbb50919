"""Time of one LABEL-ONLY query batch (batch_size records x 13 rotations) on this machine, the
CPU path (scipy's ndimage over the numpy batch, one forward pass per rotation: the worker before
issue 16) against the device path (PaddleRuntime.predict_augmented: the batch moved to Paddle's
device once, rotated there, copies stacked into passes of at most batch_size); and the augmented
queries LABEL-ONLY makes on a task's target datasets before (every record) and now (the records
the balanced evaluation set keeps).

The two paths run interleaved, `--repeats` times each; the medians are printed, and the two
paths' answers are checked equal. Models: the example's digits_mlp (1x8x8) and, with `--cifar`,
the CIFAR task's ResNet-18 on random 3x32x32 images (untrained weights: the time is the same).

    .venv/bin/python tests/benchmarks/augmented_queries.py [--repeats 15] [--cifar]

Paddle runs on one CPU thread, as a worker does by default (`--threads 1`); set OMP_NUM_THREADS
to measure with more.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "protos" / "gen" / "python"), str(REPO / "tests")]
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before Paddle is imported, as the worker sets it

import paddle  # noqa: E402
from augment_reference import augmented  # noqa: E402
from worker_fixtures import write_dataset  # noqa: E402

from privaudit.services.attack_worker import device_augment, storage  # noqa: E402
from privaudit.services.attack_worker.attacks import augment  # noqa: E402
from privaudit.services.attack_worker.attacks.base import balanced_indices  # noqa: E402
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime  # noqa: E402
from privaudit.services.attack_worker.settings import WorkerSettings  # noqa: E402
from privaudit.services.common import task_spec  # noqa: E402

ROTATIONS = augment.rotations(6)  # the tasks' r: 6, 13 queries a record


def cpu_path(model: paddle.nn.Layer, samples: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The worker's query before issue 16: each rotation by scipy, then its own forward pass."""
    correct = np.empty((len(labels), len(ROTATIONS)), bool)
    with paddle.no_grad():
        for column, rotation in enumerate(ROTATIONS):
            logits = model(paddle.to_tensor(augmented(rotation, samples)))
            correct[:, column] = logits.argmax(axis=1).numpy() == labels
    return correct


def time_batches(name: str, model_path: str, sample_shape: tuple[int, ...], batch_size: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        samples = rng.random((batch_size, *sample_shape)).astype(np.float32)
        labels = rng.integers(0, 10, batch_size)
        write_dataset(Path(root) / "batch", samples, labels)
        shutil.copytree(REPO / model_path, Path(root) / "model")
        rt = PaddleRuntime(WorkerSettings(root), 0, lambda *_: None)
        model = rt.load_model("target_model", "model", trained=False)
        batch = rt.load_dataset("target_datasets.members", "batch")
        model.layer.eval()
        times: dict[str, list[float]] = {"cpu path": [], "device path": [], "scipy": [], "device ops": []}
        for _ in range(repeats):
            start = time.perf_counter()
            before = cpu_path(model.layer, samples, labels)
            times["cpu path"].append(time.perf_counter() - start)
            start = time.perf_counter()
            now = rt.predict_augmented(model, batch, ROTATIONS, batch_size)
            times["device path"].append(time.perf_counter() - start)
            assert np.array_equal(before, now), "the two paths disagree"
            start = time.perf_counter()
            [augmented(rotation, samples) for rotation in ROTATIONS]
            times["scipy"].append(time.perf_counter() - start)
            start = time.perf_counter()
            device_augment.stacked(paddle.to_tensor(samples), ROTATIONS).numpy()
            times["device ops"].append(time.perf_counter() - start)
    ms = {path: statistics.median(values) * 1e3 for path, values in times.items()}
    print(f"{name}: one batch of {batch_size} records x {len(ROTATIONS)} rotations on {paddle.device.get_device()}, "
          f"median of {repeats} interleaved runs: cpu path {ms['cpu path']:.1f} ms, device path "
          f"{ms['device path']:.1f} ms (ratio {ms['cpu path'] / ms['device path']:.2f}); the augmentations alone: "
          f"scipy {ms['scipy']:.1f} ms, device ops {ms['device ops']:.1f} ms")


def count_queries(task_file: str) -> None:
    """Augmented queries of each LABEL-ONLY attack of a task: (shadow members + non-members +
    target members + non-members) x copies, before; the target's side cut to the balanced set, now."""
    task = task_spec.parse_yaml(task_spec.read_task_file(REPO / task_file))
    for index, spec in enumerate(task.attacks):
        if not isinstance(spec, task_spec.LabelOnlyArgs):
            continue
        sizes = {side: len(storage.load_dataset(str(REPO), path, side, None))
                 for side, path in (("shadow members", spec.shadow_datasets.members),
                                    ("shadow non-members", spec.shadow_datasets.non_members),
                                    ("target members", spec.target_datasets.members),
                                    ("target non-members", spec.target_datasets.non_members))}
        copies = len(augment.rotations(spec.r) if spec.attack_type == "r" else augment.translations(spec.d))
        kept = sum(len(k) for k in balanced_indices(sizes["target members"], sizes["target non-members"], task.seed))
        before = copies * sum(sizes.values())
        now = copies * (sizes["shadow members"] + sizes["shadow non-members"] + kept)
        print(f"{task_file} attacks[{index}] LABEL-ONLY, {sizes}, {copies} copies a record: "
              f"{before:,} augmented queries before, {now:,} now, {before - now:,} saved")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cifar", action="store_true", help="also time the CIFAR task's ResNet-18 (slow on a CPU)")
    args = parser.parse_args()
    time_batches("digits_mlp", "example/models/digits_mlp", (1, 8, 8), 64, args.repeats)
    if args.cifar:
        time_batches("resnet18_10classes", "example/models/resnet18_10classes", (3, 32, 32), 128, args.repeats)
    count_queries("example/tasks/mem_inf.yaml")


if __name__ == "__main__":
    main()
