"""AttackResult builders shared by the reporter tests (this module holds no tests).

`make_report` also renders every report it builds as JSON and validates it against
report.schema.json, so each report any reporter test produces is schema-checked.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from privaudit.services.reporter import render_json
from privaudit.services.reporter.policy import Policy, load_policy
from privaudit.services.reporter.report import Report, build_report
from privaudit.services.reporter.report_model import AuditReport
from privaudit.v1 import report_pb2, results_pb2

POLICY = load_policy()
SCHEMA = json.loads(resources.files("privaudit.services.reporter").joinpath(render_json.SCHEMA_FILE).read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
# The chance p-value every measured figure gets unless a test says otherwise: far beyond chance.
TINY_P = 1e-6
# Half the width of the 95% intervals the helpers give, clipped to [0, 1].
HALF_WIDTH = 0.04
# Member records that `record_scores` adds outside the balanced evaluation set.
UNEVALUATED = 3
# What the orchestrator tells the reporter of every audit the tests report.
PROVENANCE = report_pb2.ReportProvenance(seed=7, task_digest="5" * 64,
                                         generated_at=Timestamp(seconds=1_796_000_000))


def metrics(auc: float = 0.5, tpr_1: float | None = 0.01, tpr_01: float | None = 0.001,
            non_members: int = 1000, *, auc_p: float | None = TINY_P, tpr_1_p: float | None = TINY_P,
            tpr_01_p: float | None = TINY_P, intervals: bool = True,
            threshold_source: str = "shadow model's members and non-members") -> results_pb2.Metrics:
    """Metrics of a balanced set; the TPRs default to chance (TPR = FPR), None leaves them unset.
    Each set figure gets its p-value (None: unset, as from an older worker) and, with `intervals`,
    the interval value +- HALF_WIDTH."""
    m = results_pb2.Metrics(num_members=non_members, num_non_members=non_members, accuracy=0.5 + (auc - 0.5) / 2,
                            precision=0.55, recall=0.6, auc=auc, advantage=max(auc - 0.5, 0.0),
                            decision_threshold=0.5, threshold_source=threshold_source)
    for field, value, p_value in (("auc", auc, auc_p), ("tpr_at_1pct_fpr", tpr_1, tpr_1_p),
                                  ("tpr_at_0_1pct_fpr", tpr_01, tpr_01_p)):
        if value is None:
            continue
        setattr(m, field, value)
        if p_value is not None:
            setattr(m, f"{field}_p_value", p_value)
        if intervals:
            getattr(m, f"{field}_interval").CopyFrom(interval(value))
    return m


def interval(value: float) -> results_pb2.Interval:
    return results_pb2.Interval(lower=max(value - HALF_WIDTH, 0.0), upper=min(value + HALF_WIDTH, 1.0))


def record_scores(num_members: int, num_non_members: int, separation: float,
                  seed: int = 0) -> results_pb2.RecordScores:
    """Normal scores, members shifted by `separation` standard deviations, every non-member and all
    but UNEVALUATED members (which score highest, to show they are left out) in the evaluation set."""
    rng = np.random.default_rng(seed)
    members = np.concatenate([rng.normal(separation, 1, num_members), np.full(UNEVALUATED, 100.0)])
    non_members = rng.normal(0, 1, num_non_members)
    return results_pb2.RecordScores(
        members=members, non_members=non_members,
        member_labels=np.arange(len(members)) % 10, non_member_labels=np.arange(num_non_members) % 10,
        member_evaluated=[True] * num_members + [False] * UNEVALUATED, non_member_evaluated=[True] * num_non_members)


def class_metrics(label: int, members: int, non_members: int, auc: float,
                  tpr_1: float | None = None) -> results_pb2.ClassMetrics:
    per_class = results_pb2.ClassMetrics(label=label, num_members=members, num_non_members=non_members, auc=auc,
                                         auc_interval=interval(auc))
    if tpr_1 is not None:
        per_class.tpr_at_1pct_fpr = tpr_1
    return per_class


def succeeded(index: int, name: str = "BASELINE", *, model: str = "digits_mlp", train_acc: float = 0.95,
              test_acc: float = 0.93, roc_points: int = 3, exposed: int = 20, separation: float | None = 0.0,
              warnings: tuple[str, ...] = (), per_class: tuple[results_pb2.ClassMetrics, ...] = (),
              **metric_args: Any) -> results_pb2.AttackResult:
    """A succeeded attack on `model` with the target datasets train/test, its `exposed` most exposed
    members, a 4-bin score histogram and record scores with members shifted by `separation` (None:
    no record scores, as from an older worker); `metric_args` go to `metrics`."""
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
                                              test_acc=test_acc, digest=f"{model}-digest"),
        datasets=[
            results_pb2.DatasetSummary(name="digits_train", path="datasets/digits_train", is_member_dataset=True,
                                       length=900, role="target", digest="train-digest"),
            results_pb2.DatasetSummary(name="digits_test", path="datasets/digits_test", is_member_dataset=False,
                                       length=897, role="target", digest="test-digest"),
        ],
        device="cpu",
        metrics=measured,
        roc=roc,
        most_exposed=[results_pb2.ExposedRecord(index=(7 * i) % 97, score=1 - i / 64) for i in range(exposed)],
        score_histogram=results_pb2.ScoreHistogram(edges=[0.0, 0.25, 0.5, 0.75, 1.0],
                                                   member_counts=[quarter, quarter, quarter, rest],
                                                   non_member_counts=[rest, quarter, quarter, quarter]),
        timings=[results_pb2.StageTiming(stage=results_pb2.STAGE_LOAD, seconds=0.25),
                 results_pb2.StageTiming(stage=results_pb2.STAGE_SCORE, seconds=0.5)],
        warnings=warnings,
        per_class=per_class,
        record_scores=None if separation is None else record_scores(measured.num_members, measured.num_non_members,
                                                                    separation, seed=index),
    )


def failed(index: int, name: str = "ML-LEAK", field: str = "attacks[1].args.shadow_model",
           message: str = "the folder has no .py file; add one defining get_model()",
           code: str = "INVALID_ARGUMENT") -> results_pb2.AttackResult:
    return results_pb2.AttackResult(
        attack_index=index, attack_name=name, status=results_pb2.ATTACK_STATUS_FAILED,
        error=results_pb2.AttackError(code=code, field=field, message=message),
    )


def make_report(*results: results_pb2.AttackResult, task_id: str = "task-1", policy: Policy = POLICY) -> Report:
    """Builds the report (with PROVENANCE) and checks its JSON rendering against the schema."""
    report = build_report(task_id, list(results), policy, PROVENANCE)
    validate_json(render_json.render(report))
    return report


def validate_json(data: bytes) -> dict[str, Any]:
    """The parsed JSON report; fails the test when it breaks the schema or does not parse as the
    typed model back to the same data."""
    document = json.loads(data)
    _VALIDATOR.validate(document)
    assert json.loads(render_json.dumps(AuditReport.model_validate_json(data))) == document
    return document
