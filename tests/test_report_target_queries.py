"""Queries to a deployed target (issue 19, part 2) in the JSON, text and HTML reports: the count each
attack's result carries, shown for a failed attack too (its queries were spent), absent for a folder."""

from __future__ import annotations

import json

from test_reporter_fixtures import failed, make_report, succeeded, validate_json

from privaudit.services.reporter import render_html, render_json, render_text


def _report():
    remote, spent, local = succeeded(0, "LOSS"), failed(1, "LOSS", field="attacks[1].args.target_model.max_queries"), \
        succeeded(2, "BASELINE")
    remote.target_queries, spent.target_queries = 12_800, 400
    return make_report(remote, spent, local)


def test_the_json_report_carries_each_attacks_queries():
    text = render_json.render(_report()).decode()
    validate_json(text)
    assert [a["target_queries"] for a in json.loads(text)["attacks"]] == [12_800, 400, 0]


def test_text_and_html_show_queries_only_where_a_deployed_target_was_queried():
    text = render_text.render(_report()).decode()
    assert [line.strip() for line in text.splitlines() if "queries to the deployed target" in line] == \
        ["queries to the deployed target: 12,800", "queries to the deployed target: 400"]
    html = render_html.render(_report()).decode()
    assert html.count("Queries to the deployed target:") == 2 and "12,800" in html
