"""`--scores`: every record's score, exported to .npz and .csv, reads back exactly."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from privaudit.client.scores_export import COLUMNS, score_table, write_scores
from privaudit.v1 import results_pb2


def result(index: int, name: str, members: list[float], non_members: list[float], threshold: float,
           labels: bool = True) -> results_pb2.AttackResult:
    return results_pb2.AttackResult(
        attack_index=index, attack_name=name, status=results_pb2.ATTACK_STATUS_SUCCEEDED,
        metrics=results_pb2.Metrics(decision_threshold=threshold),
        datasets=[results_pb2.DatasetSummary(path="data/in", is_member_dataset=True, role="target"),
                  results_pb2.DatasetSummary(path="data/out", is_member_dataset=False, role="target"),
                  results_pb2.DatasetSummary(path="data/pop", role="population")],
        record_scores=results_pb2.RecordScores(
            members=members, non_members=non_members,
            member_labels=list(range(len(members))) if labels else [],
            non_member_labels=[7] * len(non_members) if labels else [],
            member_evaluated=[True] * len(members), non_member_evaluated=[i % 2 == 0 for i in range(len(non_members))]))


RESULTS = [
    result(0, "LOSS", [-0.1, -1e-12, -3.0], [-2.5, -0.1], threshold=-0.1),
    results_pb2.AttackResult(attack_index=1, attack_name="ML-LEAK", status=results_pb2.ATTACK_STATUS_FAILED),
    result(2, "LIRA", [1 / 3], [0.1, 0.2, 0.3], threshold=0.25, labels=False),
]


def test_the_table_has_one_row_per_record_of_each_succeeded_attack():
    table = score_table(RESULTS)
    assert list(table) == list(COLUMNS)
    assert table["attack"].tolist() == ["LOSS"] * 5 + ["LIRA"] * 4
    assert table["dataset"].tolist() == ["data/in"] * 3 + ["data/out"] * 2 + ["data/in"] + ["data/out"] * 3
    assert table["record"].tolist() == [0, 1, 2, 0, 1, 0, 0, 1, 2]
    assert table["member"].tolist() == [1, 1, 1, 0, 0, 1, 0, 0, 0]
    assert table["label"].tolist() == [0, 1, 2, 7, 7, -1, -1, -1, -1]
    # member when score >= threshold, ties included
    assert table["decision"].tolist() == [1, 1, 0, 0, 1, 1, 0, 0, 1]
    assert table["evaluated"].tolist() == [1, 1, 1, 1, 0, 1, 1, 0, 1]


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_both_formats_round_trip_exactly(tmp_path, suffix):
    path = tmp_path / f"scores{suffix}"
    assert write_scores(path, RESULTS) == 9
    expected = score_table(RESULTS)
    if suffix == ".npz":
        loaded = dict(np.load(path))
    else:
        with path.open(newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
        loaded = {name: np.array([row[name] for row in rows]).astype(expected[name].dtype) for name in COLUMNS}
    assert list(loaded) == list(COLUMNS)
    for name in COLUMNS:
        np.testing.assert_array_equal(loaded[name], expected[name], err_msg=name)  # floats bit for bit


def test_no_succeeded_attack_gives_an_empty_table_with_typed_columns(tmp_path):
    table = score_table(RESULTS[1:2])
    assert all(len(column) == 0 for column in table.values()) and table["score"].dtype == np.float64
    assert write_scores(tmp_path / "s.csv", []) == 0
    assert (tmp_path / "s.csv").read_text().strip() == ",".join(COLUMNS)


def test_an_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.csv or \.npz"):
        write_scores(tmp_path / "scores.txt", RESULTS)
