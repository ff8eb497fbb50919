"""RMIA (Zarifzadeh, Liu and Shokri, ICML 2024), as pure numpy / scipy maths.

Pr(x | theta) is the probability a model gives record x's true label. Pr(x), its average over
models in general, is estimated from reference models: online, the mean over all of them (each
audited record is IN half of them); offline, from the models that did not train on x only,
corrected by `a` for the missing IN half: Pr(x) = ((1 + a) mean_OUT + (1 - a)) / 2. The ratio
ratio(x) = Pr(x | target) / Pr(x) is computed alike for the audited records x and for the
population samples z, and x scores the fraction of z with ratio(x) / ratio(z) >= gamma.

That fraction has only |z| + 1 values, so many records can tie at the top (every z beaten), which
would erase the TPR at very low FPR. Ties are broken by ratio(x) itself: the score is
(count + t) / (|z| + 1) where t in (0, 1) increases with log ratio(x), so records with different
counts keep their order and records with equal counts are ranked by their own ratio. Everything
is computed with log-probabilities, so no probability underflows to 0.

Offline, Pr(z) is computed as privacy_meter's `run_rmia` computes it: with the same estimator as
Pr(x), from the reference models z is OUT of, corrected by the same `a`. privacy_meter's z are
never in a reference model's training set, so it averages over all of them; ours are drawn from
the population datasets the reference models train on, so a z may be IN some of them, and the
mean runs over those it is OUT of. The z samples are first the records no reference model trained
on (`shadow_population.z_samples`): where the population datasets have enough of them, every z is
estimated exactly as an audited x is, as the rule "x beats 95% of the z" needs for its nominal
false-positive rate; where they do not, a z estimated from fewer models is noisier, and the rule's
false-positive rate may differ from the nominal one.

Unless the task sets it, `a` is chosen offline as the paper does (and privacy_meter's
`tune_offline_a`): a reference model stands in for the target, the others serve as its
references, and records whose membership in it is known (here the z samples) are scored for
every `a` of a grid; the `a` with the best AUC, averaged over every reference model as stand-in,
is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

from privaudit.services.attack_worker.attacks.base import NOMINAL_FPR

# Member when the tie-broken fraction reaches this: x beats 1 - NOMINAL_FPR of the population
# samples. For a non-member, ratio(x) is distributed like ratio(z), so this rule's nominal FPR
# is NOMINAL_FPR.
THRESHOLD = 1 - NOMINAL_FPR
A_GRID = tuple(round(0.05 * step, 2) for step in range(21))  # 0, 0.05, ..., 1


def log_marginal(reference_log_p: np.ndarray, reference_in: np.ndarray, a: float | None) -> np.ndarray:
    """(n,) log Pr(x) from the reference models' log Pr(x | theta_k) (models, n) and which of
    them trained on each record (models, n): online (a None) the mean over every model, offline
    the OUT models' mean corrected by `a`."""
    reference_log_p = np.asarray(reference_log_p, dtype=np.float64)
    if a is None:
        return logsumexp(reference_log_p, axis=0) - np.log(len(reference_log_p))
    out = ~np.asarray(reference_in, dtype=bool)
    count = out.sum(axis=0)
    if not count.all():
        raise ValueError(f"record {int(np.argmin(count))} is IN every reference model; offline RMIA needs "
                         "at least one model that did not train on it")
    log_mean_out = logsumexp(np.where(out, reference_log_p, -np.inf), axis=0) - np.log(count)
    # log(((1 + a) mean_OUT + (1 - a)) / 2), kept finite when a = 1 and mean_OUT underflows.
    return np.logaddexp(np.log1p(a) + log_mean_out, np.log1p(-a) if a < 1 else -np.inf) - np.log(2)


def log_ratios(target_log_p: np.ndarray, reference_log_p: np.ndarray, reference_in: np.ndarray,
               a: float | None) -> np.ndarray:
    """(n,) log ratio(x) = log Pr(x | target) - log Pr(x) of the target's log Pr(x | target) (n,)
    against the reference models' (models, n); `a` as in `log_marginal`."""
    return np.asarray(target_log_p, dtype=np.float64) - log_marginal(reference_log_p, reference_in, a)


