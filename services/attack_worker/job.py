"""One attack job, from its request to its result.

Validates the attack's arguments, runs the attack on a Paddle runtime, measures
its scores, and summarises the target model and the datasets read. Faults end in
a FAILED result rather than an exception, classified as `privaudit.services.common.errors`
says: a TaskError is the task's fault (INVALID_ARGUMENT naming the task field), an
attack this worker lacks is Unimplemented, any other `Failure` keeps its own
classification, and anything else is a ServiceBug (INTERNAL, details in the log
only, never retried). Only cancellation escapes, as `JobCancelled`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence

from privaudit.services.attack_worker import attacks, metrics, shadow_jobs
from privaudit.services.attack_worker.attack_cache import ShadowAttackStore
from privaudit.services.attack_worker.attacks import AttackUnavailable, baseline
from privaudit.services.attack_worker.device import job_device
from privaudit.services.attack_worker.job_basics import JobCancelled, attack_name
from privaudit.services.attack_worker.paddle_runtime import LoadedDataset, PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.attack_worker.storage import resolve_folder
from privaudit.services.common import task_spec
from privaudit.services.common.errors import Failure, ServiceBug, TaskError, Unimplemented, one_line
from privaudit.v1 import attack_worker_pb2, results_pb2

log = logging.getLogger(__name__)

# A job's answer: its result, or a shadow part's output, or a score part's missing shadow outputs.
JobOutcome = results_pb2.AttackResult | attack_worker_pb2.ShadowOutput | attack_worker_pb2.ShadowsMissing


def run_job(request: attack_worker_pb2.RunAttackRequest, settings: WorkerSettings,
            emit: Callable[[results_pb2.JobProgress], None],
            cancelled: threading.Event | None = None) -> JobOutcome:
    """Runs the job with the worker's `settings`; `emit` receives its progress. Raises JobCancelled
    once `cancelled` is set. A shadow part of LIRA or RMIA answers with its ShadowOutput when it
    succeeds, a score part with ShadowsMissing when shadow outputs it was given by reference are
    not in the worker's cache folder as described."""
    index = request.attack_index
    result = results_pb2.AttackResult(attack_index=index, attack_name=attack_name(request.attack))
    try:
        args = task_spec.attack_from_proto(request.attack, f"attacks[{index}]")
        _check_distinct_target_pair(args, settings.storage_root, f"attacks[{index}].args.")
        if isinstance(args, task_spec.ShadowModelArgs) or request.WhichOneof("part"):
            run = shadow_jobs.runner(args, request, settings)
        elif isinstance(args, task_spec.ShadowAttackArgs):  # ML-LEAK, LABEL-ONLY: reuse the worker's shadow work
            run = functools.partial(attacks.runner_for(args.name), cache=ShadowAttackStore.of(settings))
        else:
            run = attacks.runner_for(args.name)
    except TaskError as exc:
        return _failed(result, exc)
    except AttackUnavailable as exc:
        return _failed(result, Unimplemented(str(exc), f"attacks[{index}].name"))

    def report(stage: int, fraction: float, message: str) -> None:
        emit(results_pb2.JobProgress(attack_index=index, stage=stage, fraction=fraction, message=message))

    runtime = PaddleRuntime(settings, request.seed, report, cancelled, attack=args.name)
    try:
        scores = run(args, runtime)
        if isinstance(scores, attack_worker_pb2.ShadowOutput):
            scores.timings.extend(runtime.timings)
            return scores
        if isinstance(scores, attack_worker_pb2.ShadowsMissing):
            return scores
        with runtime.stage(results_pb2.STAGE_SCORE):
            evaluation = metrics.evaluate(scores, request.seed)
            target = _target_summary(args, runtime)
    except JobCancelled:
        raise
    except Exception as exc:
        result.target_queries = runtime.target_queries
        return _failed(result, _classified(exc, request, settings), runtime.timings)

    result.status = results_pb2.ATTACK_STATUS_SUCCEEDED
    result.device = settings.device or job_device(None)  # a serving worker's is resolved already
    result.target_model.CopyFrom(target)
    result.datasets.extend(_dataset_summaries(args, runtime.datasets_read))
    result.MergeFrom(metrics.to_proto(evaluation))
    result.timings.extend([*_shadow_timings(request), *runtime.timings])
    result.target_queries = runtime.target_queries
    return result


