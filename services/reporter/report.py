"""A report's content, independent of its rendering: every renderer reads a `Report`.

`build_report` checks the results a request carries, rates them and picks the advice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from itertools import pairwise
from typing import TypeVar

import numpy as np

from privaudit.services.common.task_spec import MAX_ATTACKS
from privaudit.services.reporter.advice import Advice, advise
from privaudit.services.reporter.catalog import AttackInfo, attack_info
from privaudit.services.reporter.epsilon import MIN_RECORDS, EpsilonEstimate, estimate
from privaudit.services.reporter.policy import Policy
from privaudit.services.reporter.report_model import MAX_MOST_EXPOSED, ArtifactDigest, Comparison, Provenance
from privaudit.services.reporter.risk import Assessment, Risk, assess, overall_risk
from privaudit.services.reporter.views import evaluated_scores
from privaudit.v1 import report_pb2, results_pb2

# Metrics that are rates or probabilities, so must lie in [0, 1].
_UNIT_METRICS = ("accuracy", "precision", "recall", "auc", "advantage", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr",
                 "auc_p_value", "tpr_at_1pct_fpr_p_value", "tpr_at_0_1pct_fpr_p_value")
_INTERVALS = ("auc_interval", "tpr_at_1pct_fpr_interval", "tpr_at_0_1pct_fpr_interval")
NO_RECORD_SCORES = ("the result carries no record scores (it comes from a worker older than that field), so the "
                    "operating point cannot be chosen on records other than those that measure it")
TOO_FEW_RECORDS = (f"the evaluation set needs at least {MIN_RECORDS} members and {MIN_RECORDS} non-members to be "
                   "split into a half that chooses the operating point and a half that measures it")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_Summary = TypeVar("_Summary", results_pb2.ModelSummary, results_pb2.DatasetSummary)


class ReportRequestError(ValueError):
    """The results cannot be reported; `field` names the request field at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class AttackEntry:
    """One attack's result, its rating and, when it succeeded, its empirical epsilon estimate or,
    in `epsilon_missing`, why it has none (empty otherwise)."""

    result: results_pb2.AttackResult
    assessment: Assessment
    epsilon: EpsilonEstimate | None
    epsilon_missing: str = ""

    @property
    def succeeded(self) -> bool:
        return self.result.status == results_pb2.ATTACK_STATUS_SUCCEEDED

    @property
    def info(self) -> AttackInfo:
        return attack_info(self.result.attack_name)

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Wall time per stage, e.g. {"load": 0.4}; a stage that ran more than once is summed."""
        seconds: dict[str, float] = {}
        for timing in self.result.timings:
            stage = results_pb2.Stage.Name(timing.stage).removeprefix("STAGE_").lower()
            seconds[stage] = seconds.get(stage, 0.0) + timing.seconds
        return seconds


@dataclass(frozen=True)
class Report:
    """Everything a report says. Models and datasets are those the succeeded attacks measured,
    one entry per distinct summary, in order of first appearance. `comparison` is set when the
    report is compared with a baseline; `partial_reason` says why a report of an audit that did not
    finish covers only some attacks (empty for a whole report)."""

    task_id: str
    policy: Policy
    attacks: tuple[AttackEntry, ...]
    models: tuple[results_pb2.ModelSummary, ...]
    datasets: tuple[results_pb2.DatasetSummary, ...]
    overall_risk: Risk | None
    advice: Advice
    provenance: Provenance
    comparison: Comparison | None = None
    partial_reason: str = ""

    @property
    def risky(self) -> tuple[AttackEntry, ...]:
        """The attacks rated MIDDLE or HIGH, in task order."""
        return tuple(e for e in self.attacks if e.assessment.is_risky)

    @property
    def failed(self) -> tuple[AttackEntry, ...]:
        return tuple(e for e in self.attacks if not e.succeeded)

    @property
    def strongest_estimate(self) -> AttackEntry | None:
        """The attack with the largest epsilon estimate (the first on ties); None when none has one."""
        return strongest_estimate(self.attacks)

    def summary_proto(self) -> report_pb2.ReportSummary:
        return report_pb2.ReportSummary(
            overall_risk=self.overall_risk or report_pb2.RISK_LEVEL_UNSPECIFIED,
            attacks=[e.assessment.to_proto() for e in self.attacks],
            failed_attacks=len(self.failed),
        )


def build_report(task_id: str, results: Sequence[results_pb2.AttackResult], policy: Policy,
                 provenance: report_pb2.ReportProvenance | None = None) -> Report:
    """Checks, rates and advises; raises ReportRequestError on results or provenance it cannot report.
    `provenance` is what the orchestrator knows of the audit (none: the date is now, the seed and
    task digest unknown)."""
    _check(results)
    if provenance is not None:
        _check_provenance(provenance)
    ordered = sorted(results, key=lambda r: r.attack_index)
    attacks = tuple(AttackEntry(r, assess(r, policy), *_epsilon_estimate(r, policy.epsilon_estimate.delta))
                    for r in ordered)
    measured = [e.result for e in attacks if e.succeeded]
    models = _distinct(r.target_model for r in measured)
    datasets = _distinct(d for r in measured for d in r.datasets)
    overall = overall_risk(e.assessment for e in attacks)
    strongest = strongest_estimate(attacks)
    return Report(
        task_id=task_id,
        policy=policy,
        attacks=attacks,
        models=models,
        datasets=datasets,
        overall_risk=overall,
        advice=advise([e.assessment for e in attacks], models, overall, policy.advice,
                      (strongest.assessment, strongest.epsilon) if strongest and strongest.epsilon else None),
        provenance=_provenance(provenance or report_pb2.ReportProvenance(), measured, models, datasets),
    )


def privaudit_version() -> str:
    """The installed privaudit's version; "unknown" when it runs from a folder not installed."""
    try:
        return metadata.version("privaudit")
    except metadata.PackageNotFoundError:
        return "unknown"


