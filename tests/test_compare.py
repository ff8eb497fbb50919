"""compare(): known answers worked by hand, a report against itself, unmatched and failed attacks,
and the false-alarm rate of two runs of an unchanged model (simulated with the worker's DeLong)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from test_reporter_fixtures import failed, make_report, succeeded

from privaudit.services.attack_worker.intervals import auc_with_interval
from privaudit.services.reporter.compare import ALPHA, compare
from privaudit.services.reporter.render_json import audit_report
from privaudit.services.reporter.report_model import AttackReport, AuditReport, Interval


def _report(*results, task_id: str = "task-1") -> AuditReport:
    return audit_report(make_report(*results, task_id=task_id))


def _with_risk(report: AuditReport, risk: str) -> AuditReport:
    return report.model_copy(update={"attacks": [a.model_copy(update={"risk": risk}) for a in report.attacks]})


def test_a_report_compared_with_itself_changes_nothing() -> None:
    report = _report(succeeded(0, auc=0.7, tpr_1=0.2), failed(1), succeeded(2, "LABEL-ONLY", auc=0.6))
    comparison = compare(report, report)
    assert not comparison.regressed and comparison.unmatched == []
    assert comparison.baseline_task_id == "task-1"
    assert comparison.baseline_generated_at == report.provenance.generated_at
    assert [a.index for a in comparison.attacks] == [0, 1, 2]
    for attack, original in zip(comparison.attacks, report.attacks, strict=True):
        assert (attack.risk_before, attack.risk_after, attack.regressed) == (original.risk, original.risk, False)
        for change in (attack.auc, attack.tpr_at_1pct_fpr):
            assert not change.beyond_noise and change.direction == "unchanged"
            assert change.delta in (0.0, None) and change.z in (0.0, None)
    assert comparison.attacks[1].auc.old is None  # the failed attack has nothing to compare


def test_auc_drop_known_answer_from_the_intervals() -> None:
    """AUC 0.70 [0.66, 0.74] -> 0.60 [0.56, 0.64]: se = 0.04 / 1.95996 = 0.020408 each, combined
    0.028862, z = -0.1 / 0.028862 = -3.4648; two figures compared: critical value
    Phi^-1(1 - 0.05 / 4) = 2.2414, so the drop is beyond noise, and better for privacy."""
    comparison = compare(_report(succeeded(0, auc=0.7)), _report(succeeded(0, auc=0.6)))
    auc = comparison.attacks[0].auc
    assert (auc.old, auc.new) == (0.7, 0.6)
    assert auc.delta == pytest.approx(-0.1)
    assert auc.z == pytest.approx(-3.4648, abs=1e-4)
    assert (auc.beyond_noise, auc.direction) == (True, "better")
    assert "2.24" in comparison.method and str(norm.isf(ALPHA / 4))[:4] == "2.24"
    assert not comparison.regressed  # the TPR did not move: 0.01 on both sides
    assert comparison.attacks[0].tpr_at_1pct_fpr.z == 0


def test_small_auc_rise_is_noise() -> None:
    """0.60 -> 0.65 with the same intervals: z = 0.05 / 0.028862 = 1.7324 < 2.2414."""
    auc = compare(_report(succeeded(0, auc=0.6)), _report(succeeded(0, auc=0.65))).attacks[0].auc
    assert auc.z == pytest.approx(1.7324, abs=1e-4)
    assert (auc.beyond_noise, auc.direction) == (False, "unchanged")


def test_tpr_rise_without_intervals_known_answer() -> None:
    """TPR@1%FPR 0.02 -> 0.10 over 1000 members, no intervals (an older worker): binomial se
    0.004427 and 0.009487, combined 0.010469, below the pooled two-proportion se
    sqrt(0.06 * 0.94 * 2 / 1000) = 0.010621, which is used: z = 0.08 / 0.010621 = 7.532. AUC 0.5 on
    both sides: Hanley-McNeil's se at AUC 0.5 is the Mann-Whitney null's, sqrt(2001 / 12e6)."""
    old = _report(succeeded(0, auc=0.5, tpr_1=0.02, intervals=False))
    new = _report(succeeded(0, auc=0.5, tpr_1=0.10, intervals=False))
    attack = compare(old, new).attacks[0]
    assert attack.tpr_at_1pct_fpr.z == pytest.approx(7.532, abs=1e-3)
    assert attack.tpr_at_1pct_fpr.direction == "worse"
    assert attack.regressed
    assert (attack.auc.delta, attack.auc.z) == (0.0, 0.0)
    heavier = compare(old, _report(succeeded(0, auc=0.53, tpr_1=0.02, intervals=False))).attacks[0].auc
    assert heavier.z == pytest.approx(0.03 / math.hypot(math.sqrt(2001 / 12e6), _hanley_mcneil(0.53, 1000)),
                                      rel=1e-9)


def _hanley_mcneil(auc: float, n: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return math.sqrt((auc * (1 - auc) + (n - 1) * (q1 + q2 - 2 * auc**2)) / n**2)


def test_a_clipped_interval_gives_its_unclipped_side() -> None:
    """TPR 0.01 [0, 0.05]: se = 0.04 / 1.96 (not 0.05 / 2 / 1.96)."""
    old, new = _report(succeeded(0, tpr_1=0.01)), _report(succeeded(0, tpr_1=0.3))
    tpr = compare(old, new).attacks[0].tpr_at_1pct_fpr
    assert tpr.z == pytest.approx(0.29 / math.hypot(0.04 / 1.959964, 0.04 / 1.959964), rel=1e-5)


def test_zero_width_tprs_do_not_make_any_change_significant() -> None:
    def zero_width(tpr: float) -> AuditReport:
        report = _report(succeeded(0, tpr_1=tpr, non_members=200))
        attack = report.attacks[0]
        metrics = attack.metrics.model_copy(update={"tpr_at_1pct_fpr_interval": Interval(lower=tpr, upper=tpr)})
        return report.model_copy(update={"attacks": [attack.model_copy(update={"metrics": metrics})]})

    unchanged = compare(zero_width(0.0), zero_width(0.0)).attacks[0].tpr_at_1pct_fpr
    assert (unchanged.z, unchanged.beyond_noise) == (0.0, False)
    tpr = compare(zero_width(0.0), zero_width(0.01)).attacks[0].tpr_at_1pct_fpr
    # pooled rate 0.005 over 200 + 200 members: se = sqrt(0.005 * 0.995 * 0.01) = 0.0070534
    assert tpr.z == pytest.approx(0.01 / 0.0070534, rel=1e-4)
    assert not tpr.beyond_noise


def test_a_risen_risk_is_a_regression_even_within_noise() -> None:
    report = _report(succeeded(0, auc=0.6))
    comparison = compare(_with_risk(report, "LOW"), _with_risk(report, "MIDDLE"))
    attack = comparison.attacks[0]
    assert (attack.risk_before, attack.risk_after, attack.regressed, comparison.regressed) == (
        "LOW", "MIDDLE", True, True)
    assert not compare(_with_risk(report, "HIGH"), _with_risk(report, "MIDDLE")).regressed


def test_attacks_pair_by_index_and_name_and_the_rest_is_listed() -> None:
    old = _report(succeeded(0, auc=0.7), succeeded(1, "ML-LEAK", auc=0.7))
    new = _report(succeeded(0, auc=0.7), succeeded(1, "LABEL-ONLY", auc=0.7), succeeded(2, auc=0.7))
    comparison = compare(old, new)
    assert [(a.index, a.name) for a in comparison.attacks] == [(0, "BASELINE")]
    assert comparison.unmatched == ["ML-LEAK (attacks[1]) only in the baseline",
                                    "LABEL-ONLY (attacks[1]) only in the new report",
                                    "BASELINE (attacks[2]) only in the new report"]
    assert "2.24" in comparison.method  # two figures compared: attack 0's AUC and TPR


def test_an_attack_failed_on_one_side_is_not_rated_and_not_a_regression() -> None:
    comparison = compare(_report(failed(0, "BASELINE")), _report(succeeded(0, auc=0.9)))
    attack = comparison.attacks[0]
    assert (attack.risk_before, attack.risk_after, attack.regressed) == ("UNRATED", "HIGH", False)
    assert (attack.auc.old, attack.auc.new, attack.auc.delta, attack.auc.beyond_noise) == (None, 0.9, None, False)


def _simulated_report(rng: np.random.Generator, separation: float, base: AuditReport) -> AuditReport:
    """`base` with the AUC and DeLong interval of `separation`-shifted normal scores of its set."""
    attack: AttackReport = base.attacks[0]
    n = attack.metrics.num_members
    auc, interval = auc_with_interval(rng.normal(separation, 1, n), rng.normal(0, 1, n))
    metrics = attack.metrics.model_copy(update={"auc": auc, "auc_interval": Interval(lower=interval.lower,
                                                                                    upper=interval.upper)})
    return base.model_copy(update={"attacks": [attack.model_copy(update={"metrics": metrics})]})


def test_two_runs_of_an_unchanged_model_rarely_differ_beyond_noise_and_a_real_change_is_found() -> None:
    """Independent evaluation sets of one model (members shifted by 0.5 sd, AUC about 0.64): at most
    about alpha of the pairs may be flagged; a model shifted by 0.8 instead (AUC about 0.71) is."""
    rng = np.random.default_rng(18)
    base = _report(succeeded(0, tpr_1=None, tpr_01=None, non_members=500))
    pairs = 300
    alarms = sum(compare(_simulated_report(rng, 0.5, base), _simulated_report(rng, 0.5, base)).attacks[0]
                 .auc.beyond_noise for _ in range(pairs))
    assert alarms <= 0.05 * pairs + 3 * math.sqrt(0.05 * 0.95 * pairs)  # 15 + 11: alpha plus 3 sd
    found = sum(compare(_simulated_report(rng, 0.5, base), _simulated_report(rng, 0.8, base)).attacks[0]
                .auc.direction == "worse" for _ in range(50))
    assert found >= 45
