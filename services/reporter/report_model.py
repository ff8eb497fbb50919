"""The JSON report as typed models: what render_json emits, the Python API returns and
report.schema.json describes (generated from these models: `python -m privaudit.services.reporter.report_model
--schema` rewrites it).

Every field is always present in the JSON (a value not measured is null, never left out); risk
levels are the strings "LOW", "MIDDLE", "HIGH" and "UNRATED" (a failed attack, or a report without a
succeeded attack). A change that removes or retypes a field raises the major part of
SCHEMA_VERSION; a new field with a default raises the minor part.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import GenerateJsonSchema

from privaudit.services.reporter.epsilon_terms import Inequality
from privaudit.services.reporter.policy import Policy
from privaudit.v1 import report_pb2

SCHEMA_VERSION = "3.0"
SCHEMA_FILE = "report.schema.json"
HISTORY = ("1.1 added epsilon_bound, most_exposed and score_histogram to each attack and epsilon_bound to "
           "risk_policy. 2.0 replaced epsilon_bound with epsilon_estimate (chosen and measured on separate "
           "halves of the evaluation records); added risk_policy.beyond_chance, each attack's beyond_chance_at, "
           "warnings, per_class and epsilon_estimate_missing, and the metrics' intervals, chance p-values and "
           "threshold_source. 3.0 rates risk as strings with UNRATED in place of null, moves summary.risk to "
           "the top-level risk, and adds provenance, comparison, partial and partial_reason.")

RiskName = Literal["LOW", "MIDDLE", "HIGH", "UNRATED"]
UNRATED: RiskName = "UNRATED"
MAX_MOST_EXPOSED = 20  # records in an attack's most_exposed: the worker's metrics.MOST_EXPOSED
Rate = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
Index = Annotated[int, Field(ge=0, description="Position of the attack in the task's list, from 0.")]
AttackName = Annotated[str, Field(description="The attack's name as in the task file, e.g. BASELINE, ML-LEAK.")]


def risk_name(level: int) -> RiskName:
    """A proto RiskLevel (ReportSummary.overall_risk, AttackAssessment.risk) as reports write it."""
    if level == report_pb2.RISK_LEVEL_UNSPECIFIED:
        return UNRATED
    return report_pb2.RiskLevel.Name(level).removeprefix("RISK_LEVEL_")  # type: ignore[return-value]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Model):
    """A 95% confidence interval."""

    lower: Rate
    upper: Rate


class Metrics(_Model):
    """Membership metrics on the balanced evaluation set; positive means member. acc, precision and
    recall use one rule: member when score >= decision_threshold."""

    acc: Rate = Field(description="Share of evaluation records whose membership the rule gets right.")
    auc: Rate = Field(description="Area under the ROC curve of the membership score.")
    precision: Rate = Field(description="Of the records called members, the share that are members.")
    recall: Rate = Field(description="Of the members, the share called members (the rule's TPR).")
    advantage: Rate = Field(description="Membership advantage: max over thresholds of TPR - FPR.")
    tpr_at_1pct_fpr: Rate | None = Field(
        description="Highest TPR at FPR <= 1%; null when not measurable (fewer than 100 non-members).")
    tpr_at_0_1pct_fpr: Rate | None = Field(
        description="Highest TPR at FPR <= 0.1%; null when not measurable (fewer than 1000 non-members).")
    auc_interval: Interval | None = Field(
        description="95% confidence interval of auc (DeLong); null in results of workers older than the field.")
    tpr_at_1pct_fpr_interval: Interval | None = Field(
        description="95% confidence interval of tpr_at_1pct_fpr (seeded stratified bootstrap); null when the "
                    "figure is.")
    tpr_at_0_1pct_fpr_interval: Interval | None = Field(
        description="95% confidence interval of tpr_at_0_1pct_fpr; null when the figure is.")
    auc_p_value: Rate | None = Field(
        description="Chance p-value of auc: the probability that guessing reaches at least this AUC on a set of "
                    "this size (one-sided Mann-Whitney). Null in results of older workers, which then count as not "
                    "beyond chance.")
    tpr_at_1pct_fpr_p_value: Rate | None = Field(
        description="Chance p-value of tpr_at_1pct_fpr; null when the figure is, or from an older worker.")
    tpr_at_0_1pct_fpr_p_value: Rate | None = Field(
        description="Chance p-value of tpr_at_0_1pct_fpr; null when the figure is, or from an older worker.")
    num_members: Count = Field(description="Members in the evaluation set.")
    num_non_members: Count = Field(description="Non-members in the evaluation set.")
    decision_threshold: float = Field(description="The score at or above which a record is called a member.")
    threshold_source: str = Field(
        description="Where decision_threshold comes from, in words (never the evaluation set's membership); "
                    "empty when the worker did not say.")


class ClassMetrics(_Model):
    """Membership metrics among the evaluation records of one class label."""

    label: int = Field(description="The class label.")
    num_members: Count = Field(description="Evaluated members with this label.")
    num_non_members: Count = Field(description="Evaluated non-members with this label.")
    auc: Rate = Field(description="ROC AUC among these records.")
    auc_interval: Interval | None = Field(description="95% confidence interval of auc (DeLong).")
    tpr_at_1pct_fpr: Rate | None = Field(
        description="Highest TPR at FPR <= 1% among these records; null with fewer than 100 non-members of the "
                    "label.")


class Half(_Model):
    """A share of the evaluation records."""

    members: int = Field(ge=1)
    non_members: int = Field(ge=1)


class OperatingPoint(_Model):
    """The chosen point and the bounding half's counts at it."""

    threshold: float = Field(description="Member when score >= threshold.")
    inequality: Inequality = Field(description="The DP inequality the estimate comes from.")
    true_positives: Count = Field(description="Bounding-half members at or above the threshold.")
    false_positives: Count = Field(description="Bounding-half non-members at or above the threshold.")
    tpr: Rate = Field(description="Their share of the bounding half's members.")
    fpr: Rate = Field(description="Their share of the bounding half's non-members.")
    tpr_lower: Rate = Field(description="The TPR's lower limit the estimate uses.")
    fpr_upper: Rate = Field(description="The FPR's upper limit the estimate uses.")


