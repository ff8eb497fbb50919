"""The ReporterService: rate the results, render the report, stream summary then chunks.

A request it cannot render raises InvalidArgument; the server's interceptor makes it the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc

from privaudit.v1 import report_pb2, reporter_pb2, reporter_pb2_grpc
from services.common.errors import InvalidArgument
from services.common.task_spec import check_task_id
from services.reporter import render_json, render_text
from services.reporter.policy import Policy
from services.reporter.report import Report, ReportRequestError, build_report

log = logging.getLogger(__name__)

SERVICE_NAME = "privaudit.v1.ReporterService"
# Far below gRPC's 4 MiB message limit, whatever the report's size.
CHUNK_BYTES = 64 * 1024


def render_html(report: Report) -> bytes:
    """The HTML report; its module (matplotlib, jinja2) is imported with the first one, so a
    reporter that renders text and JSON alone never loads them."""
    from services.reporter import render_html as html

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
        report_format = request.format or report_pb2.REPORT_FORMAT_TEXT
        renderer = RENDERERS.get(report_format)
        if renderer is None:
            supported = ", ".join(report_pb2.ReportFormat.Name(f) for f in RENDERERS)
            raise InvalidArgument.at("format", f"{request.format} is not a format this reporter renders; use one "
                                               f"of {supported}")
        try:
            report = build_report(request.task_id, request.results, self.policy)
        except ReportRequestError as exc:
            raise ReportRefused.at(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from None
        data = renderer(report)
        log.info("report built: task %s, format %s, %d attacks, overall risk %s, %d bytes",
                 request.task_id or "(no id)", report_pb2.ReportFormat.Name(report_format), len(report.attacks),
                 report.overall_risk.name if report.overall_risk else "not rated", len(data))
        yield reporter_pb2.BuildReportResponse(summary=report.summary_proto())
        for chunk in chunks(data, report_format):
            yield reporter_pb2.BuildReportResponse(chunk=chunk)
