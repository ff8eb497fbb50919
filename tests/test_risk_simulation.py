"""The risk policy's promise, by simulation: a guessing attack is rated above LOW at most 5% of the
time (alpha) at any evaluation size from 50 + 50 up, and a clearly leaking attack is not missed.

A guessing attack's member and non-member scores come from one distribution: continuous; tied
0/1 like BASELINE's (correctly classified or not); and a few levels like LABEL-ONLY's count of
augmented copies labelled correctly. Each simulated attack goes through the worker's real
`metrics.evaluate` (balancing, intervals, chance p-values) and `metrics.to_proto`, then the
reporter's rating, so the test covers the p-values' validity and the rule together.

Monte-Carlo margin: with N simulations, the observed rate of a true rate of exactly 5% has standard
error sqrt(0.05 * 0.95 / N); a rate may exceed 5% by at most Z = 2.33 standard errors (a true 5%
would fail 1% of the time; seeds are fixed, so the outcome is reproducible). Each case is checked
alone, and pooled over the three distributions per evaluated size, where N is larger and the margin
smaller (1.1 points at 50 + 50). Most simulations go to the small sizes, where the rate comes
closest to alpha; at 400 + 400 and above the thresholds, not the chance test, keep it near 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from test_reporter_fixtures import POLICY

from privaudit.services.attack_worker import metrics
from privaudit.services.attack_worker.attacks.base import Scores
from privaudit.services.reporter.figures import RISK_FIGURES
from privaudit.services.reporter.risk import Risk, rate

ALPHA = POLICY.beyond_chance.alpha
Z = 2.33
# Simulations per case, by the (members, non-members) given to the worker; it balances unbalanced
# sets to the smaller size.
RUNS = {(50, 50): 500, (100, 100): 300, (400, 400): 120, (1000, 1000): 60, (50, 400): 250, (1500, 1000): 60}
Draw = Callable[[np.random.Generator, int], np.ndarray]
GUESSING: dict[str, Draw] = {
    "continuous": lambda rng, n: rng.normal(size=n),
    "0/1 ties": lambda rng, n: (rng.random(n) < 0.8).astype(np.float64),
    "five levels": lambda rng, n: rng.binomial(4, 0.7, n).astype(np.float64),
}
# (rated above LOW, runs) per case, filled by the guessing test for the pooled test after it.
_RATES: dict[tuple[str, tuple[int, int]], tuple[int, int]] = {}


def _rated(members: np.ndarray, non_members: np.ndarray, seed: int) -> Risk:
    """The risk the reporter gives these scores after the worker measured them."""
    measured = metrics.to_proto(metrics.evaluate(Scores(members, non_members, threshold=0.5), seed)).metrics
    missing = [f.field for f in RISK_FIGURES if f.value(measured) is not None and f.p_value(measured) is None]
    assert not missing, f"metrics.evaluate leaves the chance p-values of {missing} unset: nothing to test"
    return rate(measured, POLICY)[0]


def _margin(runs: int) -> float:
    return Z * math.sqrt(ALPHA * (1 - ALPHA) / runs)


@pytest.mark.parametrize("size", RUNS, ids=lambda size: f"{size[0]}+{size[1]}")
@pytest.mark.parametrize("kind", GUESSING)
def test_a_guessing_attack_is_rarely_rated_above_low(kind: str, size: tuple[int, int]) -> None:
    draw, (num_members, num_non_members), runs = GUESSING[kind], size, RUNS[size]
    rng = np.random.default_rng([min(size), max(size), list(GUESSING).index(kind)])
    above_low = sum(_rated(draw(rng, num_members), draw(rng, num_non_members), seed) > Risk.LOW
                    for seed in range(runs))
    _RATES[kind, size] = (above_low, runs)
    assert above_low / runs <= ALPHA + _margin(runs), f"{above_low} of {runs} rated above LOW"


def test_pooled_per_evaluated_size_the_rate_is_within_alpha() -> None:
    if len(_RATES) < len(GUESSING) * len(RUNS):
        pytest.skip("needs every guessing case of this module to have run first")
    pooled: dict[int, list[int]] = {}
    for (_, size), (hits, runs) in sorted(_RATES.items(), key=lambda item: min(item[0][1])):
        totals = pooled.setdefault(min(size), [0, 0])
        totals[0] += hits
        totals[1] += runs
    print("\nrated above LOW: " + ", ".join(f"{kind} {size[0]}+{size[1]} {hits}/{runs}"
                                           for (kind, size), (hits, runs) in _RATES.items()))
    print("pooled per evaluated size: " + ", ".join(f"{size}+{size} {hits}/{runs} = {hits / runs:.3f}"
                                                    for size, (hits, runs) in pooled.items()))
    for size, (hits, runs) in pooled.items():
        assert hits / runs <= ALPHA + _margin(runs), f"{size}+{size}: {hits} of {runs} rated above LOW"


LEAKING: dict[str, tuple[Draw, Draw, int]] = {
    "binormal d = 1, 400 + 400": (lambda rng, n: rng.normal(1.0, 1.0, n), GUESSING["continuous"], 400),
    "binormal d = 1.5, 50 + 50": (lambda rng, n: rng.normal(1.5, 1.0, n), GUESSING["continuous"], 50),
    "0/1, members right 95% and non-members 75%, 400 + 400": (
        lambda rng, n: (rng.random(n) < 0.95).astype(np.float64),
        lambda rng, n: (rng.random(n) < 0.75).astype(np.float64), 400),
}


@pytest.mark.parametrize("kind", LEAKING)
def test_a_clearly_leaking_attack_is_rated_above_low(kind: str) -> None:
    """Power: the chance test must not hide a real leak of this size (AUC about 0.76, 0.86 and 0.60)."""
    draw_members, draw_non_members, size = LEAKING[kind]
    rng = np.random.default_rng(7)
    rated = [_rated(draw_members(rng, size), draw_non_members(rng, size), seed) for seed in range(20)]
    assert all(risk > Risk.LOW for risk in rated), rated
