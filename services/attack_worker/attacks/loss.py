"""LOSS (Yeom et al., CSF 2018): the lower the target model's loss on a record, the more likely
it is a member. The score is minus the cross-entropy loss, i.e. the log-probability the model
gives the record's true label; the decision rule is Yeom et al.'s: member when the loss is at
most the model's average loss on its training records (here the audited member set)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from privaudit.v1 import results_pb2
from services.attack_worker.attacks.base import Runtime, Scores
from services.common.task_spec import LossArgs


def true_label_log_probability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) log softmax(logits)[label] of (n, c) logits: minus each record's cross-entropy loss.
    Computed as logit - logsumexp(logits), so huge logits give neither overflow nor log(0)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    return logits[rows, labels] - logsumexp(logits, axis=1)


def run(args: LossArgs, rt: Runtime) -> Scores:
    with rt.stage(results_pb2.STAGE_LOAD):
        model = rt.load_model("target_model", args.target_model)
        members = rt.load_dataset("target_datasets.members", args.target_datasets.members)
        non_members = rt.load_dataset("target_datasets.non_members", args.target_datasets.non_members)
    with rt.stage(results_pb2.STAGE_PREDICT):
        member_outputs = rt.predict(model, members, args.batch_size)
        non_member_outputs = rt.predict(model, non_members, args.batch_size)
    with rt.stage(results_pb2.STAGE_SCORE):
        member_scores = true_label_log_probability(member_outputs.logits, member_outputs.labels)
        non_member_scores = true_label_log_probability(non_member_outputs.logits, non_member_outputs.labels)
        return Scores(members=member_scores, non_members=non_member_scores, threshold=float(member_scores.mean()))
