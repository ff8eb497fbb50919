"""Runs every attack of a task in this process and saves each one's per-record scores.

    .venv/bin/python tests/fidelity/dump_scores.py TASK.yaml OUT.npz [--code DIR] [--storage-root DIR]

`--code` is the checkout whose attack code runs (default: this one), so an older commit's attacks
(a `git worktree`) run on the same task, data and seed as today's: the before/after comparison
of docs/fidelity.md. Each attack runs as one job would (LIRA and RMIA with all their shadow
models in turn), on the task's seed. OUT.npz holds, for attack i, `i/name`, `i/members`,
`i/non_members`, `i/threshold` and, when the code reports them, `i/member_labels` and
`i/non_member_labels`.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--code", type=Path, default=REPO)
    parser.add_argument("--storage-root", type=Path, default=REPO)
    options = parser.parse_args()
    sys.path[:0] = [str(options.code), str(options.code / "protos" / "gen" / "python")]

    from privaudit.services.attack_worker import attacks
    from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
    from privaudit.services.attack_worker.settings import WorkerSettings
    from privaudit.services.common import task_spec

    spec = task_spec.parse_yaml(options.task.read_text())
    settings = WorkerSettings(storage_root=str(options.storage_root))
    saved: dict[str, np.ndarray] = {}
    for index, args in enumerate(spec.attacks):
        started = time.monotonic()
        seed = spec.seed if getattr(args, "seed", None) is None else args.seed
        scores = attacks.runner_for(args.name)(args, PaddleRuntime(settings, seed, lambda *_: None))
        saved |= {f"{index}/name": np.array(args.name), f"{index}/members": scores.members,
                  f"{index}/non_members": scores.non_members, f"{index}/threshold": np.array(scores.threshold)}
        for side in ("member_labels", "non_member_labels"):
            if getattr(scores, side, None) is not None:
                saved[f"{index}/{side}"] = np.asarray(getattr(scores, side))
        print(f"{args.name}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    np.savez(options.out, **saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