def _check_distinct_target_pair(args: task_spec.AttackArgs, storage_root: str, prefix: str) -> None:
    """Refuses members and non-members that are one folder (spelt alike or not): an audit of a
    dataset against itself measures nothing. A folder that does not resolve is left to loading."""
    pair = args.datasets()
    field = f"{prefix}{args.target_pair}"
    try:
        same = resolve_folder(storage_root, pair.members, f"{field}.members") == \
            resolve_folder(storage_root, pair.non_members, f"{field}.non_members")
    except TaskError:
        return
    if same:
        raise TaskError.at(f"{field}.non_members", f"{field}.members and {field}.non_members are the same folder "
                                                   f"('{pair.members}'); give the target model's training data "
                                                   "and data it never saw")


def _target_summary(args: task_spec.AttackArgs, runtime: PaddleRuntime) -> results_pb2.ModelSummary:
    """The target model and its accuracy on the whole member and non-member datasets, from the
    outputs the attack already computed (the runtime caches them)."""
    model = runtime.load_model("target_model", args.target_model)
    pair = args.datasets()
    batch_size = getattr(args, "batch_size", baseline.BATCH_SIZE)

    def accuracy(side: str, path: str) -> float:
        dataset = runtime.load_dataset(f"{args.target_pair}.{side}", path)
        return float(baseline.correctness(runtime.predict(model, dataset, batch_size)).mean())

    return results_pb2.ModelSummary(name=model.name, path=str(args.target_model), digest=model.digest or "",
                                    train_acc=accuracy("members", pair.members),
                                    test_acc=accuracy("non_members", pair.non_members))


def _dataset_summaries(args: task_spec.AttackArgs,
                       datasets_read: dict[str, LoadedDataset]) -> list[results_pb2.DatasetSummary]:
    """The target's members, its non-members, then every other dataset read (role `population`
    for auxiliary population data, `shadow` for a shadow model's), in the order asked for."""
    target = {f"{args.target_pair}.members": True, f"{args.target_pair}.non_members": False}
    fields = [*(f for f in target if f in datasets_read), *(f for f in datasets_read if f not in target)]

    def role(field: str) -> str:
        return "target" if field in target else "population" if field.startswith("population") else "shadow"

    return [
        results_pb2.DatasetSummary(
            name=datasets_read[field].name, path=datasets_read[field].path, length=datasets_read[field].length,
            is_member_dataset=target.get(field, False), role=role(field), digest=datasets_read[field].digest or "",
        )
        for field in fields
    ]


def _shadow_timings(request: attack_worker_pb2.RunAttackRequest) -> list[results_pb2.StageTiming]:
    """Each stage's time summed over the shadow jobs whose outputs a score part holds, in the order
    the stages first ran; none for any other job."""
    totals: dict[int, float] = {}
    for output in request.score.shadows:
        for timing in output.timings:
            totals[timing.stage] = totals.get(timing.stage, 0.0) + timing.seconds
    return [results_pb2.StageTiming(stage=stage, seconds=seconds) for stage, seconds in totals.items()]


def _classified(error: Exception, request: attack_worker_pb2.RunAttackRequest, settings: WorkerSettings) -> Failure:
    """What an exception from running the attack means. Runtimes and attacks name fields relative
    to the attack's args; anything that is not a Failure is our bug, logged with its traceback.
    Running out of memory, however reported, means the job passed its process's address-space
    limit: the task's fault, saying which limit."""
    if isinstance(error, TaskError):
        failure: Failure = error.prefixed(f"attacks[{request.attack_index}].args.")
    elif isinstance(error, Failure):
        failure = error
    elif isinstance(error, MemoryError):
        failure = TaskError.at("", f"the job ran out of memory ({one_line(error)})")
    else:
        log.error("task %s attack %d failed inside the worker", request.task_id, request.attack_index, exc_info=error)
        failure = ServiceBug(f"the attack worker failed ({one_line(error)}); its log has the details")
    if not _caused_by(error, MemoryError):
        return failure
    limit = settings.limits.memory_mb
    described = failure.attack_error()
    return TaskError.at(described.field, f"{described.message}; the job exceeded this worker's {limit} MB memory "
                                         f"limit (--job-memory-mb {limit}): use smaller data or models, or raise "
                                         "the limit")


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether `error`, or an exception it was raised from or while handling, is a `kind`."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _failed(result: results_pb2.AttackResult, failure: Failure,
            timings: Sequence[results_pb2.StageTiming] = ()) -> results_pb2.AttackResult:
    """`result` marked FAILED with the failure and the timings of the stages that ran."""
    result.status = results_pb2.ATTACK_STATUS_FAILED
    result.error.CopyFrom(failure.attack_error())
    result.timings.extend(timings)
    return result
