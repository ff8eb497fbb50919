"""RMIA (Zarifzadeh, Liu and Shokri, ICML 2024), as pure numpy / scipy maths.

Pr(x | theta) is the probability a model gives record x's true label. Pr(x), its average over
models in general, is estimated from reference models: online, the mean over all of them (each
record is IN half of them); offline, from the models that did not train on x only, corrected by
`a` for the missing IN half: Pr(x) = ((1 + a) mean_OUT + (1 - a)) / 2. The ratio
ratio(x) = Pr(x | target) / Pr(x) is computed alike for the audited records x and for the
population samples z, and x scores the fraction of z with ratio(x) / ratio(z) >= gamma.

That fraction has only |z| + 1 values, so many records can tie at the top (every z beaten), which
would erase the TPR at very low FPR. Ties are broken by ratio(x) itself: the score is
(count + t) / (|z| + 1) where t in (0, 1) increases with log ratio(x), so records with different
counts keep their order and records with equal counts are ranked by their own ratio. Everything
is computed with log-probabilities, so no probability underflows to 0.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from services.attack_worker.attacks.loss import true_label_log_probability

# Member when the tie-broken fraction reaches this: x beats 95% of the population samples.
# For a non-member, ratio(x) is distributed like ratio(z), so this rule's nominal FPR is 5%.
THRESHOLD = 0.95


def log_marginal(reference_log_p: np.ndarray, reference_in: np.ndarray, online: bool, a: float) -> np.ndarray:
    """(n,) log Pr(x) from the reference models' log Pr(x | theta_k) (models, n) and which of
    them trained on each record (models, n)."""
    reference_log_p = np.asarray(reference_log_p, dtype=np.float64)
    if online:
        return logsumexp(reference_log_p, axis=0) - np.log(len(reference_log_p))
    out = ~np.asarray(reference_in, dtype=bool)
    count = out.sum(axis=0)
    if not count.all():
        raise ValueError(f"record {int(np.argmin(count))} is IN every reference model; offline RMIA needs "
                         "at least one model that did not train on it")
    log_mean_out = logsumexp(np.where(out, reference_log_p, -np.inf), axis=0) - np.log(count)
    # log(((1 + a) mean_OUT + (1 - a)) / 2), kept finite when a = 1 and mean_OUT underflows.
    return np.logaddexp(np.log1p(a) + log_mean_out, np.log1p(-a) if a < 1 else -np.inf) - np.log(2)


def log_ratios(target_logits: np.ndarray, reference_logits: np.ndarray, reference_in: np.ndarray,
               labels: np.ndarray, online: bool, a: float) -> np.ndarray:
    """(n,) log ratio(x) = log Pr(x | target) - log Pr(x) of target logits (n, c) against
    reference logits (models, n, c)."""
    reference_log_p = np.stack([true_label_log_probability(logits, labels) for logits in reference_logits])
    return true_label_log_probability(target_logits, labels) - log_marginal(reference_log_p, reference_in, online, a)


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
