"""Every audited record's membership score, exported for analysis outside privaudit.

One row per (attack, record) of each succeeded attack's target member and non-member datasets:

    attack_index  position of the attack in the task
    attack        its name (BASELINE, LIRA, ...)
    dataset       the dataset folder, as the task wrote it
    record        the record's index in that dataset (what get_dataset() gives at that index)
    member        1 for a record of the member dataset, 0 for the non-member dataset
    label         the record's class label (-1 when the attack did not report labels)
    score         its membership score (higher: more likely a member); NaN when the attack did not
                  score it (LABEL-ONLY scores only the balanced evaluation set)
    decision      1 when the attack calls it a member (score >= the attack's decision threshold; 0 for NaN)
    evaluated     1 when it is in the balanced evaluation set the metrics are computed on

`.csv` writes a header and these columns; `.npz` writes one array per column (strings as
unicode arrays), so `numpy.load(path)["score"]` reads the scores back exactly.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from privaudit.v1 import results_pb2

COLUMNS = ("attack_index", "attack", "dataset", "record", "member", "label", "score", "decision", "evaluated")
SUFFIXES = (".csv", ".npz")
UNKNOWN_LABEL = -1


def score_table(results: Sequence[results_pb2.AttackResult]) -> dict[str, np.ndarray]:
    """The rows of every succeeded attack that carries its records' scores, column by column."""
    parts = [_rows(0, "", "", False, [], [], [], 0.0)]  # typed columns, even with no rows at all
    for result in results:
        if result.status != results_pb2.ATTACK_STATUS_SUCCEEDED or not result.HasField("record_scores"):
            continue
        scores = result.record_scores
        paths = {d.is_member_dataset: d.path for d in result.datasets if d.role == "target"}
        for member, values, labels, evaluated in (
            (True, scores.members, scores.member_labels, scores.member_evaluated),
            (False, scores.non_members, scores.non_member_labels, scores.non_member_evaluated),
        ):
            parts.append(_rows(result.attack_index, result.attack_name, paths.get(member, ""), member, values,
                               labels, evaluated, result.metrics.decision_threshold))
    return {name: np.concatenate([part[name] for part in parts]) for name in COLUMNS}


def _rows(attack_index: int, attack: str, dataset: str, member: bool, values: Sequence[float],
          labels: Sequence[int], evaluated: Sequence[bool], threshold: float) -> dict[str, np.ndarray]:
    """The rows of one attack's records of one dataset."""
    count = len(values)
    score = np.asarray(values, dtype=np.float64)
    return {
        "attack_index": np.full(count, attack_index, dtype=np.int64),
        "attack": np.repeat(np.str_(attack), count),
        "dataset": np.repeat(np.str_(dataset), count),
        "record": np.arange(count, dtype=np.int64),
        "member": np.full(count, member, dtype=np.int8),
        "label": np.asarray(labels, dtype=np.int64) if len(labels) else np.full(count, UNKNOWN_LABEL, np.int64),
        "score": score,
        "decision": (score >= threshold).astype(np.int8),
        "evaluated": np.asarray(evaluated, dtype=np.int8) if len(evaluated) else np.zeros(count, np.int8),
    }


def write_scores(path: Path, results: Sequence[results_pb2.AttackResult]) -> int:
    """Writes the score table to `path` (.csv or .npz, by its suffix); returns the rows written."""
    table = score_table(results)
    if path.suffix == ".npz":
        with path.open("wb") as file:
            np.savez(file, **table)
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            writer.writerows(zip(*(_csv_column(name, table[name]) for name in COLUMNS), strict=True))
    else:
        raise ValueError(f"cannot write scores to {path}: the file name must end in {' or '.join(SUFFIXES)}")
    return len(table["score"])


def _csv_column(name: str, values: np.ndarray) -> list:
    """Values as the CSV shows them: scores with every digit (repr round-trips a float64)."""
    return [repr(float(v)) for v in values] if name == "score" else values.tolist()

