"""RMIA's maths against closed forms: Pr(x) online and offline, the ratios, the pairwise count
against the population samples z, the tie-breaking that keeps low-FPR TPR measurable, and the
choice of the offline `a` on the reference models (a known answer and a brute-force reference)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import rankdata

from privaudit.services.attack_worker.attacks import rmia
from privaudit.services.attack_worker.attacks.base import NOMINAL_FPR
from privaudit.services.attack_worker.attacks.loss import true_label_log_probability


def two_class_logits(p: np.ndarray) -> np.ndarray:
    """Logits (..., 2) whose softmax gives class 0 probability p."""
    p = np.asarray(p, dtype=np.float64)
    return np.stack([np.log(p), np.log1p(-p)], axis=-1)


# ---------------------------------------------------------------- Pr(x)

REFERENCE_P = np.array([[0.9, 0.2], [0.7, 0.4], [0.3, 0.1], [0.5, 0.3]])  # 4 models x 2 records
REFERENCE_IN = np.array([[True, False], [True, True], [False, False], [False, True]])


def test_online_pr_x_is_the_mean_over_every_reference_model():
    log_pr = rmia.log_marginal(np.log(REFERENCE_P), REFERENCE_IN, a=None)
    np.testing.assert_allclose(np.exp(log_pr), REFERENCE_P.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("a", [0.0, 0.3, 1.0])
def test_offline_pr_x_is_the_linear_correction_of_the_out_mean(a):
    mean_out = np.array([(0.3 + 0.5) / 2, (0.2 + 0.1) / 2])  # models 2, 3 for record 0; 0, 2 for record 1
    log_pr = rmia.log_marginal(np.log(REFERENCE_P), REFERENCE_IN, a=a)
    np.testing.assert_allclose(np.exp(log_pr), ((1 + a) * mean_out + (1 - a)) / 2, rtol=1e-12)


def test_offline_needs_a_model_out_of_every_record():
    with pytest.raises(ValueError, match="record 1 is IN every reference model"):
        rmia.log_marginal(np.log(REFERENCE_P), REFERENCE_IN | np.array([False, True]), a=0.3)


def log_p(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log Pr(x | theta) of every model's logits (..., n, c): (..., n)."""
    return np.array([true_label_log_probability(model, labels) for model in logits.reshape(-1, *logits.shape[-2:])]
                    ).reshape(logits.shape[:-1])


def test_log_ratios_online_and_offline():
    target = two_class_logits(np.array([0.8, 0.05]))
    references = two_class_logits(REFERENCE_P)
    labels = np.array([0, 1])
    pr_x_given_target = np.array([0.8, 0.95])
    online = rmia.log_ratios(log_p(target, labels), log_p(references, labels), REFERENCE_IN, a=None)
    pr_x = np.array([REFERENCE_P[:, 0].mean(), (1 - REFERENCE_P[:, 1]).mean()])
    np.testing.assert_allclose(online, np.log(pr_x_given_target / pr_x), rtol=1e-12)
    offline = rmia.log_ratios(log_p(target, labels), log_p(references, labels), REFERENCE_IN, a=0.5)
    mean_out = np.array([(0.3 + 0.5) / 2, ((1 - 0.2) + (1 - 0.1)) / 2])
    np.testing.assert_allclose(offline, np.log(pr_x_given_target / ((1.5 * mean_out + 0.5) / 2)), rtol=1e-12)


def test_ratios_stay_finite_where_probabilities_underflow():
    """A label the models give probability e^-20000: 0 in floating point, 0/0 as a plain ratio."""
    labels = np.array([1])
    target = log_p(np.array([[1e4, -1e4]]), labels)
    references = log_p(np.array([[[1e4, -1e4]], [[2e4, -1e4]]]), labels)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is harmless
        online = rmia.log_ratios(target, references, np.array([[True], [False]]), a=None)
        offline = rmia.log_ratios(target, references, np.array([[True], [False]]), a=1.0)
    assert online[0] == pytest.approx(-2e4 - (np.logaddexp(-2e4, -3e4) - np.log(2)), abs=1e-9)
    assert offline[0] == pytest.approx(-2e4 + 3e4, abs=1e-9)  # a = 1: Pr(x) is the OUT model's alone


# ---------------------------------------------------------------- scores


