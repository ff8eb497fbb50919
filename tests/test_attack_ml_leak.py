"""ML-LEAK: the top-k posterior features on known answers, and the attack end to end on fakes."""

import numpy as np
import pytest
from fake_runtime import AUDIT_PATHS, ConstantModel, audit_runtime, membership_auc

from privaudit.v1 import results_pb2
from services.attack_worker.attacks import ml_leak
from services.attack_worker.attacks.ml_leak import top_k_posteriors
from services.common.errors import TaskError
from services.common.task_spec import MlLeakArgs

CONTROL_PROBABILITIES = [0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02]


def args(**overrides) -> MlLeakArgs:
    return MlLeakArgs(**AUDIT_PATHS, **overrides)


# ------------------------------------------------------------------ features


def test_top_k_posteriors_hand_computed():
    # softmax(log([1, 2, 3, 4]) + c) = [0.1, 0.2, 0.3, 0.4] for any shift c.
    logits = np.array([np.log([1.0, 2.0, 3.0, 4.0]) + 7.0, np.log([4.0, 1.0, 3.0, 2.0]), [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(top_k_posteriors(logits, 2), [[0.4, 0.3], [0.4, 0.3], [0.25, 0.25]])


def test_features_are_sorted_probabilities_summing_to_at_most_one():
    logits = np.random.default_rng(0).normal(scale=5.0, size=(200, 10)).astype(np.float32)

    top3, all10 = top_k_posteriors(logits, 3), top_k_posteriors(logits, 10)

    assert top3.shape == (200, 3)
    assert (np.diff(top3, axis=1) <= 0).all()
    assert (top3 >= 0).all()
    assert (top3.sum(axis=1) <= 1 + 1e-12).all()
    np.testing.assert_allclose(all10.sum(axis=1), 1.0)
    np.testing.assert_array_equal(top3, all10[:, :3])


def test_features_are_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], np.float32)

    features = top_k_posteriors(logits, 2)

    assert np.isfinite(features).all()
    np.testing.assert_allclose(features, [[1.0, 0.0], [0.5, 0.5], [1 / 3, 1 / 3]])


# ------------------------------------------------------------------ the attack


def test_leaky_target_is_found():
    assert membership_auc(ml_leak.run(args(), audit_runtime())) > 0.8


def test_control_model_with_constant_outputs_gives_chance():
    scores = ml_leak.run(args(), audit_runtime(target=ConstantModel(CONTROL_PROBABILITIES)))
    assert abs(membership_auc(scores) - 0.5) <= 0.02


def test_same_seed_same_scores_and_the_seed_matters():
    first, again = (ml_leak.run(args(), audit_runtime(seed=11)) for _ in range(2))
    other = ml_leak.run(args(), audit_runtime(seed=12))

    np.testing.assert_array_equal(first.members, again.members)
    np.testing.assert_array_equal(first.non_members, again.non_members)
    assert not np.array_equal(first.members, other.members)


def test_trains_a_fresh_shadow_on_the_shadow_members_and_reports_its_stages():
    rt = audit_runtime()
    task = args(shadow_epoch=3, shadow_lr=0.01, batch_size=32)

    scores = ml_leak.run(task, rt)

    (call,) = rt.train_calls
    assert call.data is rt.datasets[AUDIT_PATHS["shadow_datasets"][0]]
    assert (call.epochs, call.lr, call.batch_size) == (3, 0.01, 32)
    assert rt.models[AUDIT_PATHS["shadow_model"]].memory is None  # the registered architecture untouched
    assert rt.stages == [results_pb2.STAGE_LOAD, results_pb2.STAGE_TRAIN_SHADOW, results_pb2.STAGE_PREDICT,
                         results_pb2.STAGE_FIT_ATTACK, results_pb2.STAGE_SCORE]
    assert len(scores.members) == len(scores.non_members) == 200
    assert scores.threshold == 0.5


def test_shadow_may_have_more_classes_than_the_target():
    rt = audit_runtime(shadow_classes=100)
    assert membership_auc(ml_leak.run(args(topk=3), rt)) > 0.8


@pytest.mark.parametrize(("shadow_classes", "topk"), [(4, 5), (100, 11)])
def test_topk_above_a_class_count_names_the_field_and_both_counts(shadow_classes, topk):
    rt = audit_runtime(shadow_classes=shadow_classes)

    with pytest.raises(TaskError) as caught:
        ml_leak.run(args(topk=topk), rt)

    assert caught.value.field == "topk"
    assert f"{topk}" in str(caught.value)
    assert "10 classes" in str(caught.value) and f"{shadow_classes}" in str(caught.value)
    assert rt.train_calls == []  # refused before any training


def test_missing_dataset_names_its_field():
    rt = audit_runtime()
    del rt.datasets[AUDIT_PATHS["shadow_datasets"][1]]

    with pytest.raises(TaskError) as caught:
        ml_leak.run(args(), rt)

    assert caught.value.field == "shadow_datasets.non_members"
