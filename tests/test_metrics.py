"""Membership metrics against scikit-learn's own functions and hand-worked answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score, roc_curve

from privaudit.services.attack_worker import intervals, metrics
from privaudit.services.attack_worker.attacks.base import Scores

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


def balance(members: np.ndarray, non_members: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The scores of the records the balanced set keeps."""
    member_kept, non_member_kept = metrics.balanced_indices(len(members), len(non_members), seed)
    return members[member_kept], non_members[non_member_kept]


def test_balancing_subsamples_the_larger_set_reproducibly():
    members, non_members = np.arange(50.0), np.arange(100.0, 110.0)
    kept, untouched = balance(members, non_members, SEED)
    np.testing.assert_array_equal(untouched, non_members)
    assert len(kept) == 10 and len(set(kept)) == 10 and set(kept) <= set(members)
    assert np.all(np.diff(kept) > 0), "records keep their order"
    np.testing.assert_array_equal(kept, balance(members, non_members, SEED)[0])
    assert not np.array_equal(kept, balance(members, non_members, SEED + 1)[0])
    # Whichever side is larger is subsampled by the same draws.
    np.testing.assert_array_equal(balance(non_members, members, SEED)[1], kept)


def test_metrics_of_an_unbalanced_set_are_sklearns_on_its_balanced_subsample():
    rng = np.random.default_rng(1)
    members, non_members = rng.random(70), rng.random(200) * 0.8
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED)
    assert_matches_sklearn(evaluation, *balance(members, non_members, SEED), 0.5)


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
    # A figure's interval and p-value go with it: set when it is, unset when it is not measurable.
    assert message.HasField("tpr_at_1pct_fpr_interval") and message.HasField("tpr_at_1pct_fpr_p_value")
    assert not message.HasField("tpr_at_0_1pct_fpr_interval") and not message.HasField("tpr_at_0_1pct_fpr_p_value")
    interval = evaluation.at_1pct_fpr.interval
    assert (message.tpr_at_1pct_fpr_interval.lower, message.tpr_at_1pct_fpr_interval.upper) == (
        interval.lower, interval.upper)
    assert message.tpr_at_1pct_fpr_p_value == evaluation.at_1pct_fpr.p_value
    assert (message.auc_interval.lower, message.auc_interval.upper) == (
        evaluation.auc_interval.lower, evaluation.auc_interval.upper)
    assert message.HasField("auc_p_value") and message.auc_p_value == evaluation.auc_p_value


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


def test_intervals_and_p_values_are_of_the_balanced_set():
    """Each figure's interval and chance p-value come from the same balanced records and the same
    reading as the figure itself."""
    rng = np.random.default_rng(6)
    members, non_members = rng.normal(1.0, 1, 1500), rng.normal(0, 1, 1100)
    evaluation = metrics.evaluate(Scores(members, non_members, threshold=0.5), SEED)
    kept, kept_non = balance(members, non_members, SEED)
    auc, interval = intervals.auc_with_interval(kept, kept_non)
    assert evaluation.auc == pytest.approx(auc) and evaluation.auc_interval == interval
    assert interval.lower < evaluation.auc < interval.upper
    assert evaluation.auc_p_value == intervals.auc_p_value(kept, kept_non)
    for figure, denominator in ((evaluation.at_1pct_fpr, 100), (evaluation.at_0_1pct_fpr, 1000)):
        budget = 1100 // denominator
        true_positives = intervals.true_positives_within(np.sort(kept), np.sort(kept_non)[::-1], budget)
        assert figure.tpr == true_positives / 1100
        assert figure.p_value == intervals.tpr_p_value(true_positives, 1100, 1100, budget)
        assert figure.interval == intervals.tpr_interval(np.sort(kept), np.sort(kept_non)[::-1], 1 / denominator, SEED)


def test_a_guessing_attack_has_large_p_values_and_a_leaking_one_small():
    rng = np.random.default_rng(7)
    guessing = metrics.evaluate(Scores(rng.random(1000), rng.random(1000), threshold=0.5), SEED)
    leaking = metrics.evaluate(Scores(rng.random(1000) + 0.1, rng.random(1000), threshold=0.5), SEED)
    assert leaking.auc_p_value < 1e-6 < 0.01 < guessing.auc_p_value
    assert guessing.auc_interval.lower < 0.5 < guessing.auc_interval.upper
    assert leaking.at_1pct_fpr.p_value < 1e-6 and leaking.at_1pct_fpr.interval.lower > 0.01


def labelled_scores(rng: np.random.Generator, num_members: int, num_non_members: int) -> Scores:
    """Class 0 leaks, class 1 does not, class 2 has members only, class 3 non-members only."""
    member_labels = rng.choice([0, 1, 2], num_members, p=[0.5, 0.45, 0.05])
    non_member_labels = rng.choice([0, 1, 3], num_non_members, p=[0.5, 0.45, 0.05])
    return Scores(rng.random(num_members) + 0.5 * (member_labels == 0), rng.random(num_non_members), threshold=0.5,
                  member_labels=member_labels, non_member_labels=non_member_labels)