class EpsilonEstimate(_Model):
    """An empirical epsilon estimate. The operating point (a threshold, member when score >= threshold,
    and one of the DP inequalities TPR <= e^epsilon FPR + delta or 1 - FPR <= e^epsilon (1 - TPR) + delta)
    is chosen on one half of the evaluation records (members and non-members each split with a fixed
    seed); on the other half, TPR is replaced by its one-sided 97.5% Clopper-Pearson lower limit and FPR
    by its 97.5% upper limit (both hold together at 95%), and epsilon is the smallest value the chosen
    inequality allows, 0 when it rules out nothing. It is a lower bound on the training's epsilon, at this
    confidence, only under the stated assumption; otherwise an estimate."""

    epsilon: float = Field(ge=0, description="The estimate; 0 when it rules out nothing.")
    delta: float = Field(gt=0, lt=1, description="The delta it is stated at (risk_policy.epsilon_estimate.delta).")
    confidence: float = Field(gt=0, lt=1, description="The joint confidence of the two rate limits.")
    assumption: str = Field(description="Under which condition the estimate is a lower bound on the training's "
                                        "epsilon.")
    choosing_half: Half = Field(description="Records the operating point was chosen on.")
    bounding_half: Half = Field(description="Records the rates were measured on.")
    operating_point: OperatingPoint | None = Field(
        description="Null when no point on the choosing half rules out any epsilon (the estimate is then 0).")


class ExposedRecord(_Model):
    """A member record and its membership score."""

    index: Count = Field(description="Position of the record in the target's member dataset, from 0.")
    score: float = Field(description="Its membership score, on the scale of metrics.decision_threshold.")


class ScoreHistogram(_Model):
    """Membership scores of the balanced evaluation set counted over shared bins, members against
    non-members. Bin i holds scores s with edges[i] <= s < edges[i + 1], the last bin also s == edges[-1]."""

    edges: list[float] = Field(min_length=2, description="Bin edges, increasing; one more than the bins.")
    member_counts: list[Count] = Field(description="Members per bin.")
    non_member_counts: list[Count] = Field(description="Non-members per bin.")


class AttackError(_Model):
    """Why an attack failed."""

    code: str = Field(description="gRPC status code name, e.g. INVALID_ARGUMENT (a fault in the task or its files) "
                                  "or INTERNAL.")
    field: str = Field(description="The offending task field, e.g. attacks[1].args.target_model; empty when not "
                                   "tied to one.")
    message: str = Field(description="What was wrong and what to do about it.")
    fault: Literal["task", "infrastructure", "service"] | None = Field(
        description="Whose fault: task (the task or its files), infrastructure (a worker, a link, a limit of the "
                    "deployment) or service (a bug of privaudit); null when the result does not say (an older "
                    "worker).")
    retryable: bool | None = Field(description="Whether running the attack again may succeed; null when the result "
                                               "does not say.")


