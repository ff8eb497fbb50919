"""The before/after table of docs/fidelity.md, from score files written by dump_scores.py.

    .venv/bin/python tests/fidelity/table.py NAME=before.npz NAME=after.npz ...

For every attack of every file: AUC and TPR at 1% FPR on the balanced evaluation set, each with
its 95% interval (today's metrics code, so old and new scores are measured alike), and, where
the file has both, the Spearman correlation between ML-LEAK's and LOSS's per-record scores (a
value near 1 means ML-LEAK only re-ranks LOSS).
"""

import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "protos" / "gen" / "python")]

from privaudit.services.attack_worker import metrics  # noqa: E402
from privaudit.services.attack_worker.attacks.base import Scores  # noqa: E402
from privaudit.services.common.task_spec import DEFAULT_SEED  # noqa: E402


def attacks_in(path: Path) -> dict[str, Scores]:
    saved = np.load(path)
    count = len({key.split("/")[0] for key in saved.files})
    return {str(saved[f"{i}/name"]): Scores(saved[f"{i}/members"], saved[f"{i}/non_members"],
                                            float(saved[f"{i}/threshold"])) for i in range(count)}


def row(name: str, attack: str, scores: Scores) -> str:
    evaluation = metrics.evaluate(scores, DEFAULT_SEED)
    auc = f"{evaluation.auc:.3f} [{evaluation.auc_interval.lower:.3f}, {evaluation.auc_interval.upper:.3f}]"
    low = evaluation.at_1pct_fpr
    tpr = f"{low.tpr:.3f} [{low.interval.lower:.3f}, {low.interval.upper:.3f}]" if low else "n/a"
    return f"| {name} | {attack} | {auc} | {tpr} |"


def main(arguments: list[str]) -> int:
    print("| run | attack | AUC [95% CI] | TPR@1%FPR [95% CI] |\n|---|---|---|---|")
    correlations = []
    for argument in arguments:
        name, _, path = argument.partition("=")
        attacks = attacks_in(Path(path))
        for attack, scores in attacks.items():
            print(row(name, attack, scores))
        if {"ML-LEAK", "LOSS"} <= attacks.keys():
            rho = spearmanr(np.r_[attacks["ML-LEAK"].members, attacks["ML-LEAK"].non_members],
                            np.r_[attacks["LOSS"].members, attacks["LOSS"].non_members]).statistic
            correlations.append(f"{name}: Spearman(ML-LEAK, LOSS) = {rho:.3f}")
    print("\n" + "\n".join(correlations))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
