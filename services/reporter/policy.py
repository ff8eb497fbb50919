"""The risk policy file: its schema, the shipped default and loading with errors naming the key."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from privaudit.services.reporter.figures import RISK_FIGURES

DEFAULT_POLICY = "risk_policy.yaml"
# Keys of older policy files and what they are called now.
_RENAMED = {"epsilon_bound": "epsilon_estimate"}


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Thresholds(_Strict):
    """The figures at or above which an attack reaches a level. Each must beat guessing
    (AUC 0.5, TPR equal to the FPR it is read at)."""

    auc: float = Field(gt=0.5, le=1)
    tpr_at_1pct_fpr: float = Field(gt=0.01, le=1)
    tpr_at_0_1pct_fpr: float = Field(gt=0.001, le=1)


class Levels(_Strict):
    high: Thresholds
    middle: Thresholds

    @model_validator(mode="after")
    def _middle_not_above_high(self) -> Self:
        for figure in RISK_FIGURES:
            middle, high = getattr(self.middle, figure.field), getattr(self.high, figure.field)
            if middle > high:
                raise ValueError(f"middle.{figure.field} ({middle}) is above high.{figure.field} ({high}); "
                                 "a MIDDLE threshold may not exceed the HIGH one")
        return self


class Advice(_Strict):
    large_accuracy_gap: float = Field(gt=0, le=1)


class Chance(_Strict):
    """How unlikely under guessing a figure must be before it counts as evidence: its chance p-value
    must be at most `alpha` divided by the number of figures measured for the attack (Bonferroni),
    so that a guessing attack is rated above LOW at most `alpha` of the time."""

    alpha: float = Field(default=0.05, gt=0, le=0.1)


class EpsilonSettings(_Strict):
    """Settings of the empirical epsilon estimate: the delta it is stated at."""

    delta: float = Field(gt=0, lt=1)


class Policy(_Strict):
    """A validated risk policy."""

    levels: Levels
    beyond_chance: Chance = Chance()
    advice: Advice
    epsilon_estimate: EpsilonSettings


def load_policy(path: Path | None = None) -> Policy:
    """The policy in `path`, or the one shipped with the reporter when None."""
    if path is None:
        source = resources.files(__package__).joinpath(DEFAULT_POLICY)
        name = f"the shipped {DEFAULT_POLICY}"
    else:
        source, name = path, str(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"risk policy {name}: cannot read it: {exc.strerror or exc}") from None
    return parse_policy(text, name)


def parse_policy(text: str, name: str = "risk policy") -> Policy:
    """Validates policy YAML text; `name` says where it came from in errors."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyError(f"risk policy {name}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise PolicyError(f"risk policy {name}: {problems}") from None


def _problem(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"renamed {_RENAMED[key]}" if key in _RENAMED else "unknown key"
    elif error["type"] != "missing" and error["type"] != "value_error":
        message = f"{message} (got {error['input']!r})"
    return f"{key}: {message}" if key else message
