"""Membership metrics against scikit-learn's own functions and hand-worked answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score, roc_curve

from services.attack_worker import metrics
from services.attack_worker.attacks.base import Scores

SEED = 11


def truth_and_scores(members, non_members) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's view of a balanced set: members are the positive class."""
    return np.r_[np.ones(len(members)), np.zeros(len(non_members))], np.r_[members, non_members]


def assert_matches_sklearn(evaluation: metrics.Evaluation, members, non_members, threshold) -> None:
    y_true, y_score = truth_and_scores(members, non_members)
    called = y_score >= threshold
    fpr, tpr, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    assert evaluation.accuracy == pytest.approx(accuracy_score(y_true, called))
    assert evaluation.precision == pytest.approx(precision_score(y_true, called, zero_division=0))
    assert evaluation.recall == pytest.approx(recall_score(y_true, called))
    assert evaluation.auc == pytest.approx(roc_auc_score(y_true, y_score))
    assert evaluation.advantage == pytest.approx(np.max(tpr - fpr))


def test_tied_scores_match_sklearn_and_the_hand_count():
    members = np.array([0.9, 0.8, 0.8, 0.5, 0.3, 0.3])
    non_members = np.array([0.8, 0.5, 0.5, 0.3, 0.1, 0.1])
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED)
    assert_matches_sklearn(evaluation, members, non_members, 0.5)
    # Called members (score >= 0.5): 4 members, 3 non-members; 3 non-members below.
    assert evaluation.precision == pytest.approx(4 / 7)
    assert evaluation.recall == pytest.approx(4 / 6)
    assert evaluation.accuracy == pytest.approx(7 / 12)
    # The full ROC, ties as single steps, is sent as it is when it is short.
    fpr, tpr, _ = roc_curve(*truth_and_scores(members, non_members), drop_intermediate=False)
    assert evaluation.roc_fpr == tuple(fpr) and evaluation.roc_tpr == tuple(tpr)


def test_random_scores_match_sklearn():
    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.6, 0.2, 300), rng.normal(0.4, 0.2, 300)
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.45), SEED)
    assert_matches_sklearn(evaluation, members, non_members, 0.45)


def test_a_perfect_separator_scores_one_everywhere():
    members, non_members = np.linspace(0.6, 1.0, 200), np.linspace(0.0, 0.4, 200)
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED)
    assert (evaluation.accuracy, evaluation.precision, evaluation.recall) == (1.0, 1.0, 1.0)
    assert (evaluation.auc, evaluation.advantage, evaluation.tpr_at_1pct_fpr) == (1.0, 1.0, 1.0)
    assert_matches_sklearn(evaluation, members, non_members, 0.5)


def test_members_are_the_positive_class():
    """Scores that are higher for non-members give AUC 0, not 1 (AUC with arguments swapped)."""
    evaluation = metrics.evaluate(Scores(np.zeros(50), np.ones(50), threshold=0.5), SEED)
    assert evaluation.auc == 0.0
    assert evaluation.advantage == 0.0


def test_a_single_constant_score_is_chance():
    evaluation = metrics.evaluate(Scores(np.full(120, 0.7), np.full(120, 0.7), threshold=0.5), SEED)
    assert evaluation.auc == 0.5
    assert evaluation.advantage == 0.0
    assert (evaluation.accuracy, evaluation.precision, evaluation.recall) == (0.5, 0.5, 1.0)
    assert evaluation.tpr_at_1pct_fpr == 0.0  # the one step goes straight to (1, 1)


def test_an_unbalanced_set_is_balanced_before_measuring():
    """On a 5:1 member-heavy set, calling everyone a member would score 0.83; balanced, 0.5."""
    members, non_members = np.ones(500), np.ones(100)
    assert accuracy_score(*truth_and_scores(members, non_members)) == pytest.approx(5 / 6)
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED)
    assert (evaluation.num_members, evaluation.num_non_members) == (100, 100)
    assert (evaluation.accuracy, evaluation.precision, evaluation.recall) == (0.5, 0.5, 1.0)


