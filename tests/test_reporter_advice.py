"""Advice: which recommendations a finding brings, their fixed order, and the notes."""

from __future__ import annotations

from test_reporter_fixtures import POLICY, failed, make_report, succeeded

from privaudit.services.reporter.advice import NO_LEAK_NOTE, NOTHING_RATED_NOTE
from privaudit.services.reporter.epsilon_terms import ASSUMPTION
from privaudit.services.reporter.report import Report

HIGH_AUC, MIDDLE_AUC = 0.7, 0.6
GAP = POLICY.advice.large_accuracy_gap


def _ids(report: Report) -> list[str]:
    return [r.id for r in report.advice.recommendations]


def test_everything_in_its_fixed_order_when_a_score_attack_is_high_and_the_gap_large() -> None:
    report = make_report(succeeded(0, "LABEL-ONLY", auc=MIDDLE_AUC, train_acc=1.0, test_acc=0.8, separation=2.0),
                         succeeded(1, "ML-LEAK", auc=HIGH_AUC, train_acc=1.0, test_acc=0.8, separation=1.0))
    assert _ids(report) == ["differential_privacy", "confidence_masking", "regularisation", "knowledge_distillation"]
    why = {r.id: r.why for r in report.advice.recommendations}
    assert why["differential_privacy"].startswith(
        "Overall risk is HIGH (LABEL-ONLY (attacks[0]) rated MIDDLE, ML-LEAK (attacks[1]) rated HIGH)")
    # The more separated scores give the larger estimate.
    estimate = report.attacks[0].epsilon.epsilon
    assert estimate > report.attacks[1].epsilon.epsilon > 0
    assert why["differential_privacy"].endswith(
        f"LABEL-ONLY (attacks[0]) gives an empirical epsilon estimate of {estimate:.4f} at delta = 1e-05: if "
        f"{ASSUMPTION}, any DP guarantee of this training would need epsilon of at least that (95% confidence), and "
        "a budget below it would rule out what the attack achieved here. Unless the audited members were chosen that "
        "way, it is an estimate, not a proof; stronger attacks may push it higher.")
    assert why["confidence_masking"] == (
        "Attacks reading confidence scores succeeded: ML-LEAK (attacks[1]) rated HIGH. "
        "It will not stop the label-only attacks: LABEL-ONLY (attacks[0]).")
    assert why["regularisation"] == (
        "digits_mlp has train_acc 1.0000 and test_acc 0.8000, a gap of 0.2000 >= 0.1.")
    assert why["knowledge_distillation"].startswith("Risk is HIGH (ML-LEAK (attacks[1]) rated HIGH)")
    assert report.advice.notes == ()
    assert all(r.title and r.description for r in report.advice.recommendations)


def test_confidence_masking_for_ml_leak_at_middle() -> None:
    report = make_report(succeeded(0, "ML-LEAK", auc=MIDDLE_AUC))
    assert _ids(report) == ["differential_privacy", "confidence_masking"]


def test_no_confidence_masking_when_only_label_only_attacks_are_risky_and_the_note_says_so() -> None:
    report = make_report(succeeded(0, "BASELINE", auc=MIDDLE_AUC), succeeded(1, "ML-LEAK", auc=0.5),
                         succeeded(2, "LABEL-ONLY", auc=HIGH_AUC))
    assert _ids(report) == ["differential_privacy", "knowledge_distillation"]
    assert report.advice.notes == (
        "Confidence masking is not recommended: the attacks rated MIDDLE or HIGH (BASELINE (attacks[0]), "
        "LABEL-ONLY (attacks[2])) read predicted labels only, which masking leaves intact.",)


def test_an_unknown_attack_brings_no_claim_about_masking() -> None:
    report = make_report(succeeded(0, "SOME-NEW-ATTACK", auc=MIDDLE_AUC))
    assert _ids(report) == ["differential_privacy"]
    assert report.advice.notes == ()


