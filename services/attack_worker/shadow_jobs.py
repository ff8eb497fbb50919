"""The jobs of LIRA and RMIA: a shadow part, the score part, or the whole attack at once.

A distributed attack is K shadow-part jobs (`RunAttackRequest.shadow`, one per shadow_index, in
any order and on any workers) and then one score-part job (`RunAttackRequest.score`) holding
their K `ShadowOutput`s. A request with no part runs the whole attack in one job. Every path
trains a shadow model with the same function, through the shadow cache when the worker has one.

A ShadowOutput describes the attack's query records (the target's members, its non-members,
then for RMIA the z samples): `logits` holds num_rows = views x records rows of num_classes
float32 values, little-endian, view by view (row v * records + q is view v of query record q;
there is one view unless LIRA's `augment` is on), and `in_mask` one byte per query record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike

import numpy as np

from privaudit.v1 import attack_worker_pb2, results_pb2
from services.attack_worker.attacks import shadow_models
from services.attack_worker.attacks.base import Runtime, Scores
from services.attack_worker.attacks.shadow_models import Setup, ShadowArgs, ShadowTrainer
from services.attack_worker.settings import WorkerSettings
from services.attack_worker.shadow_cache import ShadowCache, shadow_key
from services.common.errors import ServiceBug, TaskError
from services.common.task_spec import AttackArgs, LiraArgs, RmiaArgs

# What a LIRA or RMIA job's runner gives back: scores, or a shadow part's output.
ShadowRunner = Callable[[ShadowArgs, Runtime], Scores | attack_worker_pb2.ShadowOutput]


class PartMismatch(ServiceBug):
    """A part that does not fit its attack (a shadow_index out of range, shadow outputs of
    another attack): the caller's fault, not the task's, so it fails the job as INTERNAL, saying
    what does not fit (a Failure: expected, so no traceback is logged)."""


def runner(args: AttackArgs, request: attack_worker_pb2.RunAttackRequest, settings: WorkerSettings) -> ShadowRunner:
    """The runner of the LIRA or RMIA job `request` on a worker with `settings`: its part, or the
    whole attack. A TaskError when the request names a part of another attack."""
    part = request.WhichOneof("part")
    if not isinstance(args, LiraArgs | RmiaArgs):
        raise TaskError.at("", f"a {part} part was requested for {args.name}, which trains no shadow models; "
                               "only LIRA and RMIA jobs have parts")
    storage_root = settings.storage_root
    train = trainer(storage_root, ShadowCache.of(settings))
    if part == "shadow":
        return lambda args, rt: shadow_part(args, rt, request.shadow.shadow_index, storage_root, train)
    if part == "score":
        return lambda args, rt: score_part(args, rt, request.score.shadows)
    return lambda args, rt: shadow_models.run(args, rt, train)


def trainer(storage_root: str | PathLike[str], cache: ShadowCache | None) -> ShadowTrainer:
    """`shadow_models.train_shadow`, through `cache` when there is one."""
    if cache is None:
        return shadow_models.train_shadow

    def train(setup: Setup, rt: Runtime, index: int) -> np.ndarray:
        key = shadow_key(storage_root, setup, index)
        logits = cache.load(key, setup.masks[index], len(setup.views))
        if logits is not None:
            with rt.stage(results_pb2.STAGE_TRAIN_SHADOW):
                rt.progress(1.0, "found in the shadow cache, not trained again")
            return logits
        logits = shadow_models.train_shadow(setup, rt, index)
        cache.store(key, logits, setup.masks[index])
        return logits

    return train


def shadow_part(args: ShadowArgs, rt: Runtime, index: int, storage_root: str | PathLike[str],
                train: ShadowTrainer) -> attack_worker_pb2.ShadowOutput:
    """Trains (or finds) shadow model `index` and answers with its outputs on the query records."""
    setup = shadow_models.load(args, rt)
    if index >= setup.num_shadow:
        raise PartMismatch(f"shadow_index {index} is out of range: the attack has {setup.num_shadow} "
                                    "shadow models")
    with rt.labelled(f"shadow {index + 1}/{setup.num_shadow}"):
        logits = train(setup, rt, index)[:, setup.query]
    return attack_worker_pb2.ShadowOutput(
        shadow_index=index, cache_key=shadow_key(storage_root, setup, index),
        num_rows=logits.shape[0] * logits.shape[1], num_classes=logits.shape[2],
        logits=logits.astype("<f4").tobytes(), in_mask=setup.query_masks[index].astype(np.uint8).tobytes())


def score_part(args: ShadowArgs, rt: Runtime, outputs: Sequence[attack_worker_pb2.ShadowOutput]) -> Scores:
    """Scores the target with the shadow models' outputs, checked to be this attack's."""
    setup = shadow_models.load(args, rt)
    logits = decode(setup, outputs)
    return shadow_models.score(setup, rt, logits, setup.query_masks)


def decode(setup: Setup, outputs: Sequence[attack_worker_pb2.ShadowOutput]) -> np.ndarray:
    """The shadow models' logits (K, views, Q, classes) in shadow_index order. Every output must
    be there once, of this attack's views and query records, with the training mask its index
    has in this attack (so outputs of another attack or seed are refused), and finite."""
    indices = sorted(output.shadow_index for output in outputs)
    if indices != list(range(setup.num_shadow)):
        raise PartMismatch(f"the score part needs the outputs of shadow models 0 to {setup.num_shadow - 1} "
                                    f"once each, got shadow_index {indices}")
    num_views, num_queries = len(setup.views), len(setup.query)
    logits = []
    for output in sorted(outputs, key=lambda o: o.shadow_index):
        shape = (num_views, num_queries, output.num_classes)
        if output.num_rows != num_views * num_queries or len(output.logits) != 4 * int(np.prod(shape)):
            raise PartMismatch(
                f"shadow {output.shadow_index}: {output.num_rows} rows of {output.num_classes} classes "
                f"({len(output.logits)} bytes of logits), expected {num_views} views x {num_queries} query records")
        if output.in_mask != setup.query_masks[output.shadow_index].astype(np.uint8).tobytes():
            raise PartMismatch(f"shadow {output.shadow_index} was trained on other records than this "
                                        "attack's shadow model of that index (another seed or population?)")
        values = np.frombuffer(output.logits, dtype="<f4").reshape(shape)
        if not np.isfinite(values).all():  # a worker refuses such outputs of a shadow model it trains
            raise PartMismatch(f"shadow {output.shadow_index}: its logits hold NaN or infinite values")
        logits.append(values)
    if len({part.shape for part in logits}) > 1:
        raise PartMismatch("the shadow models' outputs have different numbers of classes")
    return np.stack(logits)
