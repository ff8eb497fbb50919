"""The JSON report: schema validity, content, nulls for what was not measured, byte-identical reruns."""

from __future__ import annotations

import json
import math
from importlib import metadata

import jsonschema
import pytest
from scipy.stats import beta
from test_reporter_fixtures import SCHEMA, class_metrics, failed, make_report, succeeded, validate_json

from privaudit.services.reporter import render_json
from privaudit.services.reporter.epsilon_terms import ASSUMPTION
from privaudit.services.reporter.report import NO_RECORD_SCORES
from privaudit.v1 import results_pb2

WARNING = "the attack classifier stopped before it converged: raise classifier_epoch"


def _mixed_results():
    return [succeeded(0, auc=0.6, tpr_01=None, non_members=500, train_acc=1.0, test_acc=0.85, auc_p=2e-9,
                      tpr_1_p=0.3, separation=1.0, warnings=(WARNING,),
                      per_class=(class_metrics(0, 240, 260, 0.61, 0.04), class_metrics(1, 260, 240, 0.59))),
            failed(1), succeeded(2, "LABEL-ONLY", auc=0.52, tpr_1=0.02, tpr_01=0.03, separation=None)]


def _document(*results) -> dict:
    return validate_json(render_json.render(make_report(*results)))


def test_schema_is_valid_draft_2020_12_and_matches_the_version() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema_version"]["const"] == render_json.SCHEMA_VERSION


def test_succeeded_attack_content() -> None:
    attack = _document(*_mixed_results())["attacks"][0]
    assert attack["metrics"] == {
        "acc": 0.55, "auc": 0.6, "precision": 0.55, "recall": 0.6, "advantage": pytest.approx(0.1),
        "tpr_at_1pct_fpr": 0.01, "tpr_at_0_1pct_fpr": None, "num_members": 500, "num_non_members": 500,
        "decision_threshold": 0.5, "threshold_source": "shadow model's members and non-members",
        "auc_interval": {"lower": pytest.approx(0.56), "upper": pytest.approx(0.64)},
        "tpr_at_1pct_fpr_interval": {"lower": 0.0, "upper": 0.05}, "tpr_at_0_1pct_fpr_interval": None,
        "auc_p_value": 2e-9, "tpr_at_1pct_fpr_p_value": 0.3, "tpr_at_0_1pct_fpr_p_value": None,
    }
    assert attack["beyond_chance_at"] == 0.025
    assert attack["warnings"] == [WARNING]
    assert attack["per_class"] == [
        {"label": 0, "num_members": 240, "num_non_members": 260, "auc": 0.61,
         "auc_interval": {"lower": pytest.approx(0.57), "upper": pytest.approx(0.65)}, "tpr_at_1pct_fpr": 0.04},
        {"label": 1, "num_members": 260, "num_non_members": 240, "auc": 0.59,
         "auc_interval": {"lower": pytest.approx(0.55), "upper": pytest.approx(0.63)}, "tpr_at_1pct_fpr": None},
    ]
    assert (attack["index"], attack["name"], attack["type"], attack["status"]) == (
        0, "BASELINE", "MEMBERSHIP_INFERENCE_ATTACK", "succeeded")
    assert attack["roc"] == [[0.0, 0.0], [0.5, 0.65], [1.0, 1.0]]
    assert attack["risk"] == "MIDDLE"
    assert attack["risk_reason"].startswith("AUC 0.6000 [0.5600, 0.6400] >= 0.55, beyond chance (p = 2e-09)")
    assert attack["error"] is None
    assert attack["timings"] == {"load": 0.25, "score": 0.5}
    assert attack["most_exposed"][:2] == [{"index": 0, "score": 1.0}, {"index": 7, "score": 0.984375}]
    assert len(attack["most_exposed"]) == 20
    assert attack["score_histogram"] == {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "member_counts": [125, 125, 125, 125],
                                         "non_member_counts": [125, 125, 125, 125]}