# What a failed attack's fields must hold: the schema says it with if/then/else, validation alike.
_SUCCEEDED_ONLY = {"metrics": {"type": "object"}, "risk": {"not": {"const": UNRATED}}, "error": {"type": "null"},
                   "target_model": {"type": "string"}, "beyond_chance_at": {"type": "number"}}
_FAILED = {"metrics": {"type": "null"}, "risk": {"const": UNRATED}, "error": {"type": "object"},
           "target_model": {"type": "null"}, "roc": {"maxItems": 0}, "beyond_chance_at": {"type": "null"},
           "per_class": {"maxItems": 0}, "epsilon_estimate": {"type": "null"},
           "epsilon_estimate_missing": {"type": "null"}, "most_exposed": {"maxItems": 0},
           "score_histogram": {"type": "null"}}


class AttackReport(_Model):
    """One attack of the task and what it found."""

    model_config = ConfigDict(json_schema_extra={"allOf": [{
        "if": {"properties": {"status": {"const": "succeeded"}}},
        "then": {"properties": _SUCCEEDED_ONLY}, "else": {"properties": _FAILED}}]})

    index: Index
    name: AttackName
    type: Literal["MEMBERSHIP_INFERENCE_ATTACK"] = Field(description="The attack family, as in the task file.")
    description: str = Field(description="What the attack does.")
    status: Literal["succeeded", "failed"] = Field(description="Whether the attack ran to the end.")
    target_model: str | None = Field(
        description="Folder of the attacked model, relative to the storage root, or host:port/model[/version] of a "
                    "deployed one; null when the attack failed.")
    target_queries: int = Field(
        0, ge=0, description="Records the attack sent to a deployed target model over the Open Inference Protocol, "
                             "each augmented copy counted (a failed attack's too); 0 for a model loaded from a folder.")
    metrics: Metrics | None = Field(description="What the attack achieved; null when it failed.")
    roc: list[tuple[Rate, Rate]] = Field(
        description="The ROC curve on the evaluation set as [fpr, tpr] points by increasing fpr; empty when the "
                    "attack failed.")
    risk: RiskName = Field(description="The level the risk policy gives the attack; UNRATED when it failed.")
    risk_reason: str = Field(
        description="The evidence for the level in one sentence, e.g. \"AUC 0.7100 [0.6700, 0.7500] >= 0.65, "
                    "beyond chance (p = 3e-12)\"; for a failed attack, that it was not rated.")
    beyond_chance_at: float | None = Field(
        gt=0, le=1, description="The p-value at or below which this attack's figures count as beyond chance: "
                                "risk_policy.beyond_chance.alpha divided by the number of figures measured; null "
                                "when it failed.")
    warnings: list[str] = Field(description="Caveats a reader of the figures must see, in plain words; empty when "
                                            "there are none.")
    per_class: list[ClassMetrics] = Field(
        description="Metrics per class label of the evaluation set, by increasing label; empty when the worker "
                    "sent none.")
    epsilon_estimate: EpsilonEstimate | None = Field(
        description="The empirical epsilon estimate; null when the attack failed or has none (see "
                    "epsilon_estimate_missing).")
    epsilon_estimate_missing: str | None = Field(
        description="Why a succeeded attack has no epsilon estimate (no record scores in the result, or too few "
                    "records to split); null otherwise.")
    most_exposed: list[ExposedRecord] = Field(
        max_length=MAX_MOST_EXPOSED,
        description="The members the attack exposes most: the (up to) 20 highest membership scores over the whole "
                    "member dataset, highest first, ties by lower index; empty when the attack failed.")
    score_histogram: ScoreHistogram | None = Field(description="Null when the attack failed.")
    error: AttackError | None = Field(description="Why the attack failed; null when it succeeded.")
    timings: dict[str, Annotated[float, Field(ge=0)]] = Field(
        description="Wall time in seconds per stage (load, predict, train_shadow, fit_attack, score, ...).")

    @model_validator(mode="after")
    def _consistent_with_status(self) -> Self:
        if self.status == "succeeded":
            wrong = {"metrics": self.metrics is None, "risk": self.risk == UNRATED, "error": self.error is not None,
                     "target_model": self.target_model is None, "beyond_chance_at": self.beyond_chance_at is None}
        else:
            wrong = {"metrics": self.metrics is not None, "risk": self.risk != UNRATED, "error": self.error is None,
                     "target_model": self.target_model is not None, "roc": bool(self.roc),
                     "beyond_chance_at": self.beyond_chance_at is not None, "per_class": bool(self.per_class),
                     "epsilon_estimate": self.epsilon_estimate is not None,
                     "epsilon_estimate_missing": self.epsilon_estimate_missing is not None,
                     "most_exposed": bool(self.most_exposed), "score_histogram": self.score_histogram is not None}
        if any(wrong.values()):
            raise ValueError(f"a {self.status} attack cannot have these {', '.join(k for k, v in wrong.items() if v)}")
        return self


