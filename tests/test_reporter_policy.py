"""The risk policy file: the shipped one, a replacement, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_reporter_fixtures import POLICY

from privaudit.services.reporter.policy import PolicyError, load_policy, parse_policy

SHIPPED = Path(__file__).parents[1] / "services" / "reporter" / "risk_policy.yaml"


def _policy_text(**changes: object) -> str:
    """The shipped policy with `changes` applied, keys written as dotted paths with '__'."""
    document = yaml.safe_load(SHIPPED.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = document
        for key in parents:
            node = node[key]
        node[leaf] = value
    return yaml.safe_dump(document)


def test_shipped_policy_values_and_order() -> None:
    levels = POLICY.levels
    assert (levels.middle.auc, levels.high.auc) == (0.55, 0.65)
    assert (levels.middle.tpr_at_1pct_fpr, levels.high.tpr_at_1pct_fpr) == (0.05, 0.10)
    assert (levels.middle.tpr_at_0_1pct_fpr, levels.high.tpr_at_0_1pct_fpr) == (0.005, 0.02)
    assert POLICY.beyond_chance.alpha == 0.05
    assert POLICY.advice.large_accuracy_gap == 0.10
    assert POLICY.epsilon_estimate.delta == 1e-5


def test_alpha_defaults_to_five_percent_when_the_policy_leaves_it_out() -> None:
    document = yaml.safe_load(SHIPPED.read_text())
    del document["beyond_chance"]
    assert parse_policy(yaml.safe_dump(document)).beyond_chance.alpha == 0.05


def test_replacement_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "strict.yaml"
    path.write_text(_policy_text(levels__middle__auc=0.52))
    assert load_policy(path).levels.middle.auc == 0.52


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_policy_text(levels__middle__auc=0.5), "levels.middle.auc: Input should be greater than 0.5 (got 0.5)"),
        (_policy_text(levels__high__tpr_at_0_1pct_fpr=0.001),
         "levels.high.tpr_at_0_1pct_fpr: Input should be greater than 0.001"),
        (_policy_text(levels__middle__auc=0.7),
         "middle.auc (0.7) is above high.auc (0.65); a MIDDLE threshold may not exceed the HIGH one"),
        (_policy_text(levels__high__auc="0.65"), "levels.high.auc: Input should be a valid number"),
        (_policy_text(levels__low={"auc": 0.5}), "levels.low: unknown key"),
        (_policy_text(advice={}), "advice.large_accuracy_gap: Field required"),
        (_policy_text(epsilon_estimate__delta=0.0), "epsilon_estimate.delta: Input should be greater than 0 (got 0.0)"),
        (_policy_text(epsilon_estimate__delta=1.0), "epsilon_estimate.delta: Input should be less than 1 (got 1.0)"),
        (_policy_text(epsilon_estimate={}), "epsilon_estimate.delta: Field required"),
        (_policy_text(beyond_chance__alpha=0.0), "beyond_chance.alpha: Input should be greater than 0 (got 0.0)"),
        (_policy_text(beyond_chance__alpha=0.2), "beyond_chance.alpha: Input should be less than or equal to 0.1"),
        (_policy_text(beyond_chance={"alpha": 0.05, "beta": 0.2}), "beyond_chance.beta: unknown key"),
        (_policy_text(epsilon_bound={"delta": 1e-5}), "epsilon_bound: renamed epsilon_estimate"),
        ("levels: [", "not valid YAML at line 1"),
        ("", "Input should be a valid dictionary"),
    ],
)
def test_bad_policy_is_refused_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(PolicyError, match=r"^risk policy mine\.yaml: ") as caught:
        parse_policy(text, "mine.yaml")
    assert expected in str(caught.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope\.yaml: cannot read it: No such file"):
        load_policy(tmp_path / "nope.yaml")