def test_per_class_figures_are_sklearns_on_each_labels_balanced_records():
    rng = np.random.default_rng(8)
    scores = labelled_scores(rng, 700, 500)
    evaluation = metrics.evaluate(scores, SEED)
    member_kept, non_member_kept = metrics.balanced_indices(700, 500, SEED)
    members, member_labels = scores.members[member_kept], scores.member_labels[member_kept]
    non_members, non_member_labels = scores.non_members[non_member_kept], scores.non_member_labels[non_member_kept]
    assert [c.label for c in evaluation.per_class] == [0, 1]  # 2 and 3 lack a side
    for figures in evaluation.per_class:
        class_members = members[member_labels == figures.label]
        class_non_members = non_members[non_member_labels == figures.label]
        assert (figures.num_members, figures.num_non_members) == (len(class_members), len(class_non_members))
        assert figures.auc == pytest.approx(roc_auc_score(*truth_and_scores(class_members, class_non_members)))
        assert figures.auc_interval == intervals.auc_with_interval(class_members, class_non_members)[1]
        fpr, tpr, _ = roc_curve(*truth_and_scores(class_members, class_non_members), drop_intermediate=False)
        assert figures.tpr_at_1pct_fpr == pytest.approx(tpr[fpr <= 0.01].max())
    leaking, chance = evaluation.per_class
    assert leaking.auc_interval.lower > 0.6 and chance.auc_interval.lower < 0.5 < chance.auc_interval.upper
    message = metrics.to_proto(evaluation).per_class
    assert [(c.label, c.num_members, c.num_non_members, c.auc, c.auc_interval.lower, c.auc_interval.upper,
             c.tpr_at_1pct_fpr) for c in message] == [
        (c.label, c.num_members, c.num_non_members, c.auc, c.auc_interval.lower, c.auc_interval.upper,
         c.tpr_at_1pct_fpr) for c in evaluation.per_class]


def test_per_class_tpr_at_1pct_needs_100_non_members_of_the_label():
    rng = np.random.default_rng(9)
    labels = np.r_[np.zeros(100, dtype=np.int64), np.ones(99, dtype=np.int64)]
    evaluation = metrics.evaluate(Scores(rng.random(199), rng.random(199), 0.5, member_labels=labels,
                                         non_member_labels=labels), SEED)
    assert [c.tpr_at_1pct_fpr is not None for c in evaluation.per_class] == [True, False]
    assert [c.HasField("tpr_at_1pct_fpr") for c in metrics.to_proto(evaluation).per_class] == [True, False]


def test_without_labels_there_are_no_per_class_figures():
    rng = np.random.default_rng(10)
    scores = Scores(rng.random(50), rng.random(50), 0.5, member_labels=rng.integers(0, 3, 50))
    assert metrics.evaluate(scores, SEED).per_class == ()
    with pytest.raises(ValueError, match="49 class labels for 50 scores"):
        metrics.evaluate(Scores(rng.random(50), rng.random(50), 0.5, member_labels=np.zeros(49),
                                non_member_labels=np.zeros(50)), SEED)


@pytest.mark.parametrize(("num_members", "num_non_members"), [(700, 500), (300, 800), (60, 60)])
def test_record_scores_round_trip_and_flag_the_balanced_subsample(num_members, num_non_members):
    rng = np.random.default_rng(num_members)
    scores = labelled_scores(rng, num_members, num_non_members)
    result = metrics.to_proto(metrics.evaluate(scores, SEED))
    records = result.record_scores
    np.testing.assert_array_equal(records.members, scores.members)
    np.testing.assert_array_equal(records.non_members, scores.non_members)
    np.testing.assert_array_equal(records.member_labels, scores.member_labels)
    np.testing.assert_array_equal(records.non_member_labels, scores.non_member_labels)
    member_evaluated, non_member_evaluated = np.array(records.member_evaluated), np.array(records.non_member_evaluated)
    kept, kept_non = balance(scores.members, scores.non_members, SEED)
    np.testing.assert_array_equal(scores.members[member_evaluated], kept)
    np.testing.assert_array_equal(scores.non_members[non_member_evaluated], kept_non)
    assert member_evaluated.sum() == non_member_evaluated.sum() == result.metrics.num_members
    # The flagged records alone give back the figures.
    again = metrics.evaluate(Scores(np.array(records.members)[member_evaluated],
                                    np.array(records.non_members)[non_member_evaluated], threshold=0.5), SEED)
    assert (again.auc, again.accuracy) == (result.metrics.auc, result.metrics.accuracy)


def test_record_scores_without_labels_leave_the_labels_empty():
    rng = np.random.default_rng(11)
    records = metrics.to_proto(metrics.evaluate(Scores(rng.random(30), rng.random(20), 0.5), SEED)).record_scores
    assert (len(records.members), len(records.non_members)) == (30, 20)
    assert (len(records.member_labels), len(records.non_member_labels)) == (0, 0)
    assert (sum(records.member_evaluated), sum(records.non_member_evaluated)) == (20, 20)


def test_threshold_source_and_warnings_reach_the_result():
    scores = Scores(np.r_[np.ones(5), np.zeros(5)], np.zeros(10), threshold=0.5,
                    threshold_source="fixed: a correctly labelled record is called a member",
                    warnings=("the attack classifier stopped before it converged", "few shadow records"))
    result = metrics.to_proto(metrics.evaluate(scores, SEED))
    assert result.metrics.threshold_source == scores.threshold_source
    assert list(result.warnings) == list(scores.warnings)
