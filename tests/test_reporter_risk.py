"""Risk ratings: thresholds at and just below each boundary, the chance test, not-measurable
fallbacks, failed attacks. (tests/test_risk_simulation.py checks the chance test's promise.)"""

from __future__ import annotations

import pytest
from test_reporter_fixtures import HALF_WIDTH, POLICY, failed, make_report, metrics, succeeded

from privaudit.services.reporter.figures import RISK_FIGURES
from privaudit.services.reporter.policy import parse_policy
from privaudit.services.reporter.risk import Risk, assess, overall_risk, rate
from privaudit.v1 import report_pb2

# Metric argument names of the helper, per policy figure.
_ARG = {"auc": "auc", "tpr_at_1pct_fpr": "tpr_1", "tpr_at_0_1pct_fpr": "tpr_01"}
_BELOW = 1e-4
_LEVELS = [(Risk.HIGH, POLICY.levels.high, Risk.MIDDLE), (Risk.MIDDLE, POLICY.levels.middle, Risk.LOW)]


@pytest.mark.parametrize("figure", RISK_FIGURES, ids=lambda f: f.field)
@pytest.mark.parametrize(("level", "thresholds", "level_below"), _LEVELS, ids=["high", "middle"])
def test_each_figure_alone_decides_at_its_threshold(figure, level, thresholds, level_below) -> None:
    """Every other figure at chance: exactly at the threshold reaches the level, just below does not."""
    threshold = getattr(thresholds, figure.field)
    at_risk, at_reason = rate(metrics(**{_ARG[figure.field]: threshold}), POLICY)
    below_risk, _ = rate(metrics(**{_ARG[figure.field]: threshold - _BELOW}), POLICY)
    assert at_risk is level
    assert at_reason == (f"{figure.label} {threshold:.4f} {_interval(threshold)} >= {threshold:g}, "
                         "beyond chance (p = 1e-06)")
    assert below_risk is level_below


def _interval(value: float) -> str:
    """How the helpers' interval around `value` is printed."""
    return f"[{max(value - HALF_WIDTH, 0):.4f}, {min(value + HALF_WIDTH, 1):.4f}]"


def test_unremarkable_auc_with_exposed_records_is_high() -> None:
    risk, reason = rate(metrics(auc=0.51, tpr_1=0.02, tpr_01=0.03), POLICY)
    assert risk is Risk.HIGH
    assert reason == "TPR@0.1%FPR 0.0300 [0.0000, 0.0700] >= 0.02, beyond chance (p = 1e-06)"


def test_every_figure_that_reaches_the_level_is_given() -> None:
    risk, reason = rate(metrics(auc=0.71, tpr_1=0.2, tpr_01=0.0, auc_p=3e-12, tpr_1_p=0.004), POLICY)
    assert risk is Risk.HIGH
    assert reason == ("AUC 0.7100 [0.6700, 0.7500] >= 0.65, beyond chance (p = 3e-12) and "
                      "TPR@1%FPR 0.2000 [0.1600, 0.2400] >= 0.1, beyond chance (p = 0.004)")


def test_low_reason_lists_each_figure_below_its_middle_threshold() -> None:
    risk, reason = rate(metrics(auc=0.52, tpr_1=0.03, tpr_01=0.002, intervals=False), POLICY)
    assert risk is Risk.LOW
    assert reason == ("below every MIDDLE threshold: AUC 0.5200 < 0.55, TPR@1%FPR 0.0300 < 0.05, "
                      "TPR@0.1%FPR 0.0020 < 0.005")


def test_auc_computed_with_float_noise_counts_as_its_threshold() -> None:
    noisy = 0.95 - 0.4
    assert noisy < 0.55  # 0.5499999999999999
    assert rate(metrics(auc=noisy, intervals=False), POLICY) == (Risk.MIDDLE, "AUC 0.5500 >= 0.55, beyond chance "
                                                                              "(p = 1e-06)")


