"""AttackResult builders shared by the reporter tests (this module holds no tests).

`make_report` also renders every report it builds as JSON and validates it against
report.schema.json, so each report any reporter test produces is schema-checked.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from privaudit.v1 import results_pb2
from services.reporter import render_json
from services.reporter.policy import Policy, load_policy
from services.reporter.report import Report, build_report

POLICY = load_policy()
SCHEMA = json.loads(resources.files("services.reporter").joinpath(render_json.SCHEMA_FILE).read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def metrics(auc: float = 0.5, tpr_1: float | None = 0.01, tpr_01: float | None = 0.001,
            non_members: int = 1000) -> results_pb2.Metrics:
    """Metrics of a balanced set; the TPRs default to chance (TPR = FPR), None leaves them unset."""
    m = results_pb2.Metrics(num_members=non_members, num_non_members=non_members, accuracy=0.5 + (auc - 0.5) / 2,
                            precision=0.55, recall=0.6, auc=auc, advantage=max(auc - 0.5, 0.0),
                            decision_threshold=0.5)
    if tpr_1 is not None:
        m.tpr_at_1pct_fpr = tpr_1
    if tpr_01 is not None:
        m.tpr_at_0_1pct_fpr = tpr_01
    return m


def succeeded(index: int, name: str = "BASELINE", *, model: str = "digits_mlp", train_acc: float = 0.95,
              test_acc: float = 0.93, roc_points: int = 3, exposed: int = 20,
              **metric_args: Any) -> results_pb2.AttackResult:
    """A succeeded attack on `model` with the target datasets train/test, its `exposed` most exposed
    members and a 4-bin score histogram; `metric_args` go to `metrics`."""
    roc = [results_pb2.RocPoint(fpr=i / (roc_points - 1), tpr=min(1.0, 1.3 * i / (roc_points - 1)) if i else 0.0)
           for i in range(roc_points)]
    measured = metrics(**metric_args)
    quarter = measured.num_members // 4
    rest = measured.num_members - 3 * quarter
    return results_pb2.AttackResult(
        attack_index=index,
        attack_name=name,
        status=results_pb2.ATTACK_STATUS_SUCCEEDED,
        target_model=results_pb2.ModelSummary(name=model, path=f"models/{model}", train_acc=train_acc,
                                              test_acc=test_acc),
        datasets=[
            results_pb2.DatasetSummary(name="digits_train", path="datasets/digits_train", is_member_dataset=True,
                                       length=900, role="target"),
            results_pb2.DatasetSummary(name="digits_test", path="datasets/digits_test", is_member_dataset=False,
                                       length=897, role="target"),
        ],
        metrics=measured,
        roc=roc,
        most_exposed=[results_pb2.ExposedRecord(index=(7 * i) % 97, score=1 - i / 64) for i in range(exposed)],
        score_histogram=results_pb2.ScoreHistogram(edges=[0.0, 0.25, 0.5, 0.75, 1.0],
                                                   member_counts=[quarter, quarter, quarter, rest],
                                                   non_member_counts=[rest, quarter, quarter, quarter]),
        timings=[results_pb2.StageTiming(stage=results_pb2.STAGE_LOAD, seconds=0.25),
                 results_pb2.StageTiming(stage=results_pb2.STAGE_SCORE, seconds=0.5)],
    )


def failed(index: int, name: str = "ML-LEAK", field: str = "attacks[1].args.shadow_model",
           message: str = "the folder has no .py file; add one defining get_model()",
           code: str = "INVALID_ARGUMENT") -> results_pb2.AttackResult:
    return results_pb2.AttackResult(
        attack_index=index, attack_name=name, status=results_pb2.ATTACK_STATUS_FAILED,
        error=results_pb2.AttackError(code=code, field=field, message=message),
    )


def make_report(*results: results_pb2.AttackResult, task_id: str = "task-1", policy: Policy = POLICY) -> Report:
    """Builds the report and checks its JSON rendering against the schema."""
    report = build_report(task_id, list(results), policy)
    validate_json(render_json.render(report))
    return report


def validate_json(data: bytes) -> dict[str, Any]:
    """The parsed JSON report; fails the test when it breaks the schema."""
    document = json.loads(data)
    _VALIDATOR.validate(document)
    return document
