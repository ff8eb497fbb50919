"""The JSON report, following report.schema.json (version SCHEMA_VERSION).

Output is deterministic: sorted keys, lists in task order, no timestamps, so the same
results always give byte-identical JSON.
"""

from __future__ import annotations

import json
from typing import Any

from privaudit.v1 import results_pb2
from services.common.errors import code_name
from services.common.task_spec import YAML_ATTACK_TYPE
from services.reporter.epsilon import ASSUMPTION, CONFIDENCE, EpsilonEstimate
from services.reporter.figures import RISK_FIGURES, Interval, interval_of
from services.reporter.report import AttackEntry, Report

SCHEMA_VERSION = "2.0"
SCHEMA_FILE = "report.schema.json"


def render(report: Report) -> bytes:
    text = json.dumps(document(report), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode()


def document(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data."""
    return {
        "schema_version": SCHEMA_VERSION,
        "task_id": report.task_id,
        "risk_policy": report.policy.model_dump(),
        "models": [
            {"name": m.name, "path": m.path, "train_acc": m.train_acc, "test_acc": m.test_acc}
            for m in report.models
        ],
        "datasets": [
            {"name": d.name, "path": d.path, "is_member_dataset": d.is_member_dataset, "length": d.length,
             "role": d.role}
            for d in report.datasets
        ],
        "attacks": [_attack(entry) for entry in report.attacks],
        "summary": {
            "risk": report.overall_risk.name if report.overall_risk else None,
            "risky_attacks": [
                {"index": e.result.attack_index, "name": e.result.attack_name,
                 "risk": e.assessment.risk.name if e.assessment.risk else None, "reason": e.assessment.reason}
                for e in report.risky
            ],
            "failed_attacks": [
                {"index": e.result.attack_index, "name": e.result.attack_name, "error": _error(e.result.error)}
                for e in report.failed
            ],
            "recommendations": [
                {"id": r.id, "title": r.title, "description": r.description, "why": r.why}
                for r in report.advice.recommendations
            ],
            "notes": list(report.advice.notes),
        },
    }


def _attack(entry: AttackEntry) -> dict[str, Any]:
    result, assessment = entry.result, entry.assessment
    return {
        "index": result.attack_index,
        "name": result.attack_name,
        "type": YAML_ATTACK_TYPE,
        "description": entry.info.description,
        "status": "succeeded" if entry.succeeded else "failed",
        "target_model": result.target_model.path if entry.succeeded else None,
        "metrics": _metrics(result.metrics) if entry.succeeded else None,
        "roc": [[point.fpr, point.tpr] for point in result.roc],
        "risk": assessment.risk.name if assessment.risk else None,
        "risk_reason": assessment.reason,
        "beyond_chance_at": assessment.significance,
        "warnings": list(result.warnings),
        "per_class": [_class(c) for c in result.per_class],
        "epsilon_estimate": _epsilon(entry.epsilon) if entry.epsilon else None,
        "epsilon_estimate_missing": entry.epsilon_missing or None,
        "most_exposed": [{"index": r.index, "score": r.score} for r in result.most_exposed],
        "score_histogram": _histogram(result.score_histogram) if result.HasField("score_histogram") else None,
        "error": None if entry.succeeded else _error(result.error),
        "timings": entry.stage_seconds,
    }


def _metrics(metrics: results_pb2.Metrics) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for figure in RISK_FIGURES:
        figures[figure.field] = figure.value(metrics)
        figures[f"{figure.field}_interval"] = _interval(figure.interval(metrics))
        figures[f"{figure.field}_p_value"] = figure.p_value(metrics)
    return {
        "acc": metrics.accuracy,
        "precision": metrics.precision,
        "recall": metrics.recall,
        "advantage": metrics.advantage,
        **figures,
        "num_members": metrics.num_members,
        "num_non_members": metrics.num_non_members,
        "decision_threshold": metrics.decision_threshold,
        "threshold_source": metrics.threshold_source,
    }


def _interval(interval: Interval | None) -> dict[str, float] | None:
    return {"lower": interval[0], "upper": interval[1]} if interval else None


def _class(per_class: results_pb2.ClassMetrics) -> dict[str, Any]:
    return {"label": per_class.label, "num_members": per_class.num_members,
            "num_non_members": per_class.num_non_members, "auc": per_class.auc,
            "auc_interval": _interval(interval_of(per_class, "auc_interval")),
            "tpr_at_1pct_fpr": per_class.tpr_at_1pct_fpr if per_class.HasField("tpr_at_1pct_fpr") else None}


def _epsilon(estimate: EpsilonEstimate) -> dict[str, Any]:
    point, measured = estimate.point, estimate.bounding
    return {
        "epsilon": estimate.epsilon,
        "delta": estimate.delta,
        "confidence": CONFIDENCE,
        "assumption": ASSUMPTION,
        "choosing_half": {"members": estimate.choosing_members, "non_members": estimate.choosing_non_members},
        "bounding_half": {"members": estimate.bounding_members, "non_members": estimate.bounding_non_members},
        "operating_point": None if point is None or measured is None else {
            "threshold": point.threshold, "inequality": str(point.inequality),
            "true_positives": measured.true_positives, "false_positives": measured.false_positives,
            "tpr": estimate.tpr, "fpr": estimate.fpr, "tpr_lower": measured.tpr_lower,
            "fpr_upper": measured.fpr_upper,
        },
    }


def _histogram(histogram: results_pb2.ScoreHistogram) -> dict[str, list[float] | list[int]]:
    return {"edges": list(histogram.edges), "member_counts": list(histogram.member_counts),
            "non_member_counts": list(histogram.non_member_counts)}


def _error(error: results_pb2.AttackError) -> dict[str, Any]:
    known = error.fault != results_pb2.FAULT_UNSPECIFIED  # results of older workers do not say
    return {"code": code_name(error), "field": error.field, "message": error.message,
            "fault": results_pb2.Fault.Name(error.fault).removeprefix("FAULT_").lower() if known else None,
            "retryable": error.retryable if known else None}
