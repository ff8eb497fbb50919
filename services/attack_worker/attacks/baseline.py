"""BASELINE (Yeom et al., 2018, the "gap attack"): a record is called a member when the
target model classifies it correctly. Its membership advantage is the model's train
accuracy minus its test accuracy (or 0 when the model does better on non-members)."""

from __future__ import annotations

import numpy as np

from privaudit.services.attack_worker.attacks.base import Outputs, Runtime, Scores
from privaudit.services.common.task_spec import BaselineArgs
from privaudit.v1 import results_pb2

# BASELINE takes no batch size argument; it queries the target in batches of this size.
BATCH_SIZE = 128


def correctness(outputs: Outputs) -> np.ndarray:
    """1.0 for each record whose arg-max logit is its label, else 0.0."""
    return (outputs.logits.argmax(axis=1) == outputs.labels).astype(np.float64)


def run(args: BaselineArgs, rt: Runtime) -> Scores:
    with rt.stage(results_pb2.STAGE_LOAD):
        model = rt.load_model("target_model", args.target_model)
        pair = args.datasets()
        members = rt.load_dataset(f"{args.target_pair}.members", pair.members)
        non_members = rt.load_dataset(f"{args.target_pair}.non_members", pair.non_members)
    with rt.stage(results_pb2.STAGE_PREDICT):
        member_outputs = rt.predict(model, members, BATCH_SIZE)
        non_member_outputs = rt.predict(model, non_members, BATCH_SIZE)
    return Scores(members=correctness(member_outputs), non_members=correctness(non_member_outputs),
                  threshold=0.5, threshold_source="fixed: a correctly labelled record is called a member",
                  member_labels=member_outputs.labels, non_member_labels=non_member_outputs.labels)