def test_without_tpr_at_0_1pct_the_rating_falls_back_to_tpr_at_1pct() -> None:
    risk, reason = rate(metrics(auc=0.5, tpr_1=0.10, tpr_01=None, non_members=500, intervals=False), POLICY)
    assert risk is Risk.HIGH
    assert reason == ("TPR@1%FPR 0.1000 >= 0.1, beyond chance (p = 1e-06); TPR@0.1%FPR not measurable (needs >= "
                      "1000 non-members, had 500), so low FPR is judged by TPR@1%FPR")


def test_unset_tpr_is_skipped_not_read_as_zero() -> None:
    """A LOW rating must not cite a missing figure as 0.0000 < threshold."""
    _, reason = rate(metrics(auc=0.5, tpr_1=0.01, tpr_01=None, non_members=500, intervals=False), POLICY)
    assert "TPR@0.1%FPR 0.0000" not in reason
    assert reason.startswith("below every MIDDLE threshold: AUC 0.5000 < 0.55, TPR@1%FPR 0.0100 < 0.05; ")


def test_without_any_low_fpr_figure_the_rating_uses_auc_alone_and_says_so() -> None:
    low_fpr_args = {"tpr_1": None, "tpr_01": None, "non_members": 50, "intervals": False}
    risk, reason = rate(metrics(auc=0.6, **low_fpr_args), POLICY)
    assert risk is Risk.MIDDLE
    assert reason == ("AUC 0.6000 >= 0.55, beyond chance (p = 1e-06); rated on AUC alone: no TPR at low FPR is "
                      "measurable (needs >= 100 non-members, had 50)")
    assert rate(metrics(auc=0.549, **low_fpr_args), POLICY)[0] is Risk.LOW


def test_thresholds_come_from_the_policy_file() -> None:
    lenient = parse_policy(
        "levels:\n"
        "  high: {auc: 0.9, tpr_at_1pct_fpr: 0.9, tpr_at_0_1pct_fpr: 0.9}\n"
        "  middle: {auc: 0.8, tpr_at_1pct_fpr: 0.8, tpr_at_0_1pct_fpr: 0.8}\n"
        "beyond_chance: {alpha: 0.01}\n"
        "advice: {large_accuracy_gap: 0.5}\n"
        "epsilon_estimate: {delta: 1.0e-6}\n"
    )
    assert rate(metrics(auc=0.9, auc_p=0.004), lenient)[0] is Risk.LOW  # 0.004 > 0.01 / 3
    assert rate(metrics(auc=0.7, tpr_01=0.5, intervals=False), lenient) == (
        Risk.LOW, "below every MIDDLE threshold: AUC 0.7000 < 0.8, TPR@1%FPR 0.0100 < 0.8, TPR@0.1%FPR 0.5000 < 0.8")


def test_a_figure_over_its_threshold_but_within_chance_does_not_count() -> None:
    """The example of the policy file: 0.03 > 0.05 / 3 with three figures measured."""
    risk, reason = rate(metrics(auc=0.58, auc_p=0.03), POLICY)
    assert risk is Risk.LOW
    assert reason == ("nothing reaches MIDDLE beyond chance: AUC 0.5800 [0.5400, 0.6200] reaches 0.55 but is within "
                      "chance at this size (p = 0.03 > 0.0167), TPR@1%FPR 0.0100 [0.0000, 0.0500] < 0.05, "
                      "TPR@0.1%FPR 0.0010 [0.0000, 0.0410] < 0.005")


@pytest.mark.parametrize(("non_members", "tpr_args", "significance"), [
    (50, {"tpr_1": None, "tpr_01": None}, 0.05),
    (500, {"tpr_01": None}, 0.025),
    (1000, {}, 0.05 / 3),
], ids=["AUC alone", "two figures", "three figures"])
def test_the_chance_level_is_alpha_over_the_figures_measured(non_members, tpr_args, significance) -> None:
    """At alpha / m a figure counts (even when the division rounds below it); just above, it does not."""
    def rated(p_value: float) -> Risk:
        return rate(metrics(auc=0.6, auc_p=p_value, non_members=non_members, **tpr_args), POLICY)[0]

    assert significance == pytest.approx(assess(succeeded(0, auc=0.6, non_members=non_members, **tpr_args),
                                                POLICY).significance)
    assert rated(significance) is Risk.MIDDLE
    assert rated(significance * 1.001) is Risk.LOW


