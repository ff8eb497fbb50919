"""LOSS (Yeom et al., CSF 2018): the lower the target model's loss on a record, the more likely
it is a member. The score is minus the cross-entropy loss, i.e. the log-probability the model
gives the record's true label.

Yeom et al. call a record a member when its loss is below the model's average training loss,
which an auditor would read off the audited members: their membership is what is being
measured, so that threshold is an oracle. Here the threshold comes from data an adversary has:
- with `population_datasets` (records the target did not train on), the score that a share
  1 - NOMINAL_FPR of them stay below: a record is called a member when it beats 95% of known
  non-members;
- without, the median score of the audited records taken together, members and non-members
  alike (their membership unused): the more confident half is called members.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from privaudit.services.attack_worker.attacks.base import NOMINAL_FPR, Runtime, Scores
from privaudit.services.common.task_spec import LossArgs
from privaudit.v1 import results_pb2


def true_label_log_probability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) log softmax(logits)[label] of (n, c) logits: minus each record's cross-entropy loss.
    Computed as logit - logsumexp(logits), so huge logits give neither overflow nor log(0)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    return logits[rows, labels] - logsumexp(logits, axis=1)


def population_threshold(population_scores: np.ndarray) -> float:
    """The 1 - NOMINAL_FPR quantile of the population's scores, taken at one of them (numpy's
    "higher" method): about NOMINAL_FPR of the population reaches it, fewer only through ties."""
    return float(np.quantile(population_scores, 1 - NOMINAL_FPR, method="higher"))


def pooled_median(*scores: np.ndarray) -> float:
    """The median of every audited record's score, members and non-members together."""
    return float(np.median(np.concatenate(scores)))


def run(args: LossArgs, rt: Runtime) -> Scores:
    with rt.stage(results_pb2.STAGE_LOAD):
        model = rt.load_model("target_model", args.target_model)
        members = rt.load_dataset("target_datasets.members", args.target_datasets.members)
        non_members = rt.load_dataset("target_datasets.non_members", args.target_datasets.non_members)
        population = [rt.load_dataset(f"population_datasets[{i}]", path)
                      for i, path in enumerate(args.population_datasets)]
    with rt.stage(results_pb2.STAGE_PREDICT):
        member_outputs = rt.predict(model, members, args.batch_size)
        non_member_outputs = rt.predict(model, non_members, args.batch_size)
        population_outputs = [rt.predict(model, dataset, args.batch_size) for dataset in population]
    with rt.stage(results_pb2.STAGE_SCORE):
        member_scores = true_label_log_probability(member_outputs.logits, member_outputs.labels)
        non_member_scores = true_label_log_probability(non_member_outputs.logits, non_member_outputs.labels)
        if population_outputs:
            population_scores = np.concatenate([true_label_log_probability(o.logits, o.labels)
                                                for o in population_outputs])
            threshold = population_threshold(population_scores)
            source = (f"the log-probability of the true label that {1 - NOMINAL_FPR:.0%} of the "
                      f"{len(population_scores)} population records stay below (nominal FPR {NOMINAL_FPR:.0%})")
        else:
            threshold = pooled_median(member_scores, non_member_scores)
            source = ("the median log-probability of the true label over every audited record, membership "
                      "unused (give population_datasets for a threshold calibrated on known non-members)")
        return Scores(members=member_scores, non_members=non_member_scores, threshold=threshold,
                      threshold_source=source, member_labels=member_outputs.labels,
                      non_member_labels=non_member_outputs.labels)