class RiskyAttack(_Model):
    """An attack rated MIDDLE or HIGH."""

    index: Index
    name: AttackName
    risk: Literal["MIDDLE", "HIGH"]
    reason: str = Field(description="The evidence for the level.")


class FailedAttack(_Model):
    """An attack that failed; it is not rated."""

    index: Index
    name: AttackName
    error: AttackError


class Recommendation(_Model):
    """A defence chosen by what was found."""

    id: Literal["differential_privacy", "confidence_masking", "regularisation", "knowledge_distillation"] = Field(
        description="Stable identifier of the defence, for programs.")
    title: str = Field(description="The defence's name.")
    description: str = Field(description="What the defence does, in one paragraph.")
    why: str = Field(description="Why it applies to this model, from the findings.")


class Summary(_Model):
    """The attacks behind the verdict, and the advice."""

    risky_attacks: list[RiskyAttack] = Field(description="The attacks rated MIDDLE or HIGH, in task order.")
    failed_attacks: list[FailedAttack] = Field(description="The attacks that failed, in task order.")
    recommendations: list[Recommendation] = Field(
        description="Defences chosen by what was found, always in the same order: differential_privacy, "
                    "confidence_masking, regularisation, knowledge_distillation (each only when it applies). "
                    "Empty when the overall risk is LOW or UNRATED.")
    notes: list[str] = Field(description="What was deliberately not advised and why, or the caveats of a clean "
                                         "result.")


class ModelSummary(_Model):
    """A target model as a succeeded attack measured it."""

    name: str = Field(description="The model folder's name.")
    path: str = Field(description="The model folder, relative to the storage root.")
    train_acc: Rate = Field(description="Accuracy on the whole member dataset.")
    test_acc: Rate = Field(description="Accuracy on the whole non-member dataset.")


class DatasetSummary(_Model):
    """A dataset a succeeded attack read."""

    name: str = Field(description="The dataset folder's name.")
    path: str = Field(description="The dataset folder, relative to the storage root.")
    is_member_dataset: bool = Field(description="True for a set of training records of the model it was used with.")
    length: Count = Field(description="Number of records the dataset returned.")
    role: str = Field(description="What the attack used it for, e.g. target or shadow; empty when the worker did "
                                  "not say.")


class ArtifactDigest(_Model):
    """What a model or dataset folder held when the audit read it."""

    name: str = Field(description="The folder's name.")
    path: str = Field(description="The folder, relative to the storage root.")
    digest: str = Field(
        description="SHA-256 (hex) of the content: for a model its code file, its weights file and the structure "
                    "of the layer its code builds; for a dataset its records (shapes, labels, samples as float32), so "
                    "the same records give the same digest whatever file holds them. Empty when the worker did not "
                    "say (an older worker, or a dataset too large to be read into memory).")


class Provenance(_Model):
    """Where the report comes from: enough to tell whether two reports measured the same thing."""

    privaudit_version: str = Field(description="The version of privaudit that built the report.")
    generated_at: AwareDatetime = Field(description="When the report was built (UTC).")
    seed: int | None = Field(ge=0, description="The audit's seed; null when the request did not say.")
    task_digest: str = Field(
        description="SHA-256 (hex) of the task as the orchestrator ran it (defaults filled in, seed included, "
                    "serialised canonically); empty when the request did not say.")
    models: list[ArtifactDigest] = Field(description="The target models measured, in order of first appearance.")
    datasets: list[ArtifactDigest] = Field(description="The datasets read, in order of first appearance, each once.")
    worker_devices: list[str] = Field(
        description="The devices the attacks ran on, e.g. cpu or gpu:0, each once; empty when no worker said.")