def test_balancing_subsamples_the_larger_set_reproducibly():
    members, non_members = np.arange(50.0), np.arange(100.0, 110.0)
    kept, untouched = metrics.balance(members, non_members, SEED)
    np.testing.assert_array_equal(untouched, non_members)
    assert len(kept) == 10 and len(set(kept)) == 10 and set(kept) <= set(members)
    assert np.all(np.diff(kept) > 0), "records keep their order"
    np.testing.assert_array_equal(kept, metrics.balance(members, non_members, SEED)[0])
    assert not np.array_equal(kept, metrics.balance(members, non_members, SEED + 1)[0])
    # Whichever side is larger is subsampled by the same draws.
    np.testing.assert_array_equal(metrics.balance(non_members, members, SEED)[1], kept)


def test_metrics_of_an_unbalanced_set_are_sklearns_on_its_balanced_subsample():
    rng = np.random.default_rng(1)
    members, non_members = rng.random(70), rng.random(200) * 0.8
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED)
    assert_matches_sklearn(evaluation, *metrics.balance(members, non_members, SEED), 0.5)


def test_precision_with_no_record_called_a_member_is_zero():
    evaluation = metrics.evaluate(Scores(np.full(10, 0.2), np.full(10, 0.1), threshold=0.5), SEED)
    assert (evaluation.precision, evaluation.recall, evaluation.accuracy) == (0.0, 0.0, 0.5)


@pytest.mark.parametrize(("non_members", "at_1pct", "at_0_1pct"),
                         [(99, False, False), (100, True, False), (999, True, False), (1000, True, True)])
def test_low_fpr_figures_below_the_sets_resolution_are_not_measurable(non_members, at_1pct, at_0_1pct):
    rng = np.random.default_rng(2)
    evaluation = metrics.evaluate(Scores(rng.random(non_members) + 0.5, rng.random(non_members), 0.5), SEED)
    assert (evaluation.tpr_at_1pct_fpr is not None) == at_1pct
    assert (evaluation.tpr_at_0_1pct_fpr is not None) == at_0_1pct


def test_tpr_at_low_fpr_reads_whole_tie_steps_only():
    """Members: 30 at 0.99, 30 at 0.9, 40 at 0.1. Non-members: 1 at 0.95, 5 at 0.9 (tied with 30
    members), 94 at 0.0. The ROC goes (0, .3) -> (.01, .3) -> (.06, .6): at FPR <= 1% the TPR is 0.3,
    neither 0.6 (counting the tie that crosses the bound) nor 0 (dropping the points before it)."""
    members = np.r_[np.full(30, 0.99), np.full(30, 0.9), np.full(40, 0.1)]
    non_members = np.r_[0.95, np.full(5, 0.9), np.zeros(94)]
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED)
    fpr, tpr, _ = roc_curve(*truth_and_scores(members, non_members), drop_intermediate=False)
    assert evaluation.tpr_at_1pct_fpr == pytest.approx(0.3) == tpr[fpr <= 0.01].max()


def test_a_tie_straddling_the_bound_is_not_interpolated():
    """5 non-members tied with 30 members at the top: the first step is (0, 0) -> (.05, .3). Breaking
    the tie at random would claim TPR .06 at FPR 1%; no threshold actually achieves more than 0."""
    members = np.r_[np.full(30, 0.9), np.full(70, 0.2)]
    non_members = np.r_[np.full(5, 0.9), np.zeros(95)]
    assert metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED).tpr_at_1pct_fpr == 0.0


def test_a_long_roc_is_thinned_keeping_ends_and_order():
    rng = np.random.default_rng(3)
    members, non_members = rng.random(3000) + 0.2, rng.random(3000)
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED)
    fpr, tpr, _ = roc_curve(*truth_and_scores(members, non_members), drop_intermediate=False)
    assert len(fpr) > metrics.MAX_ROC_POINTS >= len(evaluation.roc_fpr) > metrics.MAX_ROC_POINTS // 2
    assert (evaluation.roc_fpr[0], evaluation.roc_tpr[0]) == (0.0, 0.0)
    assert (evaluation.roc_fpr[-1], evaluation.roc_tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(evaluation.roc_fpr) >= 0) and np.all(np.diff(evaluation.roc_tpr) >= 0)
    assert set(zip(evaluation.roc_fpr, evaluation.roc_tpr, strict=True)) <= set(zip(fpr, tpr, strict=True))
    # The low-FPR end, which log-log plots and the reporter's epsilon bound read, is kept whole.
    assert evaluation.roc_fpr[:10] == tuple(fpr[:10]) and evaluation.roc_tpr[:10] == tuple(tpr[:10])