def test_a_p_value_that_underflowed_to_zero_is_not_stated_as_zero() -> None:
    assert rate(metrics(auc=0.9, auc_p=0.0, intervals=False), POLICY) == (
        Risk.HIGH, "AUC 0.9000 >= 0.65, beyond chance (p < 1e-300)")


def test_a_figure_held_back_by_chance_is_named_beside_the_level_another_reaches() -> None:
    risk, reason = rate(metrics(auc=0.7, auc_p=0.2, tpr_1=0.06, tpr_1_p=1e-4), POLICY)
    assert risk is Risk.MIDDLE
    assert reason == ("TPR@1%FPR 0.0600 [0.0200, 0.1000] >= 0.05, beyond chance (p = 0.0001); "
                      "AUC 0.7000 [0.6600, 0.7400] reaches 0.65 but is within chance at this size (p = 0.2 > 0.0167)")


def test_a_result_without_p_values_is_never_beyond_chance_and_says_why() -> None:
    """Results of workers older than the p-value fields: the threshold alone is not evidence."""
    risk, reason = rate(metrics(auc=0.9, tpr_1=0.5, tpr_01=None, non_members=500, auc_p=None, tpr_1_p=None,
                                intervals=False), POLICY)
    assert risk is Risk.LOW
    assert reason.startswith(
        "nothing reaches MIDDLE beyond chance: AUC 0.9000 reaches 0.65 but has no chance p-value (the result comes "
        "from a worker older than that field), so it does not count as beyond chance, TPR@1%FPR 0.5000 reaches 0.1 "
        "but has no chance p-value")


def test_failed_attack_is_not_rated_and_says_why() -> None:
    assessment = assess(failed(1), POLICY)
    assert (assessment.risk, assessment.significance) == (None, None)
    assert assessment.reason == "not rated: the attack failed (INVALID_ARGUMENT at attacks[1].args.shadow_model)"
    assert assessment.to_proto().risk == report_pb2.RISK_LEVEL_UNSPECIFIED


def test_failed_attacks_never_count_towards_overall_risk() -> None:
    report = make_report(failed(0, field=""), succeeded(1, auc=0.5), failed(2))
    assert report.overall_risk is Risk.LOW
    summary = report.summary_proto()
    assert summary.overall_risk == report_pb2.RISK_LEVEL_LOW
    assert [a.risk for a in summary.attacks] == [
        report_pb2.RISK_LEVEL_UNSPECIFIED, report_pb2.RISK_LEVEL_LOW, report_pb2.RISK_LEVEL_UNSPECIFIED]
    assert summary.failed_attacks == 2
    assert summary.attacks[0].reason == "not rated: the attack failed (INVALID_ARGUMENT)"


def test_no_successful_attack_leaves_overall_risk_unspecified() -> None:
    report = make_report(failed(0), failed(1))
    assert report.overall_risk is None
    assert report.summary_proto().overall_risk == report_pb2.RISK_LEVEL_UNSPECIFIED


def test_overall_risk_is_the_worst_attack() -> None:
    report = make_report(succeeded(0, auc=0.6), succeeded(1, "ML-LEAK", auc=0.7), succeeded(2, "LABEL-ONLY"))
    assert [e.assessment.risk for e in report.attacks] == [Risk.MIDDLE, Risk.HIGH, Risk.LOW]
    assert report.overall_risk is Risk.HIGH
    assert overall_risk([]) is None


def test_risk_values_are_the_proto_enum() -> None:
    assert [int(r) for r in Risk] == [report_pb2.RISK_LEVEL_LOW, report_pb2.RISK_LEVEL_MIDDLE,
                                      report_pb2.RISK_LEVEL_HIGH]