def scores(x_log_ratios: np.ndarray, z_log_ratios: np.ndarray, gamma: float) -> np.ndarray:
    """(n,) RMIA scores of records x: the share of samples z with ratio(x) / ratio(z) >= gamma,
    ties broken by ratio(x) as the module says; in (0, 1)."""
    x_log_ratios = np.asarray(x_log_ratios, dtype=np.float64)
    z_sorted = np.sort(np.asarray(z_log_ratios, dtype=np.float64))
    if len(z_sorted) == 0:
        raise ValueError("RMIA needs at least one population sample z")
    # ratio(x) / ratio(z) >= gamma  <=>  log ratio(z) <= log ratio(x) - log gamma
    beaten = np.searchsorted(z_sorted, x_log_ratios - np.log(gamma), side="right")
    tie_breaker = 0.5 + np.arctan(x_log_ratios) / np.pi  # in (0, 1), increasing, not saturated below 1e15
    return (beaten + tie_breaker) / (len(z_sorted) + 1)


@dataclass(frozen=True)
class ChosenA:
    """The offline `a` chosen on the reference models, and the mean AUC it reached over the
    `stand_ins` reference models attacked in turn."""

    a: float
    auc: float
    stand_ins: int


def stand_in_records(reference_in: np.ndarray, stand_in: int) -> np.ndarray | None:
    """(n,) bool: the records on which reference model `stand_in` can stand in for the target,
    the others serving as its references: those some other model is OUT of. None when they
    hold no member of it or no non-member, so that it cannot be attacked."""
    reference_in = np.asarray(reference_in, dtype=bool)
    usable = (~np.delete(reference_in, stand_in, axis=0)).any(axis=0)
    members = reference_in[stand_in, usable]
    return usable if members.any() and not members.all() else None


def choose_a(reference_log_p: np.ndarray, reference_in: np.ndarray, grid: tuple[float, ...] = A_GRID) -> ChosenA | None:
    """The `a` of `grid` under which offline RMIA best tells each reference model's members from
    its non-members, the other models serving as its references. reference_log_p (models, n) are
    the models' log Pr(x | theta) on records whose membership reference_in (models, n) is known.
    Each model that can stand in (see `stand_in_records`) is attacked on its records; the AUC is
    averaged over them, the smallest best `a` wins, and None says no model can stand in. The AUC
    is taken of ratio(x): whatever the z samples and gamma, the tie-broken score ranks records as
    ratio(x) does, so it has the same AUC."""
    reference_log_p = np.asarray(reference_log_p, dtype=np.float64)
    reference_in = np.asarray(reference_in, dtype=bool)
    totals, stand_ins = np.zeros(len(grid)), 0
    for stand_in in range(len(reference_log_p)):
        usable = stand_in_records(reference_in, stand_in)
        if usable is None:
            continue
        stand_ins += 1
        others = np.arange(len(reference_log_p)) != stand_in
        for index, a in enumerate(grid):
            ratios = log_ratios(reference_log_p[stand_in, usable], reference_log_p[others][:, usable],
                                reference_in[others][:, usable], a)
            totals[index] += roc_auc_score(reference_in[stand_in, usable], ratios)
    if not stand_ins:
        return None
    best = int(np.argmax(totals))  # the first of equal totals: the smallest a
    return ChosenA(a=float(grid[best]), auc=float(totals[best] / stand_ins), stand_ins=stand_ins)


def threshold_source(num_references: int, num_z: int, chosen: ChosenA | None, a: float | None) -> str:
    """Where THRESHOLD comes from and how Pr(x) was estimated, in words: online when `a` is None,
    else offline with `a`, `chosen` on the reference models or (None) set by the task."""
    rule = (f"a record is called a member when its likelihood ratio beats {THRESHOLD:.0%} of the {num_z} "
            f"population samples z (nominal FPR {NOMINAL_FPR:.0%}); ")
    if a is None:
        return rule + f"Pr(x) from {num_references} reference models, each audited record IN half of them"
    estimate = f"Pr(x) from {num_references} reference models that never trained on the audited records, "
    if chosen is None:
        return rule + estimate + f"a = {a:g} set by the task"
    return rule + estimate + (f"a = {chosen.a:g} chosen on the reference models (each attacked by the others: "
                              f"best mean AUC, {chosen.auc:.3f}, for a from {A_GRID[0]:g} to {A_GRID[-1]:g} "
                              f"in steps of {A_GRID[1] - A_GRID[0]:g})")
