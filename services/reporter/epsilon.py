"""An empirical lower bound on the privacy budget epsilon, from an attack's ROC curve.

If training is (epsilon, delta)-differentially private, every membership test on the
trained model obeys, at every threshold (Kairouz et al., ICML 2015):

    TPR <= e^epsilon * FPR + delta    and    1 - FPR <= e^epsilon * (1 - TPR) + delta

so an attack that reaches (FPR, TPR) rules out every epsilon below
max(ln((TPR - delta) / FPR), ln((1 - FPR - delta) / (1 - TPR))), the auditing argument of
Jagielski et al. (NeurIPS 2020). The rates are measured on finitely many records: to stay
conservative, TPR is replaced by the lower end and FPR by the upper end of their two-sided
Clopper-Pearson intervals at CONFIDENCE, from the evaluation set's counts. The bound is the
largest over the ROC's points, and 0 where no point rules anything out.

Two caveats, both stated in reports: the best point is chosen on the same records its rates
are measured on, so the confidence holds per point rather than for the maximum; and a
result's ROC is thinned, so a point that would give a larger bound may be missing, which
can only make the bound smaller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

CONFIDENCE = 0.95


@dataclass(frozen=True)
class EpsilonBound:
    """Any (epsilon, delta)-DP training of the model has epsilon >= `epsilon` at this `delta`
    (at CONFIDENCE). `fpr`/`tpr` are the ROC point that gives it, as measured, and
    `fpr_upper`/`tpr_lower` the interval ends the bound is computed from."""

    epsilon: float
    delta: float
    fpr: float
    tpr: float
    fpr_upper: float
    tpr_lower: float


def clopper_pearson(successes: np.ndarray, trials: int,
                    confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The exact two-sided intervals (lower ends, upper ends) of binomial proportions, one per
    count in `successes` (integers from 0 to `trials`, trials >= 1)."""
    tail = (1 - confidence) / 2
    k = np.asarray(successes, dtype=np.float64)
    # Beta shape parameters must be positive; the ends they would miss are 0 and 1 exactly.
    lower = np.where(k > 0, beta.ppf(tail, np.maximum(k, 1), trials - k + 1), 0.0)
    upper = np.where(k < trials, beta.ppf(1 - tail, k + 1, np.maximum(trials - k, 1)), 1.0)
    return lower, upper


def epsilon_from_rates(tpr: float, fpr: float, delta: float) -> float:
    """The smallest epsilon that (epsilon, delta)-DP allows a test with these rates: 0 when
    every epsilon does, infinity when none does (a sure call with FPR 0 or TPR 1)."""
    candidates = [0.0]
    for hits, misses in ((tpr - delta, fpr), (1 - fpr - delta, 1 - tpr)):
        if hits > 0:
            candidates.append(math.log(hits / misses) if misses > 0 else math.inf)
    return max(candidates)


def lower_bound(roc: Sequence[tuple[float, float]], num_members: int, num_non_members: int,
                delta: float) -> EpsilonBound | None:
    """The bound from ROC points (fpr, tpr) measured on `num_members` members and
    `num_non_members` non-members; None without points or records. Ties between points
    go to the first (lowest FPR)."""
    if not roc or num_members < 1 or num_non_members < 1:
        return None
    fpr, tpr = np.array(roc, dtype=np.float64).T
    tpr_lower, _ = clopper_pearson(np.rint(tpr * num_members), num_members)
    _, fpr_upper = clopper_pearson(np.rint(fpr * num_non_members), num_non_members)
    epsilons = [epsilon_from_rates(t, f, delta) for t, f in zip(tpr_lower, fpr_upper, strict=True)]
    best = int(np.argmax(epsilons))
    return EpsilonBound(epsilon=epsilons[best], delta=delta, fpr=float(fpr[best]), tpr=float(tpr[best]),
                        fpr_upper=float(fpr_upper[best]), tpr_lower=float(tpr_lower[best]))
