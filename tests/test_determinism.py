"""The example audit is reproducible end to end: same seed, same JSON report; another seed,
other shadow-model results.

Runs the example task through two separate local clusters (real service processes, so
separate interpreters with their own hash seeds) and compares the JSON reports whole, but
for what must differ between runs: the task id and the stages' wall times.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from privaudit.client import AuditClient, LocalCluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TASK = (REPO / "example" / "tasks" / "mem_inf.yaml").read_text()
OTHER_SEED = 7


def without_run_details(report: str) -> dict[str, Any]:
    """The JSON report without what differs from run to run by design: its task id, the date it
    was made and the attacks' timings."""
    document = json.loads(report)
    del document["task_id"]
    del document["provenance"]["generated_at"]
    for attack in document["attacks"]:
        del attack["timings"]
    return document


def audit(cluster: LocalCluster, seed: int | None = None) -> dict[str, Any]:
    with AuditClient(cluster.address) as client:
        outcome = client.run(TASK, "json", seed)
    assert outcome.done is not None and not outcome.done.error, outcome.done
    return without_run_details(outcome.rendered)


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    with LocalCluster(storage_root=REPO) as cluster:
        first = audit(cluster)
    with LocalCluster(storage_root=REPO) as cluster:
        return {"first": first, "again": audit(cluster), "other seed": audit(cluster, OTHER_SEED)}


def test_the_same_task_and_seed_give_the_same_report(reports):
    assert [attack["status"] for attack in reports["first"]["attacks"]] == ["succeeded"] * 3
    assert json.dumps(reports["again"], sort_keys=True) == json.dumps(reports["first"], sort_keys=True)


def test_another_seed_changes_the_shadow_attacks_and_not_baseline(reports):
    first, other = reports["first"]["attacks"], reports["other seed"]["attacks"]
    # BASELINE draws nothing at random: with equally large member and non-member sets, no
    # subsampling either.
    assert other[0] == first[0]
    for index in (1, 2):  # the shadow model's initial weights, data order and the classifier change
        assert other[index]["name"] == first[index]["name"]
        assert other[index]["metrics"]["auc"] != first[index]["metrics"]["auc"]
        assert other[index]["roc"] != first[index]["roc"]