def test_epsilon_estimate_with_its_assumption_halves_and_the_counts_it_comes_from() -> None:
    """Recomputed from the counts the report gives, with scipy's beta quantiles."""
    estimate = _document(*_mixed_results())["attacks"][0]["epsilon_estimate"]
    assert (estimate["delta"], estimate["confidence"], estimate["assumption"]) == (1e-5, 0.95, ASSUMPTION)
    assert estimate["choosing_half"] == estimate["bounding_half"] == {"members": 250, "non_members": 250}
    point = estimate["operating_point"]
    tpr_lower = beta.ppf(0.025, point["true_positives"], 250 - point["true_positives"] + 1)
    fpr_upper = beta.ppf(0.975, point["false_positives"] + 1, 250 - point["false_positives"])
    assert (point["tpr"], point["fpr"]) == (point["true_positives"] / 250, point["false_positives"] / 250)
    assert (point["tpr_lower"], point["fpr_upper"]) == (pytest.approx(tpr_lower), pytest.approx(fpr_upper))
    expected = {"TPR <= e^epsilon * FPR + delta": math.log((tpr_lower - 1e-5) / fpr_upper),
                "1 - FPR <= e^epsilon * (1 - TPR) + delta": math.log((1 - fpr_upper - 1e-5) / (1 - tpr_lower))}
    assert estimate["epsilon"] > 0
    assert estimate["epsilon"] == pytest.approx(expected[point["inequality"]])


def test_an_attack_without_record_scores_says_why_it_has_no_estimate_and_no_score_is_exported() -> None:
    document = _document(*_mixed_results())
    assert (document["attacks"][2]["epsilon_estimate"], document["attacks"][2]["epsilon_estimate_missing"]) == (
        None, NO_RECORD_SCORES)
    assert document["attacks"][0]["epsilon_estimate_missing"] is None
    text = json.dumps(document)
    assert "record_scores" not in text and "100.0" not in text  # the unevaluated members' scores


def test_failed_attack_content() -> None:
    attack = _document(*_mixed_results())["attacks"][1]
    assert (attack["status"], attack["metrics"], attack["risk"], attack["roc"]) == ("failed", None, "UNRATED", [])
    assert (attack["epsilon_estimate"], attack["epsilon_estimate_missing"], attack["beyond_chance_at"]) == (
        None, None, None)
    assert (attack["most_exposed"], attack["score_histogram"], attack["warnings"], attack["per_class"]) == (
        [], None, [], [])
    assert attack["error"] == {"code": "INVALID_ARGUMENT", "field": "attacks[1].args.shadow_model",
                               "message": "the folder has no .py file; add one defining get_model()",
                               "fault": None, "retryable": None}  # the fixture's result is an older worker's


def test_a_failed_attack_says_whose_fault_and_whether_a_retry_can_help() -> None:
    results = _mixed_results()
    results[1].error.fault, results[1].error.retryable = results_pb2.FAULT_INFRASTRUCTURE, True
    error = _document(*results)["attacks"][1]["error"]
    assert (error["fault"], error["retryable"]) == ("infrastructure", True)


def test_summary_content() -> None:
    document = _document(*_mixed_results())
    summary = document["summary"]
    assert document["risk"] == "HIGH" and "risk" not in summary
    assert [(a["index"], a["risk"]) for a in summary["risky_attacks"]] == [(0, "MIDDLE"), (2, "HIGH")]
    assert [(a["index"], a["error"]["code"]) for a in summary["failed_attacks"]] == [(1, "INVALID_ARGUMENT")]
    assert [r["id"] for r in summary["recommendations"]] == [
        "differential_privacy", "regularisation", "knowledge_distillation"]
    assert summary["notes"][0].startswith("Confidence masking is not recommended")


def test_models_datasets_and_policy() -> None:
    document = _document(*_mixed_results())
    assert document["models"] == [
        {"name": "digits_mlp", "path": "models/digits_mlp", "train_acc": 1.0, "test_acc": 0.85},
        {"name": "digits_mlp", "path": "models/digits_mlp", "train_acc": 0.95, "test_acc": 0.93},
    ]
    assert [(d["name"], d["is_member_dataset"], d["role"]) for d in document["datasets"]] == [
        ("digits_train", True, "target"), ("digits_test", False, "target")]
    assert document["risk_policy"]["levels"]["high"]["auc"] == 0.65
    assert document["risk_policy"]["epsilon_estimate"] == {"delta": 1e-5}
    assert document["risk_policy"]["beyond_chance"] == {"alpha": 0.05}


