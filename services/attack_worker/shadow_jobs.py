"""The jobs of LIRA and RMIA, top to bottom: plan, train a part, store it, score from the store.

A distributed attack is K shadow-part jobs (`RunAttackRequest.shadow`, one per shadow_index, in
any order and on any workers) and then one score-part job (`RunAttackRequest.score`) holding
their K `ShadowOutput`s. A request with no part runs the whole attack in one job. Every job plans
the same population and masks from the attack's seed (`shadow_models.load`); a shadow model is
trained, or found in the worker's shadow cache, and stored there under its `shadow_key`.

A ShadowOutput describes the attack's query records (the target's members, its non-members,
then for RMIA the z samples) in one of two ways:
- inline: `logits` holds num_rows = views x records rows of num_classes float32 values,
  little-endian, view by view (row v * records + q is view v of query record q; there is one
  view unless LIRA's `augment` is on), and `in_mask` one byte per query record;
- by reference, from a worker whose cache folder the pool shares (`--cache-shared`), or whose
  caller takes the entry's bytes (`ShadowPart.stream_entry`: the worker's server streams them
  from its cache before the output, and the orchestrator uploads them to the score job's
  worker; see `entry_exchange`): `entry` holds the size and SHA-256 of the cache entry `cache_key` as its writer
  stored it (or found it).
The score job reads referenced entries one at a time, checks them against their description,
and keeps of each only its statistic on the query records (`shadow_models.shadow_statistic`).
Entries that are absent, other bytes or unreadable are answered with `ShadowsMissing`, naming
them, so that the orchestrator runs those shadow parts again: it never scores on part of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from privaudit.services.attack_worker.attacks import shadow_models
from privaudit.services.attack_worker.attacks.base import Runtime, Scores
from privaudit.services.attack_worker.attacks.shadow_models import Setup, ShadowArgs
from privaudit.services.attack_worker.npz_store import EntryProblem, Fingerprint
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.attack_worker.shadow_cache import ShadowCache, shadow_key
from privaudit.services.common.errors import ServiceBug, TaskError
from privaudit.services.common.task_spec import AttackArgs, LiraArgs, RmiaArgs
from privaudit.v1 import attack_worker_pb2, results_pb2

# What a LIRA or RMIA job's runner gives back: scores, a shadow part's output, or a score part's
# missing shadow outputs.
JobAnswer = Scores | attack_worker_pb2.ShadowOutput | attack_worker_pb2.ShadowsMissing
ShadowRunner = Callable[[ShadowArgs, Runtime], JobAnswer]
MISSING_REASONS_SHOWN = 3  # a ShadowsMissing's reason names this many entries, then counts the rest


class PartMismatch(ServiceBug):
    """A part that does not fit its attack (a shadow_index out of range, shadow outputs of
    another attack): the caller's fault, not the task's, so it fails the job as INTERNAL, saying
    what does not fit (a Failure: expected, so no traceback is logged)."""


@dataclass(frozen=True)
class ShadowStore:
    """Where a worker keeps shadow models: its shadow cache (None: nowhere), under the keys
    `shadow_key` gives with its storage root. `by_reference`: outputs go by reference, since
    every worker of the pool reads the same cache folder or the caller takes the entry's bytes."""

    storage_root: str
    cache: ShadowCache | None
    by_reference: bool = False

    @classmethod
    def of(cls, settings: WorkerSettings, streamed: bool = False) -> ShadowStore:
        """The worker's store; `streamed`: the caller takes the stored entry's bytes."""
        return cls(settings.storage_root, ShadowCache.of(settings), settings.cache_shared or streamed)

    def key(self, setup: Setup, index: int) -> str:
        return shadow_key(self.storage_root, setup, index)


def runner(args: AttackArgs, request: attack_worker_pb2.RunAttackRequest, settings: WorkerSettings) -> ShadowRunner:
    """The runner of the LIRA or RMIA job `request` on a worker with `settings`: its part, or the
    whole attack. A TaskError when the request names a part of another attack."""
    part = request.WhichOneof("part")
    if not isinstance(args, LiraArgs | RmiaArgs):
        raise TaskError.at("", f"a {part} part was requested for {args.name}, which trains no shadow models; "
                               "only LIRA and RMIA jobs have parts")
    store = ShadowStore.of(settings, streamed=part == "shadow" and request.shadow.stream_entry)
    if part == "shadow":
        return lambda args, rt: shadow_part(args, rt, request.shadow.shadow_index, store)
    if part == "score":
        return lambda args, rt: score_part(args, rt, request.score.shadows, store)
    return lambda args, rt: whole_attack(args, rt, store)


# ---------------------------------------------------------------- the jobs


def shadow_part(args: ShadowArgs, rt: Runtime, index: int, store: ShadowStore) -> attack_worker_pb2.ShadowOutput:
    """Trains (or finds) shadow model `index`, stores it, and answers with a reference to the
    stored entry when outputs go by reference (and the entry could be written), else inline."""
    setup = shadow_models.load(args, rt)
    if index >= setup.num_shadow:
        raise PartMismatch(f"shadow_index {index} is out of range: the attack has {setup.num_shadow} "
                                    "shadow models")
    with rt.labelled(f"shadow {index + 1}/{setup.num_shadow}"):
        logits, stored = _train_or_find(setup, rt, index, store)
    query_logits = logits[:, setup.query]
    output = attack_worker_pb2.ShadowOutput(shadow_index=index, cache_key=store.key(setup, index),
                                            num_rows=query_logits.shape[0] * query_logits.shape[1],
                                            num_classes=query_logits.shape[2])
    if store.by_reference and stored is not None:
        output.entry.size_bytes, output.entry.sha256 = stored.size, stored.sha256
    else:
        output.logits = query_logits.astype("<f4").tobytes()
        output.in_mask = setup.query_masks[index].astype(np.uint8).tobytes()
    return output


