"""The ReporterService: rate the results, compare them with a baseline report when the request
carries one, render the report in each format asked for, stream summary then chunks.

A request it cannot render raises InvalidArgument; the server's interceptor makes it the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

import grpc
import pydantic

from privaudit.services.common.errors import InvalidArgument
from privaudit.services.common.task_spec import check_task_id
from privaudit.services.reporter import render_json, render_text
from privaudit.services.reporter.compare import compare
from privaudit.services.reporter.policy import Policy
from privaudit.services.reporter.report import Report, ReportRequestError, build_report
from privaudit.services.reporter.report_model import SCHEMA_VERSION, AuditReport
from privaudit.v1 import report_pb2, reporter_pb2, reporter_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "privaudit.v1.ReporterService"
# Far below gRPC's 4 MiB message limit, whatever the report's size.
CHUNK_BYTES = 64 * 1024


def render_html(report: Report) -> bytes:
    """The HTML report; its module (matplotlib, jinja2) is imported with the first one, so a
    reporter that renders text and JSON alone never loads them."""
    from privaudit.services.reporter import render_html as html

    return html.render(report)


RENDERERS: dict[int, Callable[[Report], bytes]] = {
    report_pb2.REPORT_FORMAT_TEXT: render_text.render,
    report_pb2.REPORT_FORMAT_JSON: render_json.render,
    report_pb2.REPORT_FORMAT_HTML: render_html,
}


def chunks(data: bytes, report_format: int, size: int = CHUNK_BYTES) -> Iterator[report_pb2.ReportChunk]:
    """`data` in pieces of at most `size` bytes, `last` set on the final one (one empty piece for no data)."""
    for start in range(0, max(len(data), 1), size):
        end = start + size
        yield report_pb2.ReportChunk(format=report_format, data=data[start:end], last=end >= len(data))


class ReportRefused(InvalidArgument):
    """Results that cannot be reported, the field at fault named."""

    prefix = "cannot build the report: "


class ReporterServicer(reporter_pb2_grpc.ReporterServiceServicer):
    def __init__(self, policy: Policy):
        self.policy = policy

    def BuildReport(
        self, request: reporter_pb2.BuildReportRequest, context: grpc.ServicerContext
    ) -> Iterator[reporter_pb2.BuildReportResponse]:
        check_task_id(request.task_id)  # it is in the report and the log
        formats = _formats(request)
        baseline = parse_baseline(request.baseline_report_json) if request.baseline_report_json else None
        try:
            report = build_report(request.task_id, request.results, self.policy,
                                  request.provenance if request.HasField("provenance") else None)
        except ReportRequestError as exc:
            raise ReportRefused.at(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from None
        if baseline is not None:
            report = replace(report, comparison=compare(baseline, render_json.audit_report(report)))
        renderings = [(report_format, RENDERERS[report_format](report)) for report_format in formats]
        log.info("report built: task %s, %s, %d attacks, overall risk %s%s", request.task_id or "(no id)",
                 ", ".join(f"{report_pb2.ReportFormat.Name(f)} {len(data)} bytes" for f, data in renderings),
                 len(report.attacks), report.overall_risk.name if report.overall_risk else "not rated",
                 f", regressed since {baseline.task_id}: {report.comparison.regressed}" if report.comparison else "")
        yield reporter_pb2.BuildReportResponse(summary=report.summary_proto())
        for report_format, data in renderings:
            for chunk in chunks(data, report_format):
                yield reporter_pb2.BuildReportResponse(chunk=chunk)


def parse_baseline(text: str) -> AuditReport:
    """The baseline report of a request; InvalidArgument naming the field when it is not a JSON
    report of this schema's major version."""
    try:
        return AuditReport.model_validate_json(text)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        raise InvalidArgument.at("baseline_report_json", (
            f"not a JSON report of schema {SCHEMA_VERSION} ({exc.error_count()} problem(s), the first at {where}: "
            f"{first['msg']}); give a report that `--format json` wrote with this privaudit or a newer one "
            f"of schema {SCHEMA_VERSION.split('.')[0]}.x")) from None


def _formats(request: reporter_pb2.BuildReportRequest) -> list[int]:
    """The renderings asked for, in order, each once; InvalidArgument naming a format this reporter lacks."""
    asked = [request.format or report_pb2.REPORT_FORMAT_TEXT, *request.also_formats]
    for field, report_format in [("format", asked[0]), *(
            (f"also_formats[{i}]", f) for i, f in enumerate(request.also_formats))]:
        if report_format not in RENDERERS:
            supported = ", ".join(report_pb2.ReportFormat.Name(f) for f in RENDERERS)
            raise InvalidArgument.at(field, f"{report_format} is not a format this reporter renders; use one of "
                                            f"{supported}")
    return list(dict.fromkeys(asked))
