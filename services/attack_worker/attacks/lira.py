"""LiRA (Carlini et al., S&P 2022): the likelihood-ratio attack, as pure numpy / scipy maths.

Per record, the target model's logit-scaled confidence phi = log p_y - log(1 - p_y) is compared
with the same statistic of shadow models trained with the record (IN) and without it (OUT), each
set summarised by a Gaussian. The online score is the log-likelihood ratio of the target's phi
under the IN and the OUT Gaussians (member when >= 0, the more likely hypothesis); the offline
score uses the OUT Gaussian only: -log of the one-sided p-value Pr[phi_OUT >= phi] (member when
p <= NOMINAL_FPR: the OUT hypothesis is rejected at that level). With augmented queries, each
view of a record gets its own Gaussians and the record's score is the mean of its views' scores.

With few shadow models a per-record variance is noisy, so a fixed variance may be used instead:
one variance for every record, view, IN and OUT, pooled from each group's deviations from its
own mean. Sharing it between IN and OUT also makes the online score increasing in phi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from privaudit.services.attack_worker.attacks import augment
from privaudit.services.attack_worker.attacks.base import NOMINAL_FPR

ONLINE_THRESHOLD = 0.0  # log-likelihood ratio: IN at least as likely as OUT
# A Gaussian fitted to identical values (a model that ignores its input) gets this variance
# rather than zero, so that scores stay finite; phi values are of order 1 to 100.
VARIANCE_FLOOR = 1e-8


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi = log p_y - log(1 - p_y) of softmax(logits) for each record's true label y: logits
    (..., n, c), labels (n,) -> (..., n). Computed as logit_y - logsumexp(other logits), exact
    and finite for any finite logits (no probability is formed, so none rounds to 0 or 1)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[-1] < 2:
        raise ValueError(f"the logit-scaled confidence needs at least 2 classes, got {logits.shape[-1]}")
    is_label = np.arange(logits.shape[-1]) == np.asarray(labels)[:, None]
    true = np.where(is_label, logits, 0.0).sum(axis=-1)
    return true - logsumexp(np.where(is_label, -np.inf, logits), axis=-1)


@dataclass(frozen=True)
class Gaussians:
    """One Gaussian per (record, view), fitted to the phi values of a group of shadow models."""

    mean: np.ndarray  # (n, views)
    variance: np.ndarray  # (n, views)
    squared_deviations: np.ndarray  # (n, views): sum over the group of (phi - mean)^2
    count: np.ndarray  # (n,): shadow models in the group

    def with_variance(self, variance: float) -> Gaussians:
        return Gaussians(self.mean, np.full_like(self.variance, variance), self.squared_deviations, self.count)


def fit(shadow_phi: np.ndarray, group: np.ndarray, name: str) -> Gaussians:
    """Maximum-likelihood Gaussians of shadow_phi (models, n, views) over the models where
    group (models, n) is True. Every record needs at least one model in the group."""
    count = group.sum(axis=0)
    if not count.all():
        raise ValueError(f"record {int(np.argmin(count))} is {name} of no shadow model; every record must be "
                         f"{name} of at least one")
    weights = group[..., None].astype(np.float64)
    mean = (shadow_phi * weights).sum(axis=0) / count[:, None]
    squared_deviations = (((shadow_phi - mean) ** 2) * weights).sum(axis=0)
    variance = np.maximum(squared_deviations / count[:, None], VARIANCE_FLOOR)
    return Gaussians(mean, variance, squared_deviations, count)


def pooled_variance(*groups: Gaussians) -> float:
    """The variance of every group's values about their own group's mean, all pooled."""
    deviations = sum(float(g.squared_deviations.sum()) for g in groups)
    values = sum(float(g.count.sum()) * g.mean.shape[1] for g in groups)
    return max(deviations / values, VARIANCE_FLOOR)


def scores(target_phi: np.ndarray, shadow_phi: np.ndarray, shadow_in: np.ndarray, online: bool,
           fixed_variance: bool) -> np.ndarray:
    """(n,) LiRA scores (higher = more likely a member) of the target's phi (n, views), given the
    shadow models' phi (models, n, views) and which of them trained on each record (models, n)."""
    target_phi = np.asarray(target_phi, dtype=np.float64)
    shadow_in = np.asarray(shadow_in, dtype=bool)
    out = fit(shadow_phi, ~shadow_in, "OUT")
    if not online:
        if fixed_variance:
            out = out.with_variance(pooled_variance(out))
        return -norm.logsf(target_phi, out.mean, np.sqrt(out.variance)).mean(axis=1)
    inside = fit(shadow_phi, shadow_in, "IN")
    if fixed_variance:
        shared = pooled_variance(inside, out)
        inside, out = inside.with_variance(shared), out.with_variance(shared)
    ratio = (norm.logpdf(target_phi, inside.mean, np.sqrt(inside.variance))
             - norm.logpdf(target_phi, out.mean, np.sqrt(out.variance)))
    return ratio.mean(axis=1)


def threshold(online: bool) -> float:
    """The score at or above which a record is called a member."""
    return ONLINE_THRESHOLD if online else float(-np.log(NOMINAL_FPR))


def threshold_source(online: bool, num_shadow: int) -> str:
    """Where `threshold(online)` comes from, in words."""
    if online:
        return (f"log-likelihood ratio 0: a record is called a member when its confidence is at least as likely "
                f"under the Gaussian of the {num_shadow // 2} shadow models trained with it as under that of the "
                f"{num_shadow // 2} trained without it")
    return (f"p-value {NOMINAL_FPR:g} on the OUT Gaussian fitted on {num_shadow} shadow models that never trained "
            f"on the audited records: a record is called a member when a model without it would reach its "
            f"confidence less than {NOMINAL_FPR:.0%} of the time (nominal FPR {NOMINAL_FPR:.0%})")


# A query of each record: the record itself (None), or an augmented copy of it.
View = augment.Augment | None
IDENTITY: View = None
# Carlini et al. query each record and its left-right mirror: their released inference code
# (research/mi_lira_2021 in tensorflow/privacy) runs with no shift and mirroring on, which gives
# exactly these two queries per record, one Gaussian pair per query, scores averaged. Shifted
# copies (reflect-padded, on a grid of offsets) are an option of that code, off by default; they
# are not queried here.
AUGMENTED_VIEWS: tuple[View, ...] = (IDENTITY, augment.Mirror())


def views(augmented: bool) -> tuple[View, ...]:
    """The queries of each record: itself, or itself and its mirror image."""
    return AUGMENTED_VIEWS if augmented else (IDENTITY,)