def test_provenance_from_the_request_and_the_results() -> None:
    document = _document(*_mixed_results())
    assert document["provenance"] == {
        "privaudit_version": metadata.version("privaudit"), "generated_at": "2026-11-30T00:53:20Z", "seed": 7,
        "task_digest": "5" * 64, "worker_devices": ["cpu"],
        "models": [{"name": "digits_mlp", "path": "models/digits_mlp", "digest": "digits_mlp-digest"}],
        "datasets": [{"name": "digits_train", "path": "datasets/digits_train", "digest": "train-digest"},
                     {"name": "digits_test", "path": "datasets/digits_test", "digest": "test-digest"}]}
    assert (document["comparison"], document["partial"], document["partial_reason"]) == (None, False, "")


def test_reruns_are_byte_identical_with_sorted_keys() -> None:
    first = render_json.render(make_report(*_mixed_results()))
    assert render_json.render(make_report(*reversed(_mixed_results()))) == first
    document = json.loads(first)
    assert list(document) == sorted(document)
    assert list(document["attacks"][0]) == sorted(document["attacks"][0])


def test_only_failed_attacks_validate() -> None:
    document = _document(failed(0), failed(1, "BASELINE", field=""))
    assert document["risk"] == "UNRATED"
    assert [a["risk"] for a in document["attacks"]] == ["UNRATED", "UNRATED"]
    assert document["models"] == [] and document["summary"]["recommendations"] == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("schema_version"),
        lambda d: d["attacks"][1].update(risk="LOW"),  # a failed attack rated
        lambda d: d["attacks"][0].update(error={"code": "X", "field": "", "message": ""}),
        lambda d: d["attacks"][0]["metrics"].update(auc=1.5),
        lambda d: d["attacks"][0]["roc"].append([0.5]),
        lambda d: d.update(risk="SEVERE"),
        lambda d: d.update(risk=None),  # 3.0: UNRATED, never null
        lambda d: d["attacks"][0].update(risk="UNRATED"),  # a succeeded attack not rated
        lambda d: d["provenance"].pop("task_digest"),
        lambda d: d["provenance"].update(generated_at=1796000000),
        lambda d: d.pop("comparison"),  # every field present, null when there is none
        lambda d: d["summary"]["recommendations"][0].update(id="pray"),
        lambda d: d["attacks"][0]["epsilon_estimate"].update(epsilon=-0.1),
        lambda d: d["attacks"][0]["epsilon_estimate"].pop("assumption"),
        lambda d: d["attacks"][1].update(epsilon_estimate=d["attacks"][0]["epsilon_estimate"]),  # failed, estimated
        lambda d: d["attacks"][1].update(per_class=d["attacks"][0]["per_class"]),  # a failed attack's classes
        lambda d: d["attacks"][1].update(beyond_chance_at=0.05),
        lambda d: d["attacks"][0]["metrics"]["auc_interval"].update(upper=1.2),
        lambda d: d["attacks"][0]["metrics"].pop("auc_p_value"),
        lambda d: d["attacks"][0]["per_class"][0].pop("auc_interval"),
        lambda d: d["attacks"][0].update(warnings="one string"),
        lambda d: d["risk_policy"]["beyond_chance"].update(alpha=0.5),
        lambda d: d["attacks"][1]["most_exposed"].append({"index": 3, "score": 0.9}),
        lambda d: d["attacks"][0]["most_exposed"].append({"index": -1, "score": 0.9}),
        lambda d: d["attacks"][0]["score_histogram"].pop("edges"),
    ],
)
def test_schema_refuses_broken_reports(breakage) -> None:
    document = _document(*_mixed_results())
    breakage(document)
    with pytest.raises(jsonschema.ValidationError):
        validate_json(json.dumps(document).encode())
