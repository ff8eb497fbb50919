"""BASELINE: correctness as the membership score, and the attack registry."""

from __future__ import annotations

import numpy as np
import pytest
from worker_fixtures import write_audit_tree

from privaudit.services.attack_worker import attacks, metrics
from privaudit.services.attack_worker.attacks import AttackUnavailable, baseline
from privaudit.services.attack_worker.attacks.base import Outputs, Scores
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.task_spec import BaselineArgs
from privaudit.v1 import results_pb2


def test_correctness_is_one_where_the_argmax_is_the_label():
    logits = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 1.0, 0.5]], dtype=np.float32)
    scores = baseline.correctness(Outputs(logits=logits, labels=np.array([1, 1, 2, 0])))
    np.testing.assert_array_equal(scores, [1.0, 0.0, 1.0, 0.0])


def outputs_with_accuracy(rng: np.random.Generator, n: int, accuracy: float) -> Outputs:
    """n records over 10 classes, a random `accuracy` share of them classified correctly."""
    labels = rng.integers(0, 10, n)
    correct = rng.permutation(n) < round(accuracy * n)
    predicted = np.where(correct, labels, (labels + 1 + rng.integers(0, 9, n)) % 10)
    return Outputs(logits=np.eye(10, dtype=np.float32)[predicted] + rng.random((n, 10), dtype=np.float32) * 0.5,
                   labels=labels)


@pytest.mark.parametrize(("train_acc", "test_acc"), [(0.9, 0.6), (0.75, 0.7), (1.0, 0.0), (0.5, 0.5)])
def test_advantage_is_train_accuracy_minus_test_accuracy(train_acc, test_acc):
    rng = np.random.default_rng(int(train_acc * 100 + test_acc * 10))
    members, non_members = outputs_with_accuracy(rng, 400, train_acc), outputs_with_accuracy(rng, 400, test_acc)
    member_scores, non_member_scores = baseline.correctness(members), baseline.correctness(non_members)
    evaluation = metrics.evaluate(Scores(member_scores, non_member_scores, threshold=0.5), seed=1)
    assert member_scores.mean() == pytest.approx(train_acc) and non_member_scores.mean() == pytest.approx(test_acc)
    assert evaluation.advantage == pytest.approx(train_acc - test_acc)
    # On a balanced set accuracy = (1 + TPR - FPR) / 2: the decision rule achieves the advantage.
    assert 2 * evaluation.accuracy - 1 == pytest.approx(evaluation.advantage)


def test_a_model_better_on_non_members_has_no_advantage():
    rng = np.random.default_rng(3)
    scores = Scores(baseline.correctness(outputs_with_accuracy(rng, 200, 0.4)),
                    baseline.correctness(outputs_with_accuracy(rng, 200, 0.7)), threshold=0.5)
    assert metrics.evaluate(scores, seed=1).advantage == 0.0


def test_run_scores_the_targets_records_on_the_paddle_runtime(tmp_path):
    tree = write_audit_tree(tmp_path)
    rt = PaddleRuntime(WorkerSettings(str(tree.root)), seed=1, report=lambda *_: None)
    args = BaselineArgs.model_validate({"test_datasets": [tree.members, tree.non_members], "target_model": tree.model})
    scores = baseline.run(args, rt)
    np.testing.assert_array_equal(scores.members, tree.member_correct.astype(float))
    np.testing.assert_array_equal(scores.non_members, tree.non_member_correct.astype(float))
    assert scores.threshold == 0.5
    assert [t.stage for t in rt.timings] == [results_pb2.STAGE_LOAD, results_pb2.STAGE_PREDICT]


def test_the_registry_runs_baseline_and_refuses_unknown_attacks():
    assert attacks.runner_for("BASELINE") is baseline.run
    with pytest.raises(AttackUnavailable, match="NO-SUCH-ATTACK is not available in this version"):
        attacks.runner_for("NO-SUCH-ATTACK")