def _provenance(known: report_pb2.ReportProvenance, results: Sequence[results_pb2.AttackResult],
                models: Sequence[results_pb2.ModelSummary],
                datasets: Sequence[results_pb2.DatasetSummary]) -> Provenance:
    """The report's provenance: the orchestrator's `known`, this reporter's version, and the digests
    and devices the succeeded `results` give (each folder and device once, in order of first appearance)."""
    generated = known.generated_at.ToDatetime(UTC) if known.HasField("generated_at") else datetime.now(UTC)
    return Provenance(
        privaudit_version=privaudit_version(),
        generated_at=generated.replace(microsecond=0),
        seed=known.seed if known.HasField("seed") else None,
        task_digest=known.task_digest,
        models=_digests(models),
        datasets=_digests(datasets),
        worker_devices=list(dict.fromkeys(r.device for r in results if r.device)),
    )


def _digests(summaries: Iterable[results_pb2.ModelSummary | results_pb2.DatasetSummary]) -> list[ArtifactDigest]:
    """One entry per folder and content, in order of first appearance (a dataset read in two roles once)."""
    distinct = {(s.name, s.path, s.digest): None for s in summaries}
    return [ArtifactDigest(name=name, path=path, digest=digest) for name, path, digest in distinct]


def strongest_estimate(attacks: Iterable[AttackEntry]) -> AttackEntry | None:
    """The attack with the largest epsilon estimate, the first on ties; None when none has one."""
    estimated = [e for e in attacks if e.epsilon is not None]
    return max(estimated, key=lambda e: e.epsilon.epsilon, default=None)


def _epsilon_estimate(result: results_pb2.AttackResult, delta: float) -> tuple[EpsilonEstimate | None, str]:
    """The estimate from the evaluated records' scores, or why there is none."""
    if result.status != results_pb2.ATTACK_STATUS_SUCCEEDED:
        return None, ""
    if not result.HasField("record_scores"):
        return None, NO_RECORD_SCORES
    evaluated = evaluated_scores(result)
    found = estimate(*evaluated, delta) if evaluated is not None else None
    return found, "" if found else TOO_FEW_RECORDS


def _distinct(items: Iterable[_Summary]) -> tuple[_Summary, ...]:
    seen: dict[bytes, _Summary] = {}
    for item in items:
        seen.setdefault(item.SerializeToString(deterministic=True), item)
    return tuple(seen.values())


def _check(results: Sequence[results_pb2.AttackResult]) -> None:
    if not results:
        raise ReportRequestError("results", "the request has no attack results; send one per attack of the "
                                 "task, failed ones included")
    if len(results) > MAX_ATTACKS:  # each costs a plot or more: an HTML report of 500 took 90 s
        raise ReportRequestError("results", f"{len(results):,} attack results; a task has at most {MAX_ATTACKS} "
                                 "attacks")
    seen: set[int] = set()
    for i, result in enumerate(results):
        field = f"results[{i}]"
        if result.attack_index in seen:
            raise ReportRequestError(f"{field}.attack_index", f"attack {result.attack_index} has two results")
        seen.add(result.attack_index)
        if result.status not in (results_pb2.ATTACK_STATUS_SUCCEEDED, results_pb2.ATTACK_STATUS_FAILED):
            raise ReportRequestError(f"{field}.status", "must be ATTACK_STATUS_SUCCEEDED or ATTACK_STATUS_FAILED")
        if result.status == results_pb2.ATTACK_STATUS_SUCCEEDED:
            _check_metrics(result, field)
        elif result.error.fault not in results_pb2.Fault.values():
            raise ReportRequestError(f"{field}.error.fault", f"{result.error.fault} is not a Fault")
        for j, timing in enumerate(result.timings):
            if timing.stage not in results_pb2.Stage.values():
                raise ReportRequestError(f"{field}.timings[{j}].stage", f"{timing.stage} is not a Stage")
            if not 0 <= timing.seconds < math.inf:
                raise ReportRequestError(f"{field}.timings[{j}].seconds",
                                         f"must be a finite number of seconds >= 0, got {timing.seconds}")


