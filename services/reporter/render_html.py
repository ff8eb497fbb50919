"""The HTML report: one self-contained page (styles and figures inside it, nothing fetched),
rendered from report.html.j2, with every string escaped by Jinja's autoescape."""

from __future__ import annotations

from functools import cache

import jinja2

from privaudit.services.reporter.epsilon_terms import ASSUMPTION, CONFIDENCE
from privaudit.services.reporter.figures import (
    AUC,
    LOW_FPR_FIGURES,
    decimal,
    epsilon_basis,
    epsilon_value,
    interval_of,
    p_equals,
    probability,
    score,
    scores_apart,
    signed,
    threshold_source,
    timestamp,
)
from privaudit.services.reporter.plots import ATTACK_COLOURS, RocCurve, histogram_png, roc_png
from privaudit.services.reporter.render_text import COMPARED_FIGURES, NOT_KNOWN, TITLE
from privaudit.services.reporter.report import AttackEntry, Report
from privaudit.services.reporter.risk import Risk
from privaudit.services.reporter.views import (
    ExposedGroup,
    dataset_roles,
    exposed_groups,
    operating_points,
    score_histogram,
)
from privaudit.v1 import results_pb2

TEMPLATE = "report.html.j2"


def render(report: Report) -> bytes:
    succeeded = [entry for entry in report.attacks if entry.succeeded]
    curves = [_curve(e) for e in succeeded]
    page = _template().render(
        title=TITLE,
        report=report,
        auc=AUC,
        low_fpr_figures=LOW_FPR_FIGURES,
        confidence=f"{CONFIDENCE:.0%}",
        assumption=ASSUMPTION,
        interval_of=interval_of,
        colours={e.result.attack_index: ATTACK_COLOURS[i % len(ATTACK_COLOURS)] for i, e in enumerate(succeeded)},
        roc_image=roc_png(curves) if curves else None,
        thinned_curves=[entry.assessment.label for entry, curve in zip(succeeded, curves, strict=True)
                        if not curve.points.from_records],
        histograms={e.result.attack_index: (histogram_png(view, e.result.metrics.decision_threshold), view)
                    for e in succeeded if (view := score_histogram(e.result)) is not None},
        exposed=_exposed,
        datasets=dataset_roles(report.datasets),
        compared_figures=COMPARED_FIGURES,
        not_known=NOT_KNOWN,
    )
    return page.encode()


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "."),
        autoescape=True,  # the template name ends in .j2, which select_autoescape would not cover
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(decimal=decimal, epsilon=epsilon_value, epsilon_basis=epsilon_basis, risk=_risk_name,
                               probability=probability, p_equals=p_equals, score=score,
                               threshold_source=threshold_source, timestamp=timestamp, signed=signed)
    return environment.get_template(TEMPLATE)


def _curve(entry: AttackEntry) -> RocCurve:
    metrics = entry.result.metrics
    return RocCurve(f"{entry.assessment.label}, AUC {AUC.shown(metrics)}", operating_points(entry.result),
                    metrics.num_members, metrics.num_non_members)


def _exposed(result: results_pb2.AttackResult) -> list[tuple[ExposedGroup, str]]:
    """The most exposed members, tied ones grouped, each group with its score as printed."""
    groups = exposed_groups(result)
    return list(zip(groups, scores_apart([g.score for g in groups]), strict=True))


def _risk_name(risk: Risk | None) -> str:
    return risk.name if risk is not None else "not rated"
