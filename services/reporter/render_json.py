"""The JSON report: the `AuditReport` model (report_model.py) of a `Report`, dumped.

Output is deterministic: sorted keys, every field present, lists in task order, so the same
results and provenance (its date included) always give byte-identical JSON.
"""

from __future__ import annotations

import json

from privaudit.services.common.errors import code_name
from privaudit.services.common.task_spec import YAML_ATTACK_TYPE
from privaudit.services.reporter import report_model as model
from privaudit.services.reporter.epsilon import EpsilonEstimate
from privaudit.services.reporter.epsilon_terms import ASSUMPTION, CONFIDENCE
from privaudit.services.reporter.figures import RISK_FIGURES, Interval, interval_of
from privaudit.services.reporter.report import AttackEntry, Report
from privaudit.services.reporter.risk import Risk
from privaudit.v1 import results_pb2

SCHEMA_VERSION = model.SCHEMA_VERSION
SCHEMA_FILE = model.SCHEMA_FILE


def render(report: Report) -> bytes:
    return dumps(audit_report(report))


def dumps(document: model.AuditReport) -> bytes:
    """The report's JSON text, as the reporter sends it."""
    text = json.dumps(document.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False,
                      allow_nan=False)
    return (text + "\n").encode()


def audit_report(report: Report) -> model.AuditReport:
    """The report as the typed model the JSON rendering dumps."""
    return model.AuditReport(
        schema_version=SCHEMA_VERSION,
        task_id=report.task_id,
        risk=_risk(report.overall_risk),
        risk_policy=report.policy,
        models=[model.ModelSummary(name=m.name, path=m.path, train_acc=m.train_acc, test_acc=m.test_acc)
                for m in report.models],
        datasets=[model.DatasetSummary(name=d.name, path=d.path, is_member_dataset=d.is_member_dataset,
                                       length=d.length, role=d.role) for d in report.datasets],
        attacks=[_attack(entry) for entry in report.attacks],
        summary=model.Summary(
            risky_attacks=[model.RiskyAttack(index=e.result.attack_index, name=e.result.attack_name,
                                             risk=_risk(e.assessment.risk), reason=e.assessment.reason)
                           for e in report.risky],
            failed_attacks=[model.FailedAttack(index=e.result.attack_index, name=e.result.attack_name,
                                               error=_error(e.result.error)) for e in report.failed],
            recommendations=[model.Recommendation(id=r.id, title=r.title, description=r.description, why=r.why)
                             for r in report.advice.recommendations],
            notes=list(report.advice.notes),
        ),
        provenance=report.provenance,
        comparison=report.comparison,
        partial=bool(report.partial_reason),
        partial_reason=report.partial_reason,
    )


def _risk(risk: Risk | None) -> model.RiskName:
    return risk.name if risk is not None else model.UNRATED  # type: ignore[return-value]


def _attack(entry: AttackEntry) -> model.AttackReport:
    """What the attack found; a failed one's result is read for its error alone."""
    result, assessment = entry.result, entry.assessment
    found = entry.succeeded
    return model.AttackReport(
        index=result.attack_index,
        name=result.attack_name,
        type=YAML_ATTACK_TYPE,
        description=entry.info.description,
        status="succeeded" if found else "failed",
        target_model=result.target_model.path if found else None,
        target_queries=result.target_queries,
        metrics=_metrics(result.metrics) if found else None,
        roc=[(point.fpr, point.tpr) for point in result.roc] if found else [],
        risk=_risk(assessment.risk),
        risk_reason=assessment.reason,
        beyond_chance_at=assessment.significance,
        warnings=list(result.warnings),
        per_class=[_class(c) for c in result.per_class] if found else [],
        epsilon_estimate=_epsilon(entry.epsilon) if entry.epsilon else None,
        epsilon_estimate_missing=entry.epsilon_missing or None,
        most_exposed=[model.ExposedRecord(index=r.index, score=r.score) for r in result.most_exposed] if found else [],
        score_histogram=_histogram(result.score_histogram) if found and result.HasField("score_histogram") else None,
        error=None if found else _error(result.error),
        timings=entry.stage_seconds,
    )


def _metrics(metrics: results_pb2.Metrics) -> model.Metrics:
    figures: dict[str, object] = {}
    for figure in RISK_FIGURES:
        figures[figure.field] = figure.value(metrics)
        figures[f"{figure.field}_interval"] = _interval(figure.interval(metrics))
        figures[f"{figure.field}_p_value"] = figure.p_value(metrics)
    return model.Metrics(
        acc=metrics.accuracy, precision=metrics.precision, recall=metrics.recall, advantage=metrics.advantage,
        num_members=metrics.num_members, num_non_members=metrics.num_non_members,
        decision_threshold=metrics.decision_threshold, threshold_source=metrics.threshold_source,
        **figures,
    )


def _interval(interval: Interval | None) -> model.Interval | None:
    return model.Interval(lower=interval[0], upper=interval[1]) if interval else None


def _class(per_class: results_pb2.ClassMetrics) -> model.ClassMetrics:
    return model.ClassMetrics(
        label=per_class.label, num_members=per_class.num_members, num_non_members=per_class.num_non_members,
        auc=per_class.auc, auc_interval=_interval(interval_of(per_class, "auc_interval")),
        tpr_at_1pct_fpr=per_class.tpr_at_1pct_fpr if per_class.HasField("tpr_at_1pct_fpr") else None)


def _epsilon(estimate: EpsilonEstimate) -> model.EpsilonEstimate:
    point, measured = estimate.point, estimate.bounding
    return model.EpsilonEstimate(
        epsilon=estimate.epsilon,
        delta=estimate.delta,
        confidence=CONFIDENCE,
        assumption=ASSUMPTION,
        choosing_half=model.Half(members=estimate.choosing_members, non_members=estimate.choosing_non_members),
        bounding_half=model.Half(members=estimate.bounding_members, non_members=estimate.bounding_non_members),
        operating_point=None if point is None or measured is None else model.OperatingPoint(
            threshold=point.threshold, inequality=point.inequality,
            true_positives=measured.true_positives, false_positives=measured.false_positives,
            tpr=estimate.tpr, fpr=estimate.fpr, tpr_lower=measured.tpr_lower, fpr_upper=measured.fpr_upper,
        ),
    )


def _histogram(histogram: results_pb2.ScoreHistogram) -> model.ScoreHistogram:
    return model.ScoreHistogram(edges=list(histogram.edges), member_counts=list(histogram.member_counts),
                                non_member_counts=list(histogram.non_member_counts))


def _error(error: results_pb2.AttackError) -> model.AttackError:
    known = error.fault != results_pb2.FAULT_UNSPECIFIED  # results of older workers do not say
    return model.AttackError(
        code=code_name(error), field=error.field, message=error.message,
        fault=results_pb2.Fault.Name(error.fault).removeprefix("FAULT_").lower() if known else None,
        retryable=error.retryable if known else None)