def tie_breaker(log_ratio: float) -> float:
    return 0.5 + np.arctan(log_ratio) / np.pi


def test_score_is_the_share_of_z_beaten_by_gamma_broken_by_the_ratio_itself():
    z = np.log([0.5, 1.0, 2.0, 4.0])
    x = np.log(np.array([1.5, 3.0, 0.25]))
    scores = rmia.scores(x, z, gamma=1.0)
    beaten = np.array([2, 3, 0])  # 1.5 >= 0.5, 1; 3 >= 0.5, 1, 2; 0.25 beats none
    np.testing.assert_allclose(scores, (beaten + [tie_breaker(v) for v in x]) / 5, rtol=1e-12)
    # gamma = 2: x must be at least twice z. 1.5 beats 0.5; 3 beats 0.5 and 1.
    with_gamma = rmia.scores(x, z, gamma=2.0)
    np.testing.assert_allclose(with_gamma, (np.array([1, 2, 0]) + [tie_breaker(v) for v in x]) / 5, rtol=1e-12)


def test_equality_counts_as_beaten():
    score = rmia.scores(np.log([2.0]), np.log([1.0, 2.0, 4.0]), gamma=1.0)[0]
    assert score == pytest.approx((2 + tie_breaker(np.log(2))) / 4)


def test_ties_at_the_top_are_broken_and_the_ranking_is_otherwise_kept():
    rng = np.random.default_rng(1)
    z = rng.normal(size=50)
    x = np.r_[rng.normal(size=200), rng.uniform(5.0, 500.0, size=100)]  # the last 100 beat every z
    scores = rmia.scores(x, z, gamma=1.0)
    counts = np.searchsorted(np.sort(z), x, side="right")
    assert (counts[200:] == 50).all()
    # Without tie-breaking the top 100 would all score 1.0; now they are distinct and below 1.
    assert len(np.unique(scores[200:])) == 100 and scores.max() < 1.0 and scores.min() > 0.0
    # Records with different counts keep the count's order; equal counts are ordered by x: the
    # scores rank exactly as (count, x) does lexicographically.
    np.testing.assert_array_equal(rankdata(scores), rankdata(counts + (rankdata(x) / (len(x) + 1))))


def test_rmia_needs_population_samples():
    with pytest.raises(ValueError, match="at least one population sample"):
        rmia.scores(np.zeros(3), np.zeros(0), gamma=1.0)


def test_a_non_member_beats_a_uniform_share_of_its_peers():
    """x and z from one distribution (a non-member): the score is about uniform, so the threshold
    calls about NOMINAL_FPR of them members."""
    rng = np.random.default_rng(2)
    scores = rmia.scores(rng.normal(size=20_000), rng.normal(size=10_000), gamma=1.0)
    assert rmia.THRESHOLD == 1 - NOMINAL_FPR
    assert np.mean(scores >= rmia.THRESHOLD) == pytest.approx(NOMINAL_FPR, abs=0.01)
    assert np.mean(scores) == pytest.approx(0.5, abs=0.01)


# ---------------------------------------------------------------- choosing a


def brute_force_choice(reference_log_p: np.ndarray, reference_in: np.ndarray) -> tuple[float, float]:
    """The same choice written out from its definition: per stand-in and a, the share of
    (member, non-member) pairs the ratio orders right (ties half), averaged; the first best a."""
    models = len(reference_log_p)
    best = (-1.0, 0.0)
    for a in rmia.A_GRID:
        aucs = []
        for k in range(models):
            others = [j for j in range(models) if j != k]
            ratio = {}
            for x in range(reference_log_p.shape[1]):
                out = [j for j in others if not reference_in[j, x]]
                if out:
                    mean_out = np.mean([np.exp(reference_log_p[j, x]) for j in out])
                    ratio[x] = np.exp(reference_log_p[k, x]) / (((1 + a) * mean_out + (1 - a)) / 2)
            members = [x for x in ratio if reference_in[k, x]]
            non_members = [x for x in ratio if not reference_in[k, x]]
            if members and non_members:
                pairs = [(ratio[m] > ratio[n]) + 0.5 * (ratio[m] == ratio[n])
                         for m, n in itertools.product(members, non_members)]
                aucs.append(np.mean(pairs))
        if np.mean(aucs) > best[0] + 1e-12:
            best = (float(np.mean(aucs)), a)
    return best[1], best[0]


