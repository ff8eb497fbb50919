"""LOSS, LIRA and RMIA on the shipped example, through the real Paddle runtime, as worker jobs.

The example's target, digits_mlp, memorised its 400 members. The attacks that calibrate each
record against shadow models (LIRA online with 16, RMIA offline with 4 references), trained as the
target was on as many records, must find them better than LOSS's one global loss threshold, both
in AUC and in TPR at the lowest FPR the 400 non-members resolve (1%).
Against the control, digits_constant, which answers every input alike (its shadow models are
itself: it has nothing to train), every attack must get chance: AUC 0.5 +- 0.03. The task is
example/tasks/mem_inf_sota.yaml as shipped. Needs the trained example (`make example`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from privaudit.services.attack_worker.attacks import shadow_models
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common import task_spec
from privaudit.v1 import attack_worker_pb2, results_pb2

ROOT = Path(__file__).resolve().parents[1]
TASK = task_spec.parse_yaml((ROOT / "example" / "tasks" / "mem_inf_sota.yaml").read_text())
CONTROL = "./example/models/digits_constant"
NAMES = ("LOSS", "LIRA", "RMIA")


def run_attack(index: int, **changes: object) -> results_pb2.AttackResult:
    """Attack `index` of the task, its args changed by `changes`, run as one worker job."""
    request = attack_worker_pb2.RunAttackRequest(
        task_id="example-sota", attack_index=index, seed=TASK.seed,
        attack=task_spec.attack_to_proto(TASK.attacks[index].model_copy(update=changes)))
    result = run_job(request, WorkerSettings(str(ROOT)), lambda progress: None)
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    return result


@pytest.fixture(scope="module")
def on_target() -> dict[str, results_pb2.Metrics]:
    return {name: run_attack(index).metrics for index, name in enumerate(NAMES)}


@pytest.fixture(scope="module")
def on_control() -> dict[str, results_pb2.Metrics]:
    return {name: run_attack(index, target_model=CONTROL).metrics for index, name in enumerate(NAMES)}


def test_the_task_is_the_one_the_issue_asks_for():
    assert [a.name for a in TASK.attacks] == list(NAMES)
    assert TASK.attacks[1].num_shadow == 16


def test_the_models_mirror_the_target_lira_online_half_in_and_rmia_offline_four_references():
    """From the masks alone (no training): every model trains on 400 records, as the target did;
    LIRA's 16 put each audited record in exactly 8 of them; RMIA's 4 are all references (OUT) for
    every audited record."""
    runtime = PaddleRuntime(WorkerSettings(str(ROOT)), TASK.seed, lambda *_: None)
    lira, rmia = (shadow_models.load(TASK.attacks[index], runtime) for index in (1, 2))
    for setup in (lira, rmia):
        assert setup.train_size == 400 and (setup.masks.sum(axis=1) == 400).all()
    assert (lira.masks[:, :800].sum(axis=0) == 8).all()
    assert (~rmia.query_masks[:, :800]).sum(axis=0).tolist() == [4] * 800


def test_every_attack_is_measured_on_the_whole_balanced_example(on_target):
    for metrics in on_target.values():
        assert (metrics.num_members, metrics.num_non_members) == (400, 400)
        assert metrics.HasField("tpr_at_1pct_fpr") and not metrics.HasField("tpr_at_0_1pct_fpr")


@pytest.mark.parametrize("name", ["LIRA", "RMIA"])
def test_shadow_model_attacks_beat_loss_in_auc_and_at_low_fpr(on_target, name):
    loss, attack = on_target["LOSS"], on_target[name]
    assert attack.auc > loss.auc + 0.03, (attack, loss)
    assert attack.tpr_at_1pct_fpr > loss.tpr_at_1pct_fpr + 0.05, (attack, loss)


@pytest.mark.parametrize("name", NAMES)
def test_every_attack_gets_chance_against_the_control_model(on_control, name):
    assert abs(on_control[name].auc - 0.5) <= 0.03, on_control[name]
