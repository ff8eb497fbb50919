"""LOSS: the score is minus the cross-entropy of the true label, computed stably from logits."""

from __future__ import annotations

import numpy as np
import pytest
from fake_runtime import AUDIT_PATHS, ConstantModel, audit_runtime, membership_auc
from scipy.special import softmax
from sklearn.metrics import log_loss

from privaudit.services.attack_worker.attacks import loss
from privaudit.services.common.task_spec import LossArgs
from privaudit.v1 import results_pb2


def loss_args() -> LossArgs:
    return LossArgs(target_datasets=AUDIT_PATHS["target_datasets"], target_model=AUDIT_PATHS["target_model"])


def test_known_answers():
    logits = np.array([[0.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    labels = np.array([0, 1, 0])
    expected = [np.log(0.5), 0.0 - np.log(np.exp(2.0) + 1.0), 3.0 - np.log(np.exp(3.0) + np.exp(1.0))]
    np.testing.assert_allclose(loss.true_label_log_probability(logits, labels), expected, rtol=1e-12)


def test_minus_the_mean_score_is_scikit_learns_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(50, 5))
    labels = rng.integers(0, 5, size=50)
    scores = loss.true_label_log_probability(logits, labels)
    assert -scores.mean() == pytest.approx(log_loss(labels, softmax(logits, axis=1), labels=range(5)), rel=1e-9)


def test_huge_logits_give_exact_finite_scores():
    logits = np.array([[1e4, -1e4, -1e4], [1e4, -1e4, -1e4], [-1e4, 1e4, 1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is harmless
        scores = loss.true_label_log_probability(logits, np.array([0, 1, 0]))
    np.testing.assert_allclose(scores, [0.0, -2e4, -2e4 - np.log(2.0)], rtol=1e-12, atol=1e-12)


def test_the_attack_finds_the_members_of_a_memorising_model_with_a_membership_blind_threshold():
    rt = audit_runtime()
    scores = loss.run(loss_args(), rt)
    assert membership_auc(scores) > 0.8
    # Without population data: the median of every audited score, whatever their membership.
    assert scores.threshold == np.median(np.r_[scores.members, scores.non_members])
    assert "membership unused" in scores.threshold_source
    np.testing.assert_array_equal(scores.member_labels, rt.datasets[AUDIT_PATHS["target_datasets"][0]].labels)
    assert rt.stages == [results_pb2.STAGE_LOAD, results_pb2.STAGE_PREDICT, results_pb2.STAGE_SCORE]
    assert not rt.train_calls


def test_with_population_data_the_threshold_is_beaten_by_five_percent_of_it():
    rt = audit_runtime()
    args = LossArgs(**{**loss_args().model_dump(), "population_datasets": AUDIT_PATHS["shadow_datasets"]})
    scores = loss.run(args, rt)
    population = [rt.datasets[path] for path in AUDIT_PATHS["shadow_datasets"]]
    population_scores = np.concatenate([loss.true_label_log_probability(
        rt.models[AUDIT_PATHS["target_model"]].logits(d.samples), d.labels) for d in population])
    assert np.mean(population_scores >= scores.threshold) == pytest.approx(0.05, abs=1 / len(population_scores))
    assert "400 population records" in scores.threshold_source
    # A calibrated rule: on the non-members, whom the target never saw either, about 5% are called members.
    assert np.mean(scores.non_members >= scores.threshold) < 0.15


def test_the_population_threshold_is_a_known_quantile():
    assert loss.population_threshold(np.arange(100.0)) == 95.0
    assert loss.population_threshold(np.arange(1000.0)) == 950.0


def test_a_model_that_ignores_its_input_gives_chance():
    """The score then depends on the label only, and both sets hold every label equally often."""
    scores = loss.run(loss_args(), audit_runtime(ConstantModel(np.linspace(1.0, 2.0, 10) / 15.0)))
    assert membership_auc(scores) == 0.5