def test_a_known_answer_only_a_035_orders_every_pair():
    """Stand-in model 0 (model 1, OUT of every record, is its reference): member B and
    non-members A1, A2, with Pr(x | model 1) = m and Pr(x | model 0) = p. B ranks above A1 only for
    a > 0.3208 and above A2 only for a < 0.3799 (where p_B g_a(m_A) = p_A g_a(m_B), g_a(m) =
    ((1 + a) m + 1 - a) / 2): on the grid, only a = 0.35 orders both pairs. Model 1 has no member,
    so it cannot stand in."""
    p = np.array([[0.5, 0.71, 0.423], [0.2, 0.5, 0.1]])
    members = np.array([[True, False, False], [False, False, False]])
    chosen = rmia.choose_a(np.log(p), members)
    assert chosen == rmia.ChosenA(a=0.35, auc=1.0, stand_ins=1)
    for a, auc in ((0.30, 0.5), (0.40, 0.5)):  # one pair wrong either side
        ratios = rmia.log_ratios(np.log(p[0]), np.log(p[1:]), members[1:], a)
        assert np.mean([ratios[0] > ratios[1], ratios[0] > ratios[2]]) == auc


def test_a_known_answer_an_exact_ratio_needs_no_correction():
    """Members of each model get exactly twice the OUT probability: ratio(x) = p / mean_OUT
    (a = 1) is 2 for every member and 1 for every non-member, so only a = 1 separates them all;
    any a < 1 mixes in the record's own level, which varies."""
    rng = np.random.default_rng(3)
    level = rng.uniform(0.01, 0.45, size=400)
    members = rng.random((4, 400)) < 0.5
    members[:, ~(~members).any(axis=0)] = False  # every record OUT of some model
    p = np.where(members, 2 * level, level)
    chosen = rmia.choose_a(np.log(p), members)
    assert (chosen.a, chosen.stand_ins) == (1.0, 4) and chosen.auc == pytest.approx(1.0)
    assert rmia.choose_a(np.log(p), members, grid=(0.0, 0.5, 0.9)).auc < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_choice_agrees_with_a_brute_force_of_its_definition(seed):
    rng = np.random.default_rng(seed)
    models, records = 4, 60
    members = rng.random((models, records)) < 0.5
    difficulty = rng.uniform(-3, 1, size=records)
    log_p = np.minimum(difficulty + np.where(members, rng.uniform(0, 1.5, size=(models, records)), 0)
                       + 0.3 * rng.standard_normal((models, records)), 0.0)
    chosen = rmia.choose_a(log_p, members)
    a, auc = brute_force_choice(log_p, members)
    assert chosen.a == a and chosen.auc == pytest.approx(auc, abs=1e-12)


def test_a_stand_in_is_attacked_on_the_records_another_model_is_out_of():
    members = np.array([[True, False, True, False], [True, True, False, False], [True, False, False, True]])
    assert rmia.stand_in_records(members, 0).tolist() == [False, True, True, True]  # record 0 is IN the others
    assert rmia.stand_in_records(members, 1).tolist() == [False, True, True, True]
    assert rmia.stand_in_records(members[:2], 0).tolist() == [False, False, True, True]  # one IN it, one OUT
    two = np.array([[True, True], [False, True]])
    assert rmia.stand_in_records(two, 0) is None  # record 0, the only one model 1 is OUT of, is a member
    assert rmia.stand_in_records(two, 1) is None  # model 0 is OUT of no record


def test_no_stand_in_with_members_and_non_members_means_no_choice():
    members = np.array([[True, True], [False, False]])
    assert rmia.choose_a(np.log(np.full((2, 2), 0.5)), members) is None  # model 1 has no member, 0 no non-member


def test_the_threshold_source_names_a_and_where_it_came_from():
    chosen = rmia.ChosenA(a=0.35, auc=0.71234, stand_ins=4)
    text = rmia.threshold_source(4, 800, chosen, 0.35)
    assert "beats 95% of the 800 population samples z" in text and "a = 0.35 chosen on the reference models" in text
    assert "0.712" in text and "never trained on the audited records" in text
    assert "a = 0.3 set by the task" in rmia.threshold_source(4, 800, None, 0.3)
    assert "IN half of them" in rmia.threshold_source(8, 100, None, None)
