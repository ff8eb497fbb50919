"""The JSON report: schema validity, content, nulls for what was not measured, byte-identical reruns."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from scipy.stats import binom
from test_reporter_fixtures import SCHEMA, failed, make_report, succeeded, validate_json

from services.reporter import render_json


def _mixed_results():
    return [succeeded(0, auc=0.6, tpr_01=None, non_members=500, train_acc=1.0, test_acc=0.85),
            failed(1), succeeded(2, "LABEL-ONLY", auc=0.52, tpr_1=0.02, tpr_01=0.03)]


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
        "decision_threshold": 0.5,
    }
    assert (attack["index"], attack["name"], attack["type"], attack["status"]) == (
        0, "BASELINE", "MEMBERSHIP_INFERENCE_ATTACK", "succeeded")
    assert attack["roc"] == [[0.0, 0.0], [0.5, 0.65], [1.0, 1.0]]
    assert attack["risk"] == "MIDDLE"
    assert attack["risk_reason"].startswith("AUC 0.6000 >= 0.55")
    assert attack["error"] is None
    assert attack["timings"] == {"load": 0.25, "score": 0.5}
    assert attack["most_exposed"][:2] == [{"index": 0, "score": 1.0}, {"index": 7, "score": 0.984375}]
    assert len(attack["most_exposed"]) == 20
    assert attack["score_histogram"] == {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "member_counts": [125, 125, 125, 125],
                                         "non_member_counts": [125, 125, 125, 125]}


def test_epsilon_bound_with_the_point_and_interval_it_comes_from() -> None:
    """ROC point (0.5, 0.65) on 500 + 500 records: 325 and 250 hits."""
    bound = _document(*_mixed_results())["attacks"][0]["epsilon_bound"]
    assert (bound["fpr"], bound["tpr"], bound["delta"], bound["confidence"]) == (0.5, 0.65, 1e-5, 0.95)
    assert binom.sf(324, 500, bound["tpr_lower"]) == pytest.approx(0.025)
    assert binom.cdf(250, 500, bound["fpr_upper"]) == pytest.approx(0.025)
    assert bound["epsilon"] == pytest.approx(math.log((1 - bound["fpr_upper"] - 1e-5) / (1 - bound["tpr_lower"])))


def test_failed_attack_content() -> None:
    attack = _document(*_mixed_results())["attacks"][1]
    assert (attack["status"], attack["metrics"], attack["risk"], attack["roc"]) == ("failed", None, None, [])
    assert (attack["epsilon_bound"], attack["most_exposed"], attack["score_histogram"]) == (None, [], None)
    assert attack["error"] == {"code": "INVALID_ARGUMENT", "field": "attacks[1].args.shadow_model",
                               "message": "the folder has no .py file; add one defining get_model()"}


def test_summary_content() -> None:
    summary = _document(*_mixed_results())["summary"]
    assert summary["risk"] == "HIGH"
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
    assert document["risk_policy"]["epsilon_bound"] == {"delta": 1e-5}


def test_reruns_are_byte_identical_with_sorted_keys() -> None:
    first = render_json.render(make_report(*_mixed_results()))
    assert render_json.render(make_report(*reversed(_mixed_results()))) == first
    document = json.loads(first)
    assert list(document) == sorted(document)
    assert list(document["attacks"][0]) == sorted(document["attacks"][0])


def test_only_failed_attacks_validate() -> None:
    document = _document(failed(0), failed(1, "BASELINE", field=""))
    assert document["summary"]["risk"] is None
    assert document["models"] == [] and document["summary"]["recommendations"] == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("schema_version"),
        lambda d: d["attacks"][1].update(risk="LOW"),  # a failed attack rated
        lambda d: d["attacks"][0].update(error={"code": "X", "field": "", "message": ""}),
        lambda d: d["attacks"][0]["metrics"].update(auc=1.5),
        lambda d: d["attacks"][0]["roc"].append([0.5]),
        lambda d: d["summary"].update(risk="SEVERE"),
        lambda d: d["summary"]["recommendations"][0].update(id="pray"),
        lambda d: d["attacks"][0]["epsilon_bound"].update(epsilon=-0.1),
        lambda d: d["attacks"][1].update(epsilon_bound=d["attacks"][0]["epsilon_bound"]),  # a failed attack bounded
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
