"""Risk ratings: thresholds at and just below each boundary, not-measurable fallbacks, failed attacks."""

from __future__ import annotations

import pytest
from test_reporter_fixtures import POLICY, failed, make_report, metrics, succeeded

from privaudit.v1 import report_pb2
from services.reporter.figures import RISK_FIGURES
from services.reporter.policy import parse_policy
from services.reporter.risk import Risk, assess, overall_risk, rate

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
    assert at_reason == f"{figure.label} {threshold:.4f} >= {threshold:g}"
    assert below_risk is level_below


def test_unremarkable_auc_with_exposed_records_is_high() -> None:
    risk, reason = rate(metrics(auc=0.51, tpr_1=0.02, tpr_01=0.03), POLICY)
    assert risk is Risk.HIGH
    assert reason == "TPR@0.1%FPR 0.0300 >= 0.02"


def test_every_figure_that_reaches_the_level_is_given() -> None:
    risk, reason = rate(metrics(auc=0.71, tpr_1=0.2, tpr_01=0.0), POLICY)
    assert risk is Risk.HIGH
    assert reason == "AUC 0.7100 >= 0.65 and TPR@1%FPR 0.2000 >= 0.1"


def test_low_reason_lists_each_figure_below_its_middle_threshold() -> None:
    risk, reason = rate(metrics(auc=0.52, tpr_1=0.03, tpr_01=0.002), POLICY)
    assert risk is Risk.LOW
    assert reason == ("below every MIDDLE threshold: AUC 0.5200 < 0.55, TPR@1%FPR 0.0300 < 0.05, "
                      "TPR@0.1%FPR 0.0020 < 0.005")


def test_auc_computed_with_float_noise_counts_as_its_threshold() -> None:
    noisy = 0.95 - 0.4
    assert noisy < 0.55  # 0.5499999999999999
    assert rate(metrics(auc=noisy), POLICY) == (Risk.MIDDLE, "AUC 0.5500 >= 0.55")


def test_without_tpr_at_0_1pct_the_rating_falls_back_to_tpr_at_1pct() -> None:
    risk, reason = rate(metrics(auc=0.5, tpr_1=0.10, tpr_01=None, non_members=500), POLICY)
    assert risk is Risk.HIGH
    assert reason == ("TPR@1%FPR 0.1000 >= 0.1; TPR@0.1%FPR not measurable (needs >= 1000 non-members, "
                      "had 500), so low FPR is judged by TPR@1%FPR")


def test_unset_tpr_is_skipped_not_read_as_zero() -> None:
    """A LOW rating must not cite a missing figure as 0.0000 < threshold."""
    _, reason = rate(metrics(auc=0.5, tpr_1=0.01, tpr_01=None, non_members=500), POLICY)
    assert "TPR@0.1%FPR 0.0000" not in reason
    assert reason.startswith("below every MIDDLE threshold: AUC 0.5000 < 0.55, TPR@1%FPR 0.0100 < 0.05; ")


def test_without_any_low_fpr_figure_the_rating_uses_auc_alone_and_says_so() -> None:
    low_fpr_args = {"tpr_1": None, "tpr_01": None, "non_members": 50}
    risk, reason = rate(metrics(auc=0.6, **low_fpr_args), POLICY)
    assert risk is Risk.MIDDLE
    assert reason == ("AUC 0.6000 >= 0.55; rated on AUC alone: no TPR at low FPR is measurable "
                      "(needs >= 100 non-members, had 50)")
    assert rate(metrics(auc=0.549, **low_fpr_args), POLICY)[0] is Risk.LOW


def test_thresholds_come_from_the_policy_file() -> None:
    lenient = parse_policy(
        "levels:\n"
        "  high: {auc: 0.9, tpr_at_1pct_fpr: 0.9, tpr_at_0_1pct_fpr: 0.9}\n"
        "  middle: {auc: 0.8, tpr_at_1pct_fpr: 0.8, tpr_at_0_1pct_fpr: 0.8}\n"
        "advice: {large_accuracy_gap: 0.5}\n"
        "epsilon_bound: {delta: 1.0e-6}\n"
    )
    assert rate(metrics(auc=0.7, tpr_01=0.5), lenient) == (
        Risk.LOW, "below every MIDDLE threshold: AUC 0.7000 < 0.8, TPR@1%FPR 0.0100 < 0.8, TPR@0.1%FPR 0.5000 < 0.8")


def test_failed_attack_is_not_rated_and_says_why() -> None:
    assessment = assess(failed(1), POLICY)
    assert assessment.risk is None
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