def test_scores_must_be_finite():
    with pytest.raises(ValueError, match="finite"):
        metrics.evaluate(Scores(np.array([0.5, np.nan]), np.array([0.1, 0.2]), threshold=0.5), SEED)


def test_to_proto_leaves_not_measurable_figures_unset():
    rng = np.random.default_rng(4)
    evaluation = metrics.evaluate(Scores(rng.random(150) + 0.3, rng.random(150), threshold=0.5), SEED)
    result = metrics.to_proto(evaluation)
    message = result.metrics
    assert message.HasField("tpr_at_1pct_fpr") and not message.HasField("tpr_at_0_1pct_fpr")
    assert message.tpr_at_1pct_fpr == evaluation.tpr_at_1pct_fpr
    assert (message.num_members, message.num_non_members) == (150, 150)
    assert (message.accuracy, message.auc, message.decision_threshold) == (evaluation.accuracy, evaluation.auc, 0.5)
    assert [(p.fpr, p.tpr) for p in result.roc] == list(zip(evaluation.roc_fpr, evaluation.roc_tpr, strict=True))
    assert [(r.index, r.score) for r in result.most_exposed] == list(evaluation.most_exposed)
    histogram = result.score_histogram
    assert (tuple(histogram.edges), tuple(histogram.member_counts), tuple(histogram.non_member_counts)) == (
        evaluation.histogram.edges, evaluation.histogram.member_counts, evaluation.histogram.non_member_counts)


def test_most_exposed_are_the_top_members_of_the_whole_set_ties_by_index():
    """Ranked over all 30 members, not the 10 the balanced set keeps; equal scores keep dataset order."""
    members = np.zeros(30)
    members[[4, 25, 7, 12]] = [0.9, 0.9, 0.95, 0.9]
    evaluation = metrics.evaluate(Scores(members, np.zeros(10), threshold=0.5), SEED)
    assert evaluation.num_members == 10
    assert len(evaluation.most_exposed) == metrics.MOST_EXPOSED == 20
    assert evaluation.most_exposed[:6] == ((7, 0.95), (4, 0.9), (12, 0.9), (25, 0.9), (0, 0.0), (1, 0.0))
    assert [index for index, _ in evaluation.most_exposed[4:]] == [0, 1, 2, 3, 5, 6, *range(8, 12), *range(13, 19)]


def test_most_exposed_lists_every_member_of_a_small_set():
    assert metrics.most_exposed(np.array([0.2, 0.7, 0.2])) == ((1, 0.7), (0, 0.2), (2, 0.2))


def test_histogram_counts_the_balanced_sets_over_shared_bins():
    members, non_members = np.array([0.0, 0.5, 0.5, 1.0]), np.array([0.0, 0.0, 0.1, 0.2])
    histogram = metrics.histogram(members, non_members, bins=4)
    assert histogram.edges == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert histogram.member_counts == (1, 0, 2, 1)  # 1.0 falls in the last bin, 0.5 in [0.5, 0.75)
    assert histogram.non_member_counts == (4, 0, 0, 0)


def test_histogram_of_an_evaluation_sums_to_the_balanced_sizes():
    rng = np.random.default_rng(5)
    evaluation = metrics.evaluate(Scores(rng.random(80), rng.random(50), threshold=0.5), SEED)
    histogram = evaluation.histogram
    assert len(histogram.edges) == metrics.HISTOGRAM_BINS + 1
    assert len(histogram.member_counts) == len(histogram.non_member_counts) == metrics.HISTOGRAM_BINS
    assert (sum(histogram.member_counts), sum(histogram.non_member_counts)) == (50, 50)


def test_histogram_of_one_repeated_score_is_one_unit_wide():
    histogram = metrics.histogram(np.full(5, 0.7), np.full(5, 0.7), bins=2)
    assert histogram.edges == pytest.approx((0.2, 0.7, 1.2))
    assert (histogram.member_counts, histogram.non_member_counts) == ((0, 5), (0, 5))