class FigureChange(_Model):
    """One figure of one attack in the baseline and the new report."""

    old: Rate | None = Field(description="In the baseline; null when not measured there.")
    new: Rate | None = Field(description="In the new report; null when not measured there.")
    delta: float | None = Field(description="new - old; null unless both were measured.")
    z: float | None = Field(description="delta over its standard error (see comparison.method); null unless both "
                                        "were measured, or when a change has no standard error (two figures "
                                        "with zero-width intervals: then any change is beyond noise).")
    beyond_noise: bool = Field(description="Whether |z| is beyond what measurement noise explains (see "
                                           "comparison.method).")
    direction: Literal["worse", "better", "unchanged"] = Field(
        description="worse: the attack does measurably better on the new model (more leakage); better: measurably "
                    "worse; unchanged otherwise.")


class AttackComparison(_Model):
    """One attack found in both reports (same index and name)."""

    index: Index
    name: AttackName
    auc: FigureChange
    tpr_at_1pct_fpr: FigureChange
    risk_before: RiskName
    risk_after: RiskName
    regressed: bool = Field(description="A figure got worse beyond noise, or the rated risk rose.")


class Comparison(_Model):
    """The report against a baseline report: did the change help?"""

    baseline_task_id: str = Field(description="The baseline report's task id.")
    baseline_generated_at: AwareDatetime | None = Field(description="When the baseline report was built.")
    attacks: list[AttackComparison] = Field(description="The attacks in both reports, in task order.")
    unmatched: list[str] = Field(description="Attacks in one report only, in words; they are not compared.")
    regressed: bool = Field(description="Some compared attack regressed.")
    method: str = Field(description="How beyond_noise is decided, in words.")


class AuditReport(_Model):
    """The JSON rendering of an audit report (ReportFormat REPORT_FORMAT_JSON). Keys are sorted and lists
    are in task order."""

    model_config = ConfigDict(title="privaudit membership-inference audit report")

    schema_version: Literal[SCHEMA_VERSION] = Field(
        description=f"Version of this schema that the report follows, MAJOR.MINOR. {HISTORY}")
    task_id: str = Field(description="The id of the audit task the results belong to.")
    risk: RiskName = Field(description="Overall risk: the worst level among the succeeded attacks; UNRATED when no "
                                       "attack succeeded. Failed attacks do not count.")
    risk_policy: Policy = Field(description="The risk policy the attacks were rated by, so that the report explains "
                                            "its own levels.")
    models: list[ModelSummary] = Field(
        description="The target models the succeeded attacks measured, one entry per distinct measurement, in order "
                    "of first appearance.")
    datasets: list[DatasetSummary] = Field(
        description="The datasets the succeeded attacks read, one entry per distinct use, in order of first "
                    "appearance.")
    attacks: list[AttackReport] = Field(min_length=1, description="Every attack of the task, succeeded or failed, "
                                                                  "ordered by index.")
    summary: Summary
    provenance: Provenance
    comparison: Comparison | None = Field(default=None,
                                          description="The change since a baseline report; null without one.")
    partial: bool = Field(default=False, description="True for a report of an audit that did not finish (cancelled "
                                                     "or failed): only the attacks done by then.")
    partial_reason: str = Field(default="", description="Why the report is partial; empty when it is not.")


class _EveryFieldPresent(GenerateJsonSchema):
    """Fields with defaults are required too (the risk policy's included): the JSON always has them."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        return True


def schema() -> dict[str, Any]:
    """report.schema.json's content: the JSON Schema (draft 2020-12) of the JSON report."""
    generated = AuditReport.model_json_schema(mode="serialization", schema_generator=_EveryFieldPresent)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:privaudit:report:{SCHEMA_VERSION}", **generated}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_path() -> Path:
    return Path(str(resources.files("privaudit.services.reporter").joinpath(SCHEMA_FILE)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", action="store_true", help=f"rewrite {SCHEMA_FILE} from the models")
    if not parser.parse_args(argv).schema:
        sys.stdout.write(schema_text())
        return 0
    schema_path().write_text(schema_text())
    print(f"wrote {schema_path()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