def score_part(args: ShadowArgs, rt: Runtime, outputs: Sequence[attack_worker_pb2.ShadowOutput],
               store: ShadowStore) -> Scores | attack_worker_pb2.ShadowsMissing:
    """Scores the target with the shadow models' outputs, checked to be this attack's, reading
    those given by reference from the store one at a time; the missing ones when any is not
    there as described."""
    setup = shadow_models.load(args, rt)
    indices = sorted(output.shadow_index for output in outputs)
    if indices != list(range(setup.num_shadow)):
        raise PartMismatch(f"the score part needs the outputs of shadow models 0 to {setup.num_shadow - 1} "
                                    f"once each, got shadow_index {indices}")
    target = shadow_models.query_target(setup, rt)
    statistics, missing = [], {}
    with rt.stage(results_pb2.STAGE_SCORE):
        for output in sorted(outputs, key=lambda o: o.shadow_index):
            try:
                query_logits = _query_logits(setup, output, store, target.logits.shape[2])
            except EntryProblem as problem:
                missing[output.shadow_index] = str(problem)
                continue
            statistics.append(shadow_models.shadow_statistic(setup, query_logits, target.labels))
    if missing:
        return attack_worker_pb2.ShadowsMissing(shadow_index=sorted(missing), reason=_missing_reason(missing))
    return shadow_models.score(setup, rt, target, np.stack(statistics))


def whole_attack(args: ShadowArgs, rt: Runtime, store: ShadowStore) -> Scores:
    """The whole attack in one job: the target's outputs, then every shadow model in turn
    (trained or found, and stored), then the score."""
    setup = shadow_models.load(args, rt)
    target = shadow_models.query_target(setup, rt)
    statistics = []
    for index in range(setup.num_shadow):
        with rt.labelled(f"shadow {index + 1}/{setup.num_shadow}"):
            logits, _ = _train_or_find(setup, rt, index, store)
        statistics.append(shadow_models.shadow_statistic(setup, logits[:, setup.query], target.labels))
    return shadow_models.score(setup, rt, target, np.stack(statistics))


# ---------------------------------------------------------------- their steps


def _train_or_find(setup: Setup, rt: Runtime, index: int,
                   store: ShadowStore) -> tuple[np.ndarray, Fingerprint | None]:
    """Shadow model `index`'s logits (views, N, classes), from the store's cache or trained and
    stored there, and the fingerprint of its entry (None when there is no cache or it was not
    written)."""
    cache = store.cache
    if cache is None:
        return shadow_models.train_shadow(setup, rt, index), None
    key = store.key(setup, index)
    found = cache.load(key, setup.masks[index], len(setup.views))
    if found is not None:
        with rt.stage(results_pb2.STAGE_TRAIN_SHADOW):
            rt.progress(1.0, "found in the shadow cache, not trained again")
        return found
    logits = shadow_models.train_shadow(setup, rt, index)
    return logits, cache.store(key, logits, setup.masks[index])


def _query_logits(setup: Setup, output: attack_worker_pb2.ShadowOutput, store: ShadowStore,
                  num_classes: int) -> np.ndarray:
    """A shadow output's logits on the query records (views, Q, classes): inline, or read from
    the store (EntryProblem when it is not there as the output describes). Outputs of another
    attack or seed, of other views, records or classes than the target's, or not finite, are a
    PartMismatch."""
    index, num_views, num_queries = output.shadow_index, len(setup.views), len(setup.query)
    if output.num_rows != num_views * num_queries or output.num_classes != num_classes:
        raise PartMismatch(f"shadow {index}: {output.num_rows} rows of {output.num_classes} classes, expected "
                           f"{num_views} views x {num_queries} query records of the target's {num_classes}")
    if output.HasField("entry"):
        if output.cache_key != store.key(setup, index):
            raise PartMismatch(f"shadow {index} was trained on other records than this attack's shadow model of "
                               "that index (another seed or population?)")
        if store.cache is None:
            raise EntryProblem("this worker keeps no shadow cache", absent=True)
        expected = Fingerprint(output.entry.size_bytes, output.entry.sha256)
        logits, _ = store.cache.read(output.cache_key, setup.masks[index], num_views, expected)
        values = logits[:, setup.query]
        if values.shape[2] != num_classes:
            raise EntryProblem(f"entry {output.cache_key} holds {values.shape[2]} classes, not {num_classes}")
    else:
        shape = (num_views, num_queries, num_classes)
        if len(output.logits) != 4 * int(np.prod(shape)):
            raise PartMismatch(f"shadow {index}: {len(output.logits)} bytes of logits, expected {num_views} "
                               f"views x {num_queries} query records x {num_classes} classes")
        if output.in_mask != setup.query_masks[index].astype(np.uint8).tobytes():
            raise PartMismatch(f"shadow {index} was trained on other records than this attack's shadow model of "
                               "that index (another seed or population?)")
        values = np.frombuffer(output.logits, dtype="<f4").reshape(shape)
    if not np.isfinite(values).all():  # a worker refuses such outputs of a shadow model it trains
        raise PartMismatch(f"shadow {index}: its logits hold NaN or infinite values")
    return values


def _missing_reason(missing: dict[int, str]) -> str:
    """The first few problems, by shadow index, and how many more there are."""
    shown = [f"shadow {index}: {problem}" for index, problem in sorted(missing.items())[:MISSING_REASONS_SHOWN]]
    more = len(missing) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more else "")
