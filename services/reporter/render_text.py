"""The plain-text report, in the layout of the original PrivBox report: Models, Datasets,
Attacks, Summary, one tab-indented item per line."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from privaudit.services.common.errors import code_name
from privaudit.services.reporter.epsilon_terms import ASSUMPTION
from privaudit.services.reporter.figures import (
    AUC,
    LOW_FPR_FIGURES,
    RISK_FIGURES,
    TPR_AT_1PCT_FPR,
    decimal,
    epsilon_basis,
    epsilon_claim,
    interval_of,
    p_equals,
    probability,
    score,
    scores_apart,
    signed,
    threshold_source,
    timestamp,
    with_interval,
)
from privaudit.services.reporter.report import AttackEntry, Report
from privaudit.services.reporter.report_model import Comparison, FigureChange, Provenance
from privaudit.services.reporter.views import DatasetRoles, dataset_roles, exposed_groups
from privaudit.v1 import results_pb2

TITLE = "Membership Inference Audit Report"
# What a provenance field that the report does not know reads as.
NOT_KNOWN = "not known"
# The figures a comparison gives for each attack: (AttackComparison field, label).
COMPARED_FIGURES = (("auc", AUC.label), ("tpr_at_1pct_fpr", TPR_AT_1PCT_FPR.label))
# How many of an attack's most exposed members the text names (JSON and HTML name them all).
EXPOSED_SHOWN = 5


def render(report: Report) -> bytes:
    lines = [f"PARTIAL REPORT: {report.partial_reason}", ""] if report.partial_reason else []
    lines += [TITLE, f"Task: {report.task_id or '(no id)'}"]
    lines += ["Models:", *(_or_none(_model(m) for m in report.models))]
    lines += ["Datasets:", *(_or_none(_dataset(d) for d in dataset_roles(report.datasets)))]
    lines += ["Attacks:", *(line for entry in report.attacks for line in _attack(entry))]
    lines += ["Summary:", *_summary(report)]
    if report.comparison is not None:
        lines += ["Comparison:", *_comparison(report.comparison)]
    lines += ["Provenance:", *_provenance(report.provenance)]
    return ("\n".join(lines) + "\n").encode()


def _or_none(items: Iterable[str]) -> list[str]:
    return list(items) or ["\t(none: no attack completed)"]


def _model(model: results_pb2.ModelSummary) -> str:
    return f"\t- name: {model.name}, train_acc: {decimal(model.train_acc)}, test_acc: {decimal(model.test_acc)}"


def _dataset(dataset: DatasetRoles) -> str:
    roles = f"role: {dataset.roles[0]}" if len(dataset.roles) == 1 else f"roles: {', '.join(dataset.roles)}"
    return (f"\t- name: {dataset.summary.name}, is_member_dataset: {str(dataset.is_member_dataset).lower()}, "
            f"length: {dataset.summary.length}, {roles}")


def _attack(entry: AttackEntry) -> list[str]:
    lines = [f"\t- name: {entry.assessment.label}", f"\t  attack description: {entry.info.description}"]
    if entry.result.target_queries:
        lines.append(f"\t  queries to the deployed target: {entry.result.target_queries:,}")
    if not entry.succeeded:
        return [*lines, f"\t  FAILED: {_error(entry.result.error)}"]
    m = entry.result.metrics
    low_fpr = ", ".join(f"{figure.label} = {figure.shown(m)}" for figure in LOW_FPR_FIGURES)
    return [
        *lines,
        f"\t  attack results: acc = {decimal(m.accuracy)}, auc = {AUC.shown(m)}, "
        f"precision = {decimal(m.precision)}, recall = {decimal(m.recall)}",
        f"\t  advantage = {decimal(m.advantage)}, {low_fpr}",
        f"\t  evaluation set: {m.num_members} members, {m.num_non_members} non-members",
        f"\t  decision threshold: {score(m.decision_threshold)} ({threshold_source(m)})",
        *(f"\t  warning: {' '.join(warning.split())}" for warning in entry.result.warnings),
        f"\t  {_p_values(entry)}",
        f"\t  risk: {entry.assessment.risk.name}, {entry.assessment.reason}",
        f"\t  empirical epsilon estimate: {_epsilon(entry)}",
        *_per_class(entry.result.per_class),
        *_exposed(entry.result),
    ]


def _p_values(entry: AttackEntry) -> str:
    """The chance p-values of the measured figures and the level they are held to."""
    m = entry.result.metrics
    measured = [figure for figure in RISK_FIGURES if figure.value(m) is not None]
    shown = ", ".join(f"{figure.label} {p_equals(p) if (p := figure.p_value(m)) is not None else 'n/a'}"
                      for figure in measured)
    return f"chance p-values: {shown} (beyond chance at p <= {probability(entry.assessment.significance)})"


def _epsilon(entry: AttackEntry) -> str:
    if entry.epsilon is None:
        return f"none: {entry.epsilon_missing}"
    return f"{epsilon_claim(entry.epsilon)} ({epsilon_basis(entry.epsilon)})"


def _per_class(classes: Sequence[results_pb2.ClassMetrics]) -> list[str]:
    """A compact table, columns aligned: label, members, non-members, AUC [interval], TPR@1%FPR."""
    if not classes:
        return []
    rows = [("label", "members", "non-members", "AUC [95% interval]", "TPR@1%FPR")] + [
        (str(c.label), str(c.num_members), str(c.num_non_members),
         with_interval(c.auc, interval_of(c, "auc_interval")),
         decimal(c.tpr_at_1pct_fpr) if c.HasField("tpr_at_1pct_fpr") else "n/a")
        for c in classes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = (False, True, True, False, False)
    table = ["  ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right, strict=True))
             .rstrip() for row in rows]
    return ["\t  per class:", *(f"\t    {line}" for line in table)]


def _exposed(result: results_pb2.AttackResult) -> list[str]:
    """The first EXPOSED_SHOWN of the most exposed members, tied ones said to be tied, e.g.
    `#361 (0.9721), 3 members share the score 0.9384 (#66, #116, #389)`."""
    if not result.most_exposed:
        return []
    groups = exposed_groups(result)
    parts, room = [], EXPOSED_SHOWN
    for group, value in zip(groups, scores_apart([g.score for g in groups]), strict=True):
        if room == 0:
            break
        shown = group.indices[:room]
        room -= len(shown)
        if not group.tied:
            parts.append(f"#{shown[0]} ({value})")
            continue
        more = ", ..." if group.sharing > len(shown) else ""
        parts.append(f"{group.sharing}{'' if group.counted else ' or more'} members share the score {value} "
                     f"({', '.join(f'#{i}' for i in shown)}{more})")
    rest = (f"; {len(result.most_exposed)} in the JSON and HTML reports"
            if len(result.most_exposed) > EXPOSED_SHOWN else "")
    return [f"\t  most exposed members (record #, score): {', '.join(parts)}{rest}"]


def _summary(report: Report) -> list[str]:
    lines = [f"\tOverall risk: {report.overall_risk.name if report.overall_risk else 'not rated'}"]
    if report.risky:
        lines.append("\tWARNING! The model leaks membership to these attacks:")
        lines += [f"\t{n}, {e.assessment.label}: {e.assessment.risk.name} risk, {e.assessment.reason}"
                  for n, e in enumerate(report.risky, 1)]
    if report.failed:
        lines.append("\tFailed attacks (not rated, not counted in the overall risk):")
        lines += [f"\t- {e.assessment.label}: {_error(e.result.error)}" for e in report.failed]
    if report.strongest_estimate:
        lines.append(f"\tEpsilon estimates are lower bounds on the training's epsilon only if {ASSUMPTION}; "
                     "otherwise they are empirical estimates.")
    advice = report.advice
    if advice.recommendations:
        lines += ["", "\tRecommended defences, in this order:"]
        for n, rec in enumerate(advice.recommendations, 1):
            lines += [f"\t{n}, {rec.title}. {rec.description}", f"\t   Why here: {rec.why}"]
    lines += ["", *(f"\tNote: {note}" for note in advice.notes)] if advice.notes else []
    return lines


def _comparison(comparison: Comparison) -> list[str]:
    """Each attack's figures before and after and its risk, then the verdict and how noise is judged."""
    when = f", built {timestamp(comparison.baseline_generated_at)}" if comparison.baseline_generated_at else ""
    lines = [f"\tbaseline: task {comparison.baseline_task_id or '(no id)'}{when}"]
    for attack in comparison.attacks:
        changes = ", ".join(f"{label} {_change(getattr(attack, field))}" for field, label in COMPARED_FIGURES)
        verdict = "; REGRESSED" if attack.regressed else ""
        lines.append(f"\t- {attack.name} (attacks[{attack.index}]): {changes}, risk {attack.risk_before} -> "
                     f"{attack.risk_after}{verdict}")
    lines += [f"\t- not compared: {unmatched}" for unmatched in comparison.unmatched]
    lines.append(f"\tverdict: {'REGRESSED' if comparison.regressed else 'no attack regressed'}")
    lines.append(f"\tbeyond noise: {comparison.method}")
    return lines


