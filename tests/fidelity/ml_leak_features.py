"""Saves ML-LEAK's shadow and target features and its scores, for art_reference.py.

    .venv/bin/python tests/fidelity/ml_leak_features.py TASK.yaml OUT_PREFIX SEED [SEED ...]

For each seed, runs the task's ML-LEAK attack in this process (its shadow model trained from that
seed) and writes OUT_PREFIX_SEED.npz: the shadow's member and non-member features (`shadow_in`,
`shadow_out`), the target's (`target_in`, `target_out`) and ML-LEAK's scores (`members`,
`non_members`).
"""

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO), str(REPO / "protos" / "gen" / "python")]

from test_art_crosscheck import both, ml_leak_features, ml_leak_with_shadow  # noqa: E402

from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime  # noqa: E402
from privaudit.services.attack_worker.settings import WorkerSettings  # noqa: E402
from privaudit.services.common.task_spec import parse_yaml  # noqa: E402


def main(task_file: str, prefix: str, *seeds: str) -> int:
    args = next(a for a in parse_yaml(Path(task_file).read_text()).attacks if a.name == "ML-LEAK")
    for seed in map(int, seeds):
        rt = PaddleRuntime(WorkerSettings(str(REPO)), seed, lambda *_: None)
        scores, shadow = ml_leak_with_shadow(args, rt)
        target = rt.load_model("target_model", args.target_model)
        shadow_in, shadow_out = (ml_leak_features(args, rt, shadow, path) for path in both(args.shadow_datasets))
        target_in, target_out = (ml_leak_features(args, rt, target, path) for path in both(args.target_datasets))
        np.savez(f"{prefix}_{seed}.npz", shadow_in=shadow_in, shadow_out=shadow_out, target_in=target_in,
                 target_out=target_out, members=scores.members, non_members=scores.non_members)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
