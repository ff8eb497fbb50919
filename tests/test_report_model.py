"""The typed report model: report.schema.json is generated from it and current, it refuses what
the schema refuses, and proto risk levels map to its strings."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError
from test_reporter_fixtures import SCHEMA, failed, make_report, succeeded

from privaudit.services.reporter import report_model
from privaudit.services.reporter.render_json import audit_report, render
from privaudit.services.reporter.report_model import AuditReport, risk_name
from privaudit.v1 import report_pb2


def test_the_committed_schema_is_the_one_the_models_give() -> None:
    """Run `python -m privaudit.services.reporter.report_model --schema` after changing a model."""
    assert report_model.schema_path().read_text() == report_model.schema_text()
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"] == "urn:privaudit:report:3.0"
    assert SCHEMA["properties"]["schema_version"]["const"] == report_model.SCHEMA_VERSION == "3.0"


def test_the_generator_writes_the_file(tmp_path, monkeypatch, capsys) -> None:
    target = tmp_path / "report.schema.json"
    monkeypatch.setattr(report_model, "schema_path", lambda: target)
    assert report_model.main(["--schema"]) == 0
    assert target.read_text() == report_model.schema_text()
    assert report_model.main([]) == 0
    assert json.loads(capsys.readouterr().out.partition("\n")[2]) == json.loads(target.read_text())


def test_every_field_is_required_in_the_schema_and_present_in_the_json() -> None:
    """Defaults included (comparison, partial): a reader never meets a missing key."""
    document = json.loads(render(make_report(succeeded(0), failed(1))))
    assert set(SCHEMA["required"]) == set(SCHEMA["properties"]) == set(document)
    for name, definition in SCHEMA["$defs"].items():
        if "properties" in definition:
            assert set(definition["required"]) == set(definition["properties"]), name


@pytest.mark.parametrize(("level", "name"), [
    (report_pb2.RISK_LEVEL_UNSPECIFIED, "UNRATED"), (report_pb2.RISK_LEVEL_LOW, "LOW"),
    (report_pb2.RISK_LEVEL_MIDDLE, "MIDDLE"), (report_pb2.RISK_LEVEL_HIGH, "HIGH")])
def test_risk_names(level, name) -> None:
    assert risk_name(level) == name


def test_the_model_parses_its_own_json_and_gives_typed_values() -> None:
    report = make_report(succeeded(0, auc=0.7), failed(1))
    parsed = AuditReport.model_validate_json(render(report))
    assert parsed == audit_report(report)
    assert (parsed.risk, parsed.attacks[0].metrics.auc, parsed.attacks[1].metrics) == ("HIGH", 0.7, None)
    assert parsed.provenance.generated_at.utcoffset().total_seconds() == 0
    assert parsed.attacks[0].metrics.num_members == 1000 and isinstance(parsed.attacks[0].metrics.num_members, int)


@pytest.mark.parametrize("change", [
    lambda a: a.update(risk="UNRATED"),  # a succeeded attack must be rated
    lambda a: a.update(metrics=None),
    lambda a: a.update(status="failed"),  # a failed attack with metrics, a rating, no error
    lambda a: a["metrics"].update(auc=1.2),
    lambda a: a.update(unknown_field=1),
])
def test_the_model_refuses_what_the_schema_refuses(change) -> None:
    document = json.loads(render(make_report(succeeded(0, auc=0.7))))
    change(document["attacks"][0])
    with pytest.raises(ValidationError):
        AuditReport.model_validate(document)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA, cls=jsonschema.Draft202012Validator)