def _check_provenance(provenance: report_pb2.ReportProvenance) -> None:
    if provenance.task_digest and not _SHA256_HEX.fullmatch(provenance.task_digest):
        raise ReportRequestError("provenance.task_digest", "must be a SHA-256 in 64 lowercase hex digits, or empty")
    if provenance.HasField("generated_at"):
        try:
            provenance.generated_at.ToDatetime(UTC)
        except (ValueError, OverflowError):
            raise ReportRequestError("provenance.generated_at", f"must be a time between the years 1 and 9999, got "
                                     f"{provenance.generated_at.seconds} s and {provenance.generated_at.nanos} ns "
                                     "since the epoch") from None


def _check_metrics(result: results_pb2.AttackResult, field: str) -> None:
    if not result.HasField("metrics"):
        raise ReportRequestError(f"{field}.metrics", "a succeeded attack must carry its metrics")
    metrics = result.metrics
    unit_values = [(f"metrics.{name}", getattr(metrics, name)) for name in _UNIT_METRICS] + [
        (f"target_model.{name}", getattr(result.target_model, name)) for name in ("train_acc", "test_acc")
    ]
    for name, value in unit_values:
        if not 0 <= value <= 1:  # also refuses NaN
            raise ReportRequestError(f"{field}.{name}", f"must be between 0 and 1, got {value}")
    if not math.isfinite(metrics.decision_threshold):
        raise ReportRequestError(f"{field}.metrics.decision_threshold",
                                 f"must be a finite number, got {metrics.decision_threshold}")
    for j, point in enumerate(result.roc):
        if not (0 <= point.fpr <= 1 and 0 <= point.tpr <= 1):
            raise ReportRequestError(f"{field}.roc[{j}]", f"fpr and tpr must be between 0 and 1, got "
                                     f"({point.fpr}, {point.tpr})")
    if len(result.most_exposed) > MAX_MOST_EXPOSED:
        raise ReportRequestError(f"{field}.most_exposed", f"{len(result.most_exposed)} records; at most "
                                                          f"{MAX_MOST_EXPOSED}")
    for j, record in enumerate(result.most_exposed):
        if not math.isfinite(record.score):
            raise ReportRequestError(f"{field}.most_exposed[{j}].score", f"must be a finite number, got {record.score}")
    if result.HasField("score_histogram"):
        _check_histogram(result.score_histogram, f"{field}.score_histogram")
    for name in _INTERVALS:
        if metrics.HasField(name):
            _check_interval(getattr(metrics, name), f"{field}.metrics.{name}")
    for j, per_class in enumerate(result.per_class):
        _check_class(per_class, f"{field}.per_class[{j}]")
    if result.HasField("record_scores"):
        _check_record_scores(result.record_scores, metrics, f"{field}.record_scores")


def _check_interval(interval: results_pb2.Interval, field: str) -> None:
    if not 0 <= interval.lower <= interval.upper <= 1:
        raise ReportRequestError(field, f"must have 0 <= lower <= upper <= 1, got [{interval.lower}, {interval.upper}]")


def _check_class(per_class: results_pb2.ClassMetrics, field: str) -> None:
    values = [("auc", per_class.auc)]
    if per_class.HasField("tpr_at_1pct_fpr"):
        values.append(("tpr_at_1pct_fpr", per_class.tpr_at_1pct_fpr))
    for name, value in values:
        if not 0 <= value <= 1:
            raise ReportRequestError(f"{field}.{name}", f"must be between 0 and 1, got {value}")
    if per_class.HasField("auc_interval"):
        _check_interval(per_class.auc_interval, f"{field}.auc_interval")


def _check_record_scores(scores: results_pb2.RecordScores, metrics: results_pb2.Metrics, field: str) -> None:
    for side, count in (("member", metrics.num_members), ("non_member", metrics.num_non_members)):
        values, evaluated = getattr(scores, f"{side}s"), getattr(scores, f"{side}_evaluated")
        if len(evaluated) != len(values):
            raise ReportRequestError(f"{field}.{side}_evaluated",
                                     f"must have one flag per score ({len(values)}), got {len(evaluated)}")
        if sum(evaluated) != count:
            raise ReportRequestError(f"{field}.{side}_evaluated",
                                     f"flags {sum(evaluated)} records, but metrics.num_{side}s is {count}")
        numbers = np.asarray(values, dtype=np.float64)
        if not np.isfinite(numbers[np.asarray(evaluated, dtype=bool)]).all() or np.isinf(numbers).any():
            raise ReportRequestError(f"{field}.{side}s", "must be finite numbers (NaN only for a record the attack "
                                                         "did not score, outside the evaluation set)")


def _check_histogram(histogram: results_pb2.ScoreHistogram, field: str) -> None:
    edges = list(histogram.edges)
    if len(edges) < 2:
        raise ReportRequestError(f"{field}.edges", f"must hold at least 2 edges (one bin), got {len(edges)}")
    if not all(math.isfinite(edge) for edge in edges) or any(b <= a for a, b in pairwise(edges)):
        raise ReportRequestError(f"{field}.edges", "must be finite and strictly increasing")
    for name in ("member_counts", "non_member_counts"):
        if len(getattr(histogram, name)) != len(edges) - 1:
            raise ReportRequestError(f"{field}.{name}", f"must have one count per bin ({max(len(edges) - 1, 0)}), "
                                     f"got {len(getattr(histogram, name))}")