def test_regularisation_from_the_gap_threshold_on() -> None:
    at = make_report(succeeded(0, auc=MIDDLE_AUC, train_acc=0.95, test_acc=0.95 - GAP))
    below = make_report(succeeded(0, auc=MIDDLE_AUC, train_acc=0.95, test_acc=0.95 - GAP + 1e-4))
    assert "regularisation" in _ids(at)
    assert "regularisation" not in _ids(below)


def test_the_widest_gap_among_the_models_is_named() -> None:
    report = make_report(succeeded(0, auc=MIDDLE_AUC, model="small", train_acc=0.9, test_acc=0.88),
                         succeeded(1, auc=0.5, model="big", train_acc=1.0, test_acc=0.7))
    (regularisation,) = [r for r in report.advice.recommendations if r.id == "regularisation"]
    assert regularisation.why.startswith("big has train_acc 1.0000 and test_acc 0.7000, a gap of 0.3000")


def test_all_low_gives_no_recommendation_and_says_no_leakage_was_measured() -> None:
    report = make_report(succeeded(0, auc=0.5, train_acc=1.0, test_acc=0.5), succeeded(1, "ML-LEAK"), failed(2))
    assert _ids(report) == []
    assert report.advice.notes == (NO_LEAK_NOTE,)
    assert "no measurable membership leakage" in NO_LEAK_NOTE
    assert "not measurable was not checked" in NO_LEAK_NOTE


def test_nothing_rated_gives_no_recommendation() -> None:
    report = make_report(failed(0), failed(1))
    assert _ids(report) == []
    assert report.advice.notes == (NOTHING_RATED_NOTE,)


def test_same_findings_same_advice_whatever_order_results_arrive_in() -> None:
    results = [succeeded(0, "LABEL-ONLY", auc=MIDDLE_AUC, train_acc=1.0, test_acc=0.7),
               succeeded(1, "ML-LEAK", auc=HIGH_AUC), failed(2)]
    first = make_report(*results).advice
    assert make_report(*results).advice == first
    assert make_report(*reversed(results)).advice == first


def test_dp_advice_names_the_attack_with_the_largest_epsilon_estimate() -> None:
    """Attack 1's scores are further apart; its estimate is the larger, whatever the risk levels."""
    report = make_report(succeeded(0, auc=MIDDLE_AUC, separation=0.5),
                         succeeded(1, "LABEL-ONLY", auc=0.5, separation=1.5), succeeded(2, separation=None))
    (dp,) = [r for r in report.advice.recommendations if r.id == "differential_privacy"]
    assert report.strongest_estimate is report.attacks[1]
    assert report.attacks[1].epsilon.epsilon > report.attacks[0].epsilon.epsilon > 0
    assert f"LABEL-ONLY (attacks[1]) gives an empirical epsilon estimate of " \
           f"{report.attacks[1].epsilon.epsilon:.4f} at delta = 1e-05" in dp.why


def test_dp_advice_says_when_no_estimate_rules_anything_out() -> None:
    attack = succeeded(0, auc=MIDDLE_AUC)
    attack.record_scores.members[:] = [0.0] * len(attack.record_scores.members)
    attack.record_scores.non_members[:] = [0.0] * len(attack.record_scores.non_members)
    (dp,) = [r for r in make_report(attack).advice.recommendations if r.id == "differential_privacy"]
    assert dp.why.endswith("No attack's empirical epsilon estimate rules out any budget at delta = 1e-05 (95% "
                           "confidence) on evaluation sets of this size, so it gives no guide to choosing one.")


def test_dp_advice_without_any_estimate_says_so() -> None:
    (dp,) = [r for r in make_report(succeeded(0, auc=MIDDLE_AUC, separation=None)).advice.recommendations
             if r.id == "differential_privacy"]
    assert dp.why.endswith("No attack gave an empirical epsilon estimate to compare a budget with.")
