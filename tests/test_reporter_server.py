"""The ReporterService over real gRPC, chunking, request errors and the command line."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from import_footprint import heavy_imports
from test_reporter_fixtures import POLICY, PROVENANCE, class_metrics, failed, make_report, succeeded, validate_json

from privaudit.services.common.channels import open_channel
from privaudit.services.common.server import start_server
from privaudit.services.reporter import render_html, render_json, render_text
from privaudit.services.reporter.__main__ import main
from privaudit.services.reporter.server import CHUNK_BYTES, SERVICE_NAME, ReporterServicer, chunks
from privaudit.v1 import report_pb2, reporter_pb2, reporter_pb2_grpc, results_pb2


@pytest.fixture(scope="module")
def stub() -> Iterator[reporter_pb2_grpc.ReporterServiceStub]:
    servicer = ReporterServicer(POLICY)
    service = start_server(lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(servicer, s),
                           [SERVICE_NAME], "127.0.0.1:0", max_workers=2)
    channel = open_channel(service.address)
    try:
        yield reporter_pb2_grpc.ReporterServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        service.stop(grace=0)


def _build(stub, results, report_format=report_pb2.REPORT_FORMAT_UNSPECIFIED, task_id="task-1", **fields):
    """The summary and the chunks of one BuildReport call (with PROVENANCE unless `fields` say)."""
    request = reporter_pb2.BuildReportRequest(task_id=task_id, results=results, format=report_format,
                                              **{"provenance": PROVENANCE, **fields})
    first, *rest = stub.BuildReport(request, timeout=30)
    assert first.WhichOneof("part") == "summary"
    assert all(r.WhichOneof("part") == "chunk" for r in rest)
    return first.summary, [r.chunk for r in rest]


@pytest.mark.parametrize(("size", "pieces"), [(0, [0]), (1, [1]), (CHUNK_BYTES, [CHUNK_BYTES]),
                                              (CHUNK_BYTES + 1, [CHUNK_BYTES, 1]),
                                              (3 * CHUNK_BYTES, [CHUNK_BYTES] * 3)])
def test_chunks_cut_at_the_limit_and_mark_the_last(size: int, pieces: list[int]) -> None:
    data = bytes(i % 251 for i in range(size))
    cut = list(chunks(data, report_pb2.REPORT_FORMAT_JSON))
    assert [len(c.data) for c in cut] == pieces
    assert [c.last for c in cut] == [False] * (len(pieces) - 1) + [True]
    assert b"".join(c.data for c in cut) == data
    assert {c.format for c in cut} == {report_pb2.REPORT_FORMAT_JSON}


def test_text_report_by_default(stub) -> None:
    results = [succeeded(0, auc=0.6), failed(1), succeeded(2, "ML-LEAK", auc=0.7)]
    summary, pieces = _build(stub, results)
    assert summary.overall_risk == report_pb2.RISK_LEVEL_HIGH
    assert summary.failed_attacks == 1
    assert [(a.attack_index, a.attack_name, a.risk) for a in summary.attacks] == [
        (0, "BASELINE", report_pb2.RISK_LEVEL_MIDDLE), (1, "ML-LEAK", report_pb2.RISK_LEVEL_UNSPECIFIED),
        (2, "ML-LEAK", report_pb2.RISK_LEVEL_HIGH)]
    assert summary.attacks[2].reason == "AUC 0.7000 [0.6600, 0.7400] >= 0.65, beyond chance (p = 1e-06)"
    assert [(c.format, c.last) for c in pieces] == [(report_pb2.REPORT_FORMAT_TEXT, True)]
    text = pieces[0].data.decode()
    assert text.startswith("Membership Inference Audit Report\nTask: task-1\nModels:\n")


def test_large_json_report_arrives_in_chunks_that_make_the_whole(stub, caplog) -> None:
    results = [succeeded(i, ("BASELINE", "ML-LEAK", "LABEL-ONLY")[i % 3], auc=0.5 + i / 200, roc_points=400)
               for i in range(64)]
    with caplog.at_level(logging.INFO, logger="privaudit.services.reporter.server"):
        summary, pieces = _build(stub, results, report_pb2.REPORT_FORMAT_JSON, task_id="big")
    data = b"".join(c.data for c in pieces)
    assert len(pieces) > 3
    assert all(len(c.data) <= CHUNK_BYTES for c in pieces)
    assert [c.last for c in pieces] == [False] * (len(pieces) - 1) + [True]
    assert data == render_json.render(make_report(*results, task_id="big"))
    document = validate_json(data)
    assert len(document["attacks"]) == 64 and len(document["attacks"][0]["roc"]) == 400
    assert summary.overall_risk == report_pb2.RISK_LEVEL_HIGH
    assert f"report built: task big, REPORT_FORMAT_JSON {len(data)} bytes, 64 attacks, overall risk HIGH" \
        in caplog.messages


def _with(result: results_pb2.AttackResult, change: Callable[[results_pb2.AttackResult], object]):
    change(result)
    return result


def _nan_auc() -> results_pb2.AttackResult:
    result = succeeded(0)
    result.metrics.auc = float("nan")
    return result


@pytest.mark.parametrize(
    ("results", "report_format", "message"),
    [
        ([], report_pb2.REPORT_FORMAT_TEXT, "results: the request has no attack results"),
        ([results_pb2.AttackResult(attack_index=0, attack_name="BASELINE",
                                   status=results_pb2.ATTACK_STATUS_SUCCEEDED)],
         report_pb2.REPORT_FORMAT_TEXT, "results[0].metrics: a succeeded attack must carry its metrics"),
        ([results_pb2.AttackResult(attack_index=0, attack_name="BASELINE")], report_pb2.REPORT_FORMAT_TEXT,
         "results[0].status: must be ATTACK_STATUS_SUCCEEDED or ATTACK_STATUS_FAILED"),
        ([succeeded(0), succeeded(0)], report_pb2.REPORT_FORMAT_TEXT, "results[1].attack_index: attack 0 has two"),
        ([_nan_auc()], report_pb2.REPORT_FORMAT_JSON,
         "results[0].metrics.auc: must be between 0 and 1, got nan"),
        ([succeeded(0)], 7, "format: 7 is not a format this reporter renders; use one of REPORT_FORMAT_TEXT, "
         "REPORT_FORMAT_JSON, REPORT_FORMAT_HTML"),
        ([_with(succeeded(0), lambda r: r.score_histogram.member_counts.append(1))], report_pb2.REPORT_FORMAT_HTML,
         "results[0].score_histogram.member_counts: must have one count per bin (4), got 5"),
        ([_with(succeeded(0), lambda r: r.score_histogram.edges.__setitem__(1, 0.9))], report_pb2.REPORT_FORMAT_HTML,
         "results[0].score_histogram.edges: must be finite and strictly increasing"),
        ([_with(succeeded(0), lambda r: setattr(r.most_exposed[19], "score", float("inf")))],
         report_pb2.REPORT_FORMAT_JSON, "results[0].most_exposed[19].score: must be a finite number, got inf"),
        ([_with(succeeded(0), lambda r: setattr(r.metrics.auc_interval, "lower", 0.9))], report_pb2.REPORT_FORMAT_TEXT,
         "results[0].metrics.auc_interval: must have 0 <= lower <= upper <= 1, got [0.9, 0.54]"),
        ([_with(succeeded(0), lambda r: setattr(r.metrics, "tpr_at_1pct_fpr_p_value", 1.5))],
         report_pb2.REPORT_FORMAT_TEXT, "results[0].metrics.tpr_at_1pct_fpr_p_value: must be between 0 and 1, got 1.5"),
        ([_with(succeeded(0, per_class=(class_metrics(1, 10, 10, 0.6),)),
                lambda r: setattr(r.per_class[0], "auc", -0.1))],
         report_pb2.REPORT_FORMAT_JSON, "results[0].per_class[0].auc: must be between 0 and 1, got -0.1"),
        ([_with(succeeded(0), lambda r: r.record_scores.member_evaluated.append(True))], report_pb2.REPORT_FORMAT_TEXT,
         "results[0].record_scores.member_evaluated: must have one flag per score (1003), got 1004"),
        ([_with(succeeded(0), lambda r: r.record_scores.non_member_evaluated.__setitem__(0, False))],
         report_pb2.REPORT_FORMAT_TEXT,
         "results[0].record_scores.non_member_evaluated: flags 999 records, but metrics.num_non_members is 1000"),
        ([_with(succeeded(0), lambda r: r.record_scores.members.__setitem__(5, float("nan")))],
         report_pb2.REPORT_FORMAT_TEXT, "results[0].record_scores.members: must be finite numbers"),
        # Found by fuzzing once every report was also rendered as JSON: each was INTERNAL.
        ([_with(succeeded(0), lambda r: r.timings.add(stage=99))], report_pb2.REPORT_FORMAT_TEXT,
         "results[0].timings[2].stage: 99 is not a Stage"),
        ([_with(failed(0), lambda r: setattr(r.error, "fault", 7))], report_pb2.REPORT_FORMAT_TEXT,
         "results[0].error.fault: 7 is not a Fault"),
        ([_with(succeeded(0), lambda r: setattr(r, "status", 5))], report_pb2.REPORT_FORMAT_TEXT,
         "results[0].status: must be ATTACK_STATUS_SUCCEEDED or ATTACK_STATUS_FAILED"),
        ([_with(succeeded(0), lambda r: r.most_exposed.add(index=3, score=0.1))], report_pb2.REPORT_FORMAT_TEXT,
         "results[0].most_exposed: 21 records; at most 20"),
        ([_with(succeeded(0), lambda r: (r.score_histogram.Clear(), r.score_histogram.edges.append(0.5)))],
         report_pb2.REPORT_FORMAT_TEXT, "results[0].score_histogram.edges: must hold at least 2 edges (one bin)"),
    ],
)
def test_requests_it_cannot_render_are_invalid_argument(stub, results, report_format, message) -> None:
    request = reporter_pb2.BuildReportRequest(task_id="t", results=results, format=report_format)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.BuildReport(request, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


@pytest.mark.parametrize(("task_id", "results", "message"), [
    ("x" * 100_000, [succeeded(0)], "xxx' (100,000 characters) is not an audit id (1 to 64 letters, digits"),
    ("a\nb", [succeeded(0)], "task_id: 'a\\nb' is not an audit id"),
    ("t", [succeeded(i) for i in range(65)], "results: 65 attack results; a task has at most 64 attacks"),
])
def test_requests_no_orchestrator_sends_are_refused_before_any_work(stub, task_id, results, message) -> None:
    """Found by fuzzing: a task_id of any size went into the report and the log, and any number of
    results was rendered (an HTML report of 500 took 90 s)."""
    request = reporter_pb2.BuildReportRequest(task_id=task_id, results=results, format=report_pb2.REPORT_FORMAT_HTML)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.BuildReport(request, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_reporter_does_not_import_paddle_nor_what_only_html_needs() -> None:
    """Paddle never; matplotlib and jinja2 only once an HTML report is asked for; scipy.stats never
    (its import alone took longer than building a report)."""
    modules = ("privaudit.services.reporter.__main__", "privaudit.services.reporter.server")
    assert heavy_imports(modules, ("paddle", "sklearn", "torch", "matplotlib", "jinja2", "scipy.stats")) == []


def test_bad_policy_stops_the_service_naming_the_flag(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("levels: {}\nadvice: {large_accuracy_gap: 2}\n")
    with pytest.raises(SystemExit) as caught:
        main(["--listen", "127.0.0.1:0", "--policy", str(bad)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"--policy: risk policy {bad}: levels.high: Field required" in err
    assert "advice.large_accuracy_gap: Input should be less than or equal to 1 (got 2)" in err


def test_policy_from_the_environment(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PRIVAUDIT_REPORTER_POLICY", str(tmp_path / "missing.yaml"))
    with pytest.raises(SystemExit):
        main(["--listen", "127.0.0.1:0"])
    assert "missing.yaml: cannot read it" in capsys.readouterr().err


def test_html_report_arrives_in_chunks(stub) -> None:
    results = [succeeded(0, "ML-LEAK", auc=0.7), failed(1)]
    summary, pieces = _build(stub, results, report_pb2.REPORT_FORMAT_HTML)
    assert summary.overall_risk == report_pb2.RISK_LEVEL_HIGH
    assert {c.format for c in pieces} == {report_pb2.REPORT_FORMAT_HTML} and len(pieces) > 1
    html = b"".join(c.data for c in pieces)
    assert html == render_html.render(make_report(*results))
    assert html.startswith(b"<!DOCTYPE html>")


def test_json_summary_matches_the_stream_summary(stub) -> None:
    summary, pieces = _build(stub, [succeeded(0, "LABEL-ONLY", auc=0.66)], report_pb2.REPORT_FORMAT_JSON)
    document = json.loads(b"".join(c.data for c in pieces))
    assert report_pb2.RiskLevel.Name(summary.overall_risk) == f"RISK_LEVEL_{document['risk']}"
    assert summary.attacks[0].reason == document["attacks"][0]["risk_reason"]


def _renderings(pieces: list[report_pb2.ReportChunk]) -> dict[int, bytes]:
    """Each format's data; checks that each rendering's chunks are contiguous and end with `last`."""
    data: dict[int, bytes] = {}
    for i, piece in enumerate(pieces):
        assert piece.format not in data or not pieces[i - 1].last, "a rendering's chunks are not contiguous"
        data[piece.format] = data.get(piece.format, b"") + piece.data
        assert piece.last == (i + 1 == len(pieces) or pieces[i + 1].format != piece.format)
    return data


def test_further_formats_follow_the_requested_one_each_once(stub) -> None:
    results = [succeeded(0, auc=0.7), failed(1)]
    JSON, TEXT, HTML = report_pb2.REPORT_FORMAT_JSON, report_pb2.REPORT_FORMAT_TEXT, report_pb2.REPORT_FORMAT_HTML
    _, pieces = _build(stub, results, HTML, also_formats=[JSON, HTML, TEXT, JSON])
    assert list(dict.fromkeys(p.format for p in pieces)) == [HTML, JSON, TEXT]
    report = make_report(*results)
    assert _renderings(pieces) == {HTML: render_html.render(report), JSON: render_json.render(report),
                                   TEXT: render_text.render(report)}
    with pytest.raises(grpc.RpcError) as caught:
        _build(stub, results, TEXT, also_formats=[JSON, 9])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "also_formats[1]: 9 is not a format this reporter renders" in caught.value.details()


def test_a_baseline_report_puts_the_comparison_in_the_report(stub) -> None:
    baseline = render_json.render(make_report(succeeded(0, auc=0.6), task_id="before")).decode()
    _, pieces = _build(stub, [succeeded(0, auc=0.8)], report_pb2.REPORT_FORMAT_JSON, baseline_report_json=baseline)
    comparison = validate_json(b"".join(p.data for p in pieces))["comparison"]
    assert comparison["baseline_task_id"] == "before" and comparison["regressed"]
    assert comparison["attacks"][0]["auc"]["direction"] == "worse"
    assert (comparison["attacks"][0]["risk_before"], comparison["attacks"][0]["risk_after"]) == ("MIDDLE", "HIGH")


@pytest.mark.parametrize(("baseline", "message"), [
    ("{", "baseline_report_json: not a JSON report of schema 3.0 (1 problem(s), the first at the document: "
          "Invalid JSON"),
    (json.dumps({"schema_version": "2.0"}), "the first at schema_version: Input should be '3.0'"),
])
def test_a_baseline_that_is_no_report_is_refused_naming_the_field(stub, baseline, message) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _build(stub, [succeeded(0)], baseline_report_json=baseline)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_without_provenance_the_report_is_dated_now_and_seed_and_task_unknown(stub) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    _, pieces = _build(stub, [succeeded(0)], report_pb2.REPORT_FORMAT_JSON, provenance=None)
    provenance = validate_json(b"".join(p.data for p in pieces))["provenance"]
    assert before <= datetime.fromisoformat(provenance["generated_at"]) <= datetime.now(UTC)
    assert (provenance["seed"], provenance["task_digest"]) == (None, "")


@pytest.mark.parametrize(("provenance", "message"), [
    (report_pb2.ReportProvenance(task_digest="abc"), "provenance.task_digest: must be a SHA-256 in 64 lowercase hex"),
    (report_pb2.ReportProvenance(generated_at=Timestamp(seconds=2**62)),
     "provenance.generated_at: must be a time between the years 1 and 9999, got 4611686018427387904 s"),
    (report_pb2.ReportProvenance(generated_at=Timestamp(nanos=-1)), "provenance.generated_at: must be a time"),
])
def test_provenance_it_cannot_state_is_refused_naming_the_field(stub, provenance, message) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _build(stub, [succeeded(0)], provenance=provenance)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_a_failed_results_leftover_figures_are_not_reported() -> None:
    result = failed(0)
    result.roc.add(fpr=0.5, tpr=0.5)
    result.most_exposed.add(index=1, score=0.5)
    attack = validate_json(render_json.render(make_report(result)))["attacks"][0]
    assert (attack["roc"], attack["most_exposed"], attack["score_histogram"]) == ([], [], None)