def _change(change: FigureChange) -> str:
    """`0.7050 -> 0.6500 (-0.0550, better)`, `n/a` for a side that was not measured."""
    old, new = (decimal(v) if v is not None else "n/a" for v in (change.old, change.new))
    delta = f"{signed(change.delta)}, " if change.delta is not None else ""
    return f"{old} -> {new} ({delta}{change.direction})"


def _provenance(provenance: Provenance) -> list[str]:
    return [
        f"\tprivaudit version: {provenance.privaudit_version}",
        f"\tgenerated at: {timestamp(provenance.generated_at)}",
        f"\tseed: {provenance.seed if provenance.seed is not None else NOT_KNOWN}",
        f"\ttask digest: {provenance.task_digest or NOT_KNOWN}",
        f"\tworker devices: {', '.join(provenance.worker_devices) or NOT_KNOWN}",
        *(f"\t- model {m.name} ({m.path}): {m.digest or NOT_KNOWN}" for m in provenance.models),
        *(f"\t- dataset {d.name} ({d.path}): {d.digest or NOT_KNOWN}" for d in provenance.datasets),
    ]


def _error(error: results_pb2.AttackError) -> str:
    where = f"{error.field}: " if error.field else ""
    message = " ".join(error.message.split()) or "no message"
    return f"({code_name(error)}) {where}{message}"
