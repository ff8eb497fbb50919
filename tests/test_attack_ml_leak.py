"""ML-LEAK: the top-k logit-scaled posterior features on known answers, and the attack end to end on fakes."""

import numpy as np
import pytest
from fake_runtime import AUDIT_PATHS, ConstantModel, audit_runtime, membership_auc
from scipy.special import softmax

from privaudit.services.attack_worker.attacks import ml_leak
from privaudit.services.attack_worker.attacks.ml_leak import top_k_logit_posteriors
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import MlLeakArgs
from privaudit.v1 import results_pb2

CONTROL_PROBABILITIES = [0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02]


def args(**overrides) -> MlLeakArgs:
    return MlLeakArgs(**AUDIT_PATHS, **overrides)


# ------------------------------------------------------------------ features


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def test_top_k_logit_posteriors_hand_computed():
    # softmax(log([1, 2, 3, 4]) + c) = [0.1, 0.2, 0.3, 0.4] for any shift c.
    logits = np.array([np.log([1.0, 2.0, 3.0, 4.0]) + 7.0, np.log([4.0, 1.0, 3.0, 2.0]), [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(top_k_logit_posteriors(logits, 2),
                               [logit(np.array([0.4, 0.3]))] * 2 + [[np.log(1 / 3)] * 2])


def test_features_are_the_logits_of_the_sorted_top_k_softmax_probabilities():
    # An independent reference where probabilities are safe to form: scipy's softmax, sorted, then logit.
    logits = np.random.default_rng(0).normal(scale=3.0, size=(200, 10)).astype(np.float32)

    top3, all10 = top_k_logit_posteriors(logits, 3), top_k_logit_posteriors(logits, 10)

    probabilities = -np.sort(-softmax(logits.astype(np.float64), axis=1), axis=1)
    assert top3.shape == (200, 3)
    np.testing.assert_allclose(all10, logit(probabilities), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(top3, all10[:, :3])
    assert (np.diff(all10, axis=1) <= 0).all()


def test_features_are_finite_and_still_ordered_where_probabilities_round_to_0_and_1():
    # softmax([40, 20, 0]) is 1 - 2e-9, 2e-9, 4e-18: the first rounds to 1 in float32, the last
    # to 0, so log(p) - log(1 - p) of the probabilities would be inf and -inf.
    logits = np.array([[40.0, 20.0, 0.0], [1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], np.float32)

    features = top_k_logit_posteriors(logits, 3)

    assert np.isfinite(features).all()
    np.testing.assert_allclose(features[0], [40 - np.logaddexp(20, 0), 20 - np.logaddexp(40, 0),
                                             0 - np.logaddexp(40, 20)])
    np.testing.assert_allclose(features[1], [1e4, -1e4, -2e4])
    tied = 1e4 - np.logaddexp(1e4, 0.0)
    np.testing.assert_allclose(features[2], [tied, tied, -1e4 - np.log(2)])
    np.testing.assert_allclose(features[3], [-np.log(2)] * 3)


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


def test_scores_say_where_the_threshold_comes_from_and_carry_the_target_labels():
    rt = audit_runtime()

    scores = ml_leak.run(args(classifier_epoch=500), rt)

    assert scores.threshold == 0.5
    assert "shadow model's members and non-members" in scores.threshold_source
    assert "weighted equally" in scores.threshold_source
    members, non_members = (rt.datasets[path] for path in AUDIT_PATHS["target_datasets"])
    np.testing.assert_array_equal(scores.member_labels, members.labels)
    np.testing.assert_array_equal(scores.non_member_labels, non_members.labels)
    assert scores.warnings == ()


def test_an_unconverged_classifier_is_reported_with_what_to_change():
    scores = ml_leak.run(args(classifier_epoch=3, classifier_lr=0.0005), audit_runtime())

    (warning,) = scores.warnings
    assert "had not converged" in warning
    assert "classifier_epoch (3)" in warning and "Raise classifier_epoch" in warning and "0.0005" in warning


def test_an_unstable_classifier_is_reported_with_what_to_change():
    scores = ml_leak.run(args(classifier_epoch=200, classifier_lr=10.0), audit_runtime())

    (warning,) = scores.warnings
    assert "unstable" in warning and "Lower classifier_lr" in warning


def test_posteriors_within_a_millionth_of_one_still_rank_the_members_apart():
    # The overfit target: posteriors so close to [1, 0, ...] that, as probabilities, the
    # features hardly vary and the classifier's output barely moved.
    rt = audit_runtime()
    for path in (AUDIT_PATHS["target_model"], AUDIT_PATHS["shadow_model"]):
        rt.models[path].temperature /= 100
    non_members = rt.datasets[AUDIT_PATHS["target_datasets"][1]]
    target_logits = rt.predict(rt.models[AUDIT_PATHS["target_model"]], non_members, 128).logits
    assert np.median(1 - softmax(target_logits.astype(np.float64), axis=1).max(axis=1)) < 1e-5

    scores = ml_leak.run(args(classifier_epoch=500), rt)

    assert membership_auc(scores) > 0.9
    assert np.ptp(np.r_[scores.members, scores.non_members]) > 0.5


@pytest.mark.parametrize("which", ["target", "shadow"])
def test_a_model_with_one_output_is_refused_naming_it(which):
    rt = audit_runtime(target=ConstantModel([1.0]) if which == "target" else None,
                       shadow_classes=1 if which == "shadow" else None)

    with pytest.raises(TaskError) as caught:
        ml_leak.run(args(topk=1), rt)

    assert caught.value.field == f"{which}_model"
    assert "at least 2 classes" in str(caught.value)
