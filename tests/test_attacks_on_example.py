"""Known answers on the shipped example, through the real Paddle runtime.

The example's target, digits_mlp, memorised its 400 members (wrong labels included), so
each of the seed's three attacks must find them clearly (AUC well above 0.5 on 400 + 400
records, where chance stays within about +-0.05). The control, digits_constant, answers
every input alike, so each attack must get chance (AUC 0.5 +- 0.02) against it, with
the same real shadow models. Needs the trained example (`make example`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common import task_spec
from privaudit.v1 import attack_worker_pb2, results_pb2

ROOT = Path(__file__).resolve().parents[1]
TASK = task_spec.parse_yaml((ROOT / "example" / "tasks" / "mem_inf.yaml").read_text())
CONTROL = "./example/models/digits_constant"
NAMES = ("BASELINE", "ML-LEAK", "LABEL-ONLY")


def run_attack(index: int, **changes: object) -> results_pb2.AttackResult:
    """Attack `index` of the example task, its args changed by `changes`, run as a worker job."""
    args = TASK.attacks[index].model_copy(update=changes)
    request = attack_worker_pb2.RunAttackRequest(task_id="example", attack_index=index, seed=TASK.seed,
                                                 attack=task_spec.attack_to_proto(args))
    result = run_job(request, WorkerSettings(str(ROOT)), lambda progress: None)
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    return result


@pytest.fixture(scope="module")
def on_target() -> dict[str, results_pb2.AttackResult]:
    return {name: run_attack(index) for index, name in enumerate(NAMES)}


@pytest.fixture(scope="module")
def on_control() -> dict[str, results_pb2.AttackResult]:
    return {name: run_attack(index, target_model=CONTROL) for index, name in enumerate(NAMES)}


@pytest.mark.parametrize("name", NAMES)
def test_every_attack_finds_the_members_of_the_overfit_target(on_target, name):
    metrics = on_target[name].metrics
    assert (metrics.num_members, metrics.num_non_members) == (400, 400)
    assert metrics.auc > 0.6, metrics
    assert metrics.advantage > 0.2, metrics


def test_the_target_memorised_its_members_and_baseline_measures_exactly_that_gap(on_target):
    baseline = on_target["BASELINE"]
    model = baseline.target_model
    assert model.train_acc == 1.0 and model.test_acc < 0.7
    assert baseline.metrics.advantage == pytest.approx(model.train_acc - model.test_acc)
    # One binary score: the ROC has one inner point, so AUC = (1 + TPR - FPR) / 2.
    assert baseline.metrics.auc == pytest.approx(0.5 + baseline.metrics.advantage / 2)


@pytest.mark.parametrize("name", NAMES)
def test_every_attack_gets_chance_against_the_control_model(on_control, name):
    result = on_control[name]
    assert result.target_model.name == "digits_constant"
    assert abs(result.metrics.auc - 0.5) <= 0.02, result.metrics
    assert result.metrics.advantage <= 0.04, result.metrics


def test_label_only_with_r_0_is_one_unaugmented_query_ranking_as_baseline(on_target):
    """`r: 0` runs (it crashed published tools) and, with the single query left, the attack
    can only rank correctly labelled records above the others: BASELINE's ROC exactly."""
    result = run_attack(2, r=0)
    assert [(p.fpr, p.tpr) for p in result.roc] == [(p.fpr, p.tpr) for p in on_target["BASELINE"].roc]
    assert result.metrics.auc == on_target["BASELINE"].metrics.auc


def test_a_shadow_architecture_without_parameters_is_refused_naming_the_field():
    request = attack_worker_pb2.RunAttackRequest(
        task_id="example", attack_index=1, seed=TASK.seed,
        attack=task_spec.attack_to_proto(TASK.attacks[1].model_copy(update={"shadow_model": CONTROL})))
    result = run_job(request, WorkerSettings(str(ROOT)), lambda progress: None)
    assert (result.error.code, result.error.field) == ("INVALID_ARGUMENT", "attacks[1].args.shadow_model")
    assert "digits_constant has no parameters" in result.error.message
