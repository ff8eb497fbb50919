"""LIRA and RMIA as worker jobs, on tiny models: the attack on a numpy runtime, then through the
Paddle runtime the whole attack in one job, the same attack split into shadow and score parts,
the shadow cache, the faults, the gRPC answer of a shadow part, the --cache-dir flag, and what
the runtime gives these attacks."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fake_runtime import AUDIT_PATHS, ConstantModel, audit_runtime, membership_auc
from worker_fixtures import (
    MODEL_CODE,
    NUM_CLASSES,
    AuditTree,
    baseline_request,
    records,
    served_worker,
    write_audit_tree,
    write_dataset,
    write_model,
)

from privaudit.services.attack_worker import paddle_runtime, shadow_jobs
from privaudit.services.attack_worker.__main__ import parse_flags
from privaudit.services.attack_worker.attacks import lira, shadow_models
from privaudit.services.attack_worker.attacks.base import Scores
from privaudit.services.attack_worker.attacks.loss import true_label_log_probability
from privaudit.services.attack_worker.attacks.shadow_population import Population, shadow_seed, training_masks
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.npz_store import Fingerprint, NpzStore
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.attack_worker.shadow_cache import ShadowCache, shadow_key
from privaudit.services.attack_worker.shadow_jobs import ShadowStore
from privaudit.services.common import task_spec
from privaudit.services.common.errors import TaskError
from privaudit.v1 import attack_worker_pb2, results_pb2

SEED = 7
FAST = {"num_shadow": 4, "epochs": 3, "lr": 0.05, "batch_size": 8}
CONSTANT_MODEL = '''
import paddle


class Constant(paddle.nn.Layer):
    def forward(self, x):
        return paddle.to_tensor([[0.5, 0.2, 0.2, 0.1]]).expand([x.shape[0], 4])


def get_model():
    return Constant()
'''


@pytest.fixture(autouse=True)
def every_progress_point_reports(monkeypatch):
    """Progress is rate-limited in time; the tests look at every message."""
    monkeypatch.setattr(paddle_runtime, "PROGRESS_INTERVAL_S", 0.0)


@dataclass(frozen=True)
class ShadowTree:
    audit: AuditTree
    population: tuple[str, ...]

    @property
    def root(self) -> Path:
        return self.audit.root


def write_population(root: Path, name: str, count: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, 4, size=count)]
    write_dataset(root / "datasets" / name, *records(labels, list(rng.random(count) < 0.7)))
    return f"datasets/{name}"


@pytest.fixture
def tree(tmp_path) -> ShadowTree:
    audit = write_audit_tree(tmp_path / "root", member_correct=[True] * 10 + [False] * 2,
                             non_member_correct=[True] * 5 + [False] * 7)
    population = (write_population(audit.root, "pop_a", 10, 1), write_population(audit.root, "pop_b", 6, 2))
    return ShadowTree(audit, population)


def common_args(tree: ShadowTree) -> dict:
    return {"target_datasets": [tree.audit.members, tree.audit.non_members], "target_model": tree.audit.model,
            "population_datasets": tree.population, **FAST}


def lira_args(tree: ShadowTree, **changes) -> task_spec.LiraArgs:
    return task_spec.LiraArgs(**{**common_args(tree), **changes})


def rmia_args(tree: ShadowTree, **changes) -> task_spec.RmiaArgs:
    return task_spec.RmiaArgs(**{**common_args(tree), "num_population": 12, **changes})


def request(args: task_spec.AttackArgs, part: int | list | None = None, seed: int = SEED):
    job = attack_worker_pb2.RunAttackRequest(task_id="t", attack_index=1, seed=seed,
                                             attack=task_spec.attack_to_proto(args))
    if isinstance(part, int):
        job.shadow.shadow_index = part
    elif part is not None:
        job.score.shadows.extend(part)
    return job


def run(tree: ShadowTree, job, cache_dir: Path | None = None, shared: bool = False):
    """The job's outcome and progress on a worker keeping its caches in `cache_dir` (None: no
    caches), shared with the pool's other workers when `shared`."""
    progress: list[results_pb2.JobProgress] = []
    settings = WorkerSettings(str(tree.root), cache_dir=None if cache_dir is None else str(cache_dir),
                              cache_shared=shared)
    return run_job(job, settings, progress.append), progress


def shadow_outputs(tree: ShadowTree, args, order, cache=None, shared=False) -> list[attack_worker_pb2.ShadowOutput]:
    outputs = [run(tree, request(args, index), cache, shared)[0] for index in order]
    assert all(isinstance(o, attack_worker_pb2.ShadowOutput) for o in outputs), outputs
    return outputs


def untimed(output: attack_worker_pb2.ShadowOutput) -> attack_worker_pb2.ShadowOutput:
    """The output without its stage timings, which differ from run to run."""
    copy = attack_worker_pb2.ShadowOutput()
    copy.CopyFrom(output)
    copy.ClearField("timings")
    return copy


def measurements(result: results_pb2.AttackResult) -> tuple:
    return result.metrics, list(result.roc), list(result.most_exposed), result.score_histogram


# ---------------------------------------------------------------- on a numpy runtime


def whole_attack(args: task_spec.AttackArgs, rt) -> Scores:
    """The whole attack in one job on a runtime, keeping no shadow model."""
    return shadow_jobs.whole_attack(args, rt, ShadowStore(".", None))


def fake_args(kind: type[task_spec.AttackArgs], **changes) -> task_spec.AttackArgs:
    return kind(target_datasets=AUDIT_PATHS["target_datasets"], target_model=AUDIT_PATHS["target_model"],
                **{"population_datasets": AUDIT_PATHS["shadow_datasets"], "num_shadow": 8, **changes})


@pytest.mark.parametrize(("kind", "online"), [(task_spec.LiraArgs, True), (task_spec.LiraArgs, False),
                                              (task_spec.RmiaArgs, False), (task_spec.RmiaArgs, True)])
def test_on_a_memorising_model_each_shadow_trains_on_its_records_from_its_seed(kind, online):
    rt = audit_runtime(seed=SEED)
    scores = whole_attack(fake_args(kind, online=online), rt)
    assert membership_auc(scores) > 0.95
    masks = training_masks(Population(200, 200, (200, 200)), 8, 200, online, SEED)  # 4 datasets of 200 records
    folders = (*AUDIT_PATHS["target_datasets"], *AUDIT_PATHS["shadow_datasets"])
    population = rt.records([rt.datasets[folder] for folder in folders], range(800), "all")
    assert [call.seed for call in rt.train_calls] == [shadow_seed(SEED, k) for k in range(8)]
    for call, mask in zip(rt.train_calls, masks, strict=True):
        np.testing.assert_array_equal(call.data.samples, population.samples[mask])
        assert (call.epochs, call.lr, call.batch_size) == (20, 0.001, 128)
        assert len(call.data) == 200  # as many records as the target's members
    # The scores carry the records' labels, where their threshold comes from, and no warning.
    np.testing.assert_array_equal(scores.member_labels, population.labels[:200])
    np.testing.assert_array_equal(scores.non_member_labels, population.labels[200:400])
    assert scores.threshold_source and scores.warnings == ()


def test_offline_every_model_is_a_reference_for_every_audited_record_and_online_half_are_in():
    """RMIA offline with num_shadow 4: no audited record in any model, so 4 references each; LIRA
    online with 8: each audited record in exactly 4 models, out of the other 4."""
    rt = audit_runtime(seed=SEED)
    setup = shadow_models.load(fake_args(task_spec.RmiaArgs, num_shadow=4), rt)
    audited = setup.population.num_audited
    assert ((~setup.query_masks[:, :audited]).sum(axis=0) == 4).all()
    assert (setup.masks.sum(axis=1) == 200).all() and not setup.masks[:, :audited].any()
    z_in = setup.query_masks[:, audited:].sum(axis=0)
    assert (z_in < 4).all() and len(z_in) == (~setup.masks[:, audited:].all(axis=0)).sum()  # every one there is
    setup = shadow_models.load(fake_args(task_spec.LiraArgs), rt)
    assert (setup.query_masks.sum(axis=0) == 4).all() and (setup.masks.sum(axis=1) == 200).all()


@pytest.mark.parametrize(("online", "short"), [(False, 500), (True, 700)])
def test_shadow_train_size_sets_every_models_training_set_and_a_shortfall_is_a_warning(online, short):
    rt = audit_runtime(seed=SEED)
    whole_attack(fake_args(task_spec.LiraArgs, shadow_train_size=150, online=online), rt)
    assert [len(call.data) for call in rt.train_calls] == [150 if not online else 200] * 8
    rt = audit_runtime(seed=SEED)
    scores = whole_attack(fake_args(task_spec.LiraArgs, shadow_train_size=short, online=online), rt)
    there_is = 600 if online else 400  # online, half the 400 audited records and the 400 population records
    assert [len(call.data) for call in rt.train_calls] == [there_is] * 8
    assert scores.warnings[-1] == (f"LIRA's shadow models trained on {there_is} records, fewer than "
                                   f"shadow_train_size ({short}): give more population_datasets (models that see less "
                                   "data than the target did make the attack weaker than it could be)")


@pytest.mark.parametrize(("online", "train_size"), [(False, 400), (True, 600)])
def test_rmia_needs_population_records_left_over_for_its_z_samples(online, train_size):
    """Where the population cannot supply train_size records to every model, RMIA's would all be
    trained on every population record: none is left to serve as a z sample, and the task fails."""
    args = fake_args(task_spec.RmiaArgs, shadow_train_size=train_size, online=online)
    with pytest.raises(TaskError) as caught:
        whole_attack(args, audit_runtime(seed=SEED))
    assert [p.field for p in caught.value.problems] == ["population_datasets"]
    assert "each of their 400 records is in every reference model's training set" in str(caught.value)
    assert f"a smaller shadow_train_size (now {train_size})" in str(caught.value)


def test_online_shadow_models_without_population_data_are_topped_up_to_nothing_and_say_so():
    rt = audit_runtime(seed=SEED)
    rt.datasets[AUDIT_PATHS["target_datasets"][1]] = rt.records(
        [rt.datasets[AUDIT_PATHS["target_datasets"][1]]], range(100), "fewer non-members")
    scores = whole_attack(fake_args(task_spec.LiraArgs, population_datasets=()), rt)
    assert [len(call.data) for call in rt.train_calls] == [150] * 8  # half of 200 + 100 audited records
    assert scores.warnings[0].startswith("LIRA's shadow models trained on 150 records, fewer than the target's "
                                         "200 members: give more population_datasets")


def test_online_shadow_models_with_more_audited_records_than_twice_train_size_say_so():
    rt = audit_runtime(seed=SEED)
    scores = whole_attack(fake_args(task_spec.LiraArgs, shadow_train_size=100), rt)
    assert [len(call.data) for call in rt.train_calls] == [200] * 8
    assert scores.warnings == ("LIRA's shadow models trained on 200 records, more than shadow_train_size (100): "
                               "online, each trains on half of the 400 audited records; audit fewer non-members, "
                               "or run offline (online: false)",)


def test_offline_rmia_refuses_before_training_when_a_cannot_be_chosen():
    """One z sample is a member or a non-member of each reference model, never both."""
    rt = audit_runtime(seed=SEED)
    with pytest.raises(TaskError) as caught:
        whole_attack(fake_args(task_spec.RmiaArgs, num_population=1), rt)
    assert [p.field for p in caught.value.problems] == ["a"] and not rt.train_calls
    assert "set a (0 to 1), or raise num_population" in str(caught.value)
    whole_attack(fake_args(task_spec.RmiaArgs, num_population=1, a=0.5), audit_runtime(seed=SEED))


def test_offline_rmia_chooses_a_on_its_reference_models_unless_the_task_sets_it():
    rt = audit_runtime(seed=SEED)
    num_z = len(shadow_models.load(fake_args(task_spec.RmiaArgs), rt).query) - 400
    scores = whole_attack(fake_args(task_spec.RmiaArgs), rt)
    assert "chosen on the reference models" in scores.threshold_source
    assert f"beats 95% of the {num_z} population samples z" in scores.threshold_source
    scores = whole_attack(fake_args(task_spec.RmiaArgs, a=0.45), audit_runtime(seed=SEED))
    assert "a = 0.45 set by the task" in scores.threshold_source


@pytest.mark.parametrize("kind", [task_spec.LiraArgs, task_spec.RmiaArgs])
def test_on_a_model_that_ignores_its_input_nothing_is_trained_and_the_auc_is_one_half(kind):
    rt = audit_runtime(ConstantModel(np.linspace(1.0, 2.0, 10) / 15.0))
    assert membership_auc(whole_attack(fake_args(kind), rt)) == 0.5
    assert not rt.train_calls


# ---------------------------------------------------------------- the attack's jobs


def test_the_whole_attack_runs_in_one_job(tree):
    result, progress = run(tree, request(lira_args(tree)))
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    assert (result.attack_index, result.attack_name) == (1, "LIRA")
    assert [(d.name, d.role, d.is_member_dataset) for d in result.datasets] == [
        ("members", "target", True), ("non_members", "target", False), ("pop_a", "population", False),
        ("pop_b", "population", False)]
    assert (result.metrics.num_members, result.metrics.num_non_members) == (12, 12)
    # The target is queried first, so that a target that cannot be fails before any training.
    assert [t.stage for t in result.timings] == [results_pb2.STAGE_LOAD, results_pb2.STAGE_PREDICT,
                                                 results_pb2.STAGE_TRAIN_SHADOW, results_pb2.STAGE_SCORE]
    messages = [p.message for p in progress]
    assert "shadow 1/4: training net on its training records, epoch 1/3" in messages
    assert {m.split(":")[0] for m in messages if m.startswith("shadow")} == {f"shadow {i}/4" for i in (1, 2, 3, 4)}


ATTACK_VARIANTS = [
    lira_args, lambda tree: lira_args(tree, online=False, augment=True, fixed_variance=False),
    rmia_args, lambda tree: rmia_args(tree, online=True, seed=99),
]
VARIANT_IDS = ["lira", "lira-offline-augmented", "rmia", "rmia-online"]


@pytest.mark.parametrize("make_args", ATTACK_VARIANTS, ids=VARIANT_IDS)
def test_shadow_parts_in_any_order_then_the_score_part_give_the_whole_attacks_result(tree, make_args):
    args = make_args(tree)
    outputs = shadow_outputs(tree, args, random.Random(0).sample(range(4), 4))
    scored, _ = run(tree, request(args, outputs))
    whole, _ = run(tree, request(args))
    assert scored.status == results_pb2.ATTACK_STATUS_SUCCEEDED, scored.error
    assert measurements(scored) == measurements(whole)
    assert scored.target_model == whole.target_model and list(scored.datasets) == list(whole.datasets)

    # The score job's timings start with the shadow jobs' stages, summed over those jobs.
    totals: dict[int, float] = {}
    for output in outputs:
        assert results_pb2.STAGE_TRAIN_SHADOW in [t.stage for t in output.timings]
        for timing in output.timings:
            totals[timing.stage] = totals.get(timing.stage, 0.0) + timing.seconds
    assert [(t.stage, t.seconds) for t in scored.timings[:len(totals)]] == list(totals.items())
    assert [t.stage for t in scored.timings[len(totals):]][-1] == results_pb2.STAGE_SCORE


@pytest.mark.parametrize("make_args", ATTACK_VARIANTS, ids=VARIANT_IDS)
def test_shadow_outputs_by_reference_score_as_inline_ones_and_as_one_job(tree, tmp_path, make_args):
    args = make_args(tree)
    order = random.Random(1).sample(range(4), 4)
    by_reference = shadow_outputs(tree, args, order, tmp_path / "shared", shared=True)
    inline = shadow_outputs(tree, args, order, tmp_path / "private")
    for output in by_reference:
        entry = tmp_path / "shared" / "shadows" / f"{output.cache_key}.npz"
        data = entry.read_bytes()
        assert not output.logits and not output.in_mask and output.HasField("entry")
        assert (output.entry.size_bytes, output.entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert output.ByteSize() < 300
    scored, _ = run(tree, request(args, by_reference), tmp_path / "shared")
    assert scored.status == results_pb2.ATTACK_STATUS_SUCCEEDED, scored.error
    assert measurements(scored) == measurements(run(tree, request(args, inline))[0])
    assert measurements(scored) == measurements(run(tree, request(args))[0])
    # Old (inline) and new outputs may be mixed in one score part.
    mixed = [*inline[:2], *by_reference[2:]]
    assert measurements(run(tree, request(args, mixed), tmp_path / "shared")[0]) == measurements(scored)


def corrupt(entry: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["deleted", "corrupted", "replaced", "unreadable"])
def test_a_referenced_entry_not_there_as_described_is_missing_and_never_scored_on(tree, tmp_path, damage):
    args, cache = lira_args(tree), tmp_path / "shared"
    outputs = shadow_outputs(tree, args, range(4), cache, shared=True)
    entry = cache / "shadows" / f"{outputs[1].cache_key}.npz"
    if damage == "deleted":
        entry.unlink()
    elif damage == "corrupted":
        corrupt(entry)
    elif damage == "replaced":  # another shadow model's entry under this one's key
        entry.write_bytes((cache / "shadows" / f"{outputs[2].cache_key}.npz").read_bytes())
    else:
        entry.write_bytes(b"not an npz file")
    (cache / "shadows" / f"{outputs[3].cache_key}.npz").unlink()
    missing, _ = run(tree, request(args, outputs), cache)
    assert isinstance(missing, attack_worker_pb2.ShadowsMissing), missing
    assert list(missing.shadow_index) == [1, 3]
    assert missing.reason.startswith("shadow 1: ") and "; shadow 3: no entry" in missing.reason
    # A score job on a worker that does not see the folder finds nothing: every one is missing.
    elsewhere, _ = run(tree, request(args, outputs), tmp_path / "private")
    assert list(elsewhere.shadow_index) == [0, 1, 2, 3]

    # The two shadow parts again (a damaged entry is trained again and replaced), then the score.
    redone = {o.shadow_index: o for o in [*outputs, *shadow_outputs(tree, args, [1, 3], cache, shared=True)]}
    scored, _ = run(tree, request(args, list(redone.values())), cache)
    assert measurements(scored) == measurements(run(tree, request(args))[0])


def test_a_reference_to_another_attacks_shadow_model_is_refused(tree, tmp_path):
    outputs = shadow_outputs(tree, lira_args(tree, seed=1), range(4), tmp_path, shared=True)
    error = failed(run(tree, request(lira_args(tree), outputs), tmp_path)[0])
    assert error.code == "INTERNAL" and "shadow 0 was trained on other records" in error.message


def test_a_shared_cache_that_cannot_be_written_answers_inline(tree, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    output, _ = run(tree, request(lira_args(tree), 0), not_a_folder, shared=True)
    assert not output.HasField("entry") and len(output.logits) == 24 * 4 * 4


def test_the_score_job_holds_one_shadow_models_outputs_at_a_time(tree, tmp_path):
    """With 4096 classes a shadow model's logits on the query records dwarf everything else: the
    score job's numpy memory (its temporaries for one shadow model included) stays below what the
    32 shadow models' logits took at once, as float32, before any statistic was computed."""
    classes, num_shadow = 4096, 32
    rng = np.random.default_rng(0)
    write_model(tree.root / "models" / "wide", {"linear.weight": rng.normal(size=(4, classes)).astype(np.float32),
                                                "linear.bias": np.zeros(classes, np.float32)},
                code=MODEL_CODE.replace(f"Linear({NUM_CLASSES}, {NUM_CLASSES})", f"Linear({NUM_CLASSES}, {classes})"))
    args = lira_args(tree, target_model="models/wide", num_shadow=num_shadow, epochs=1)
    outputs = shadow_outputs(tree, args, range(num_shadow), tmp_path, shared=True)
    tracemalloc.start()
    try:
        result, _ = run(tree, request(args, outputs), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    all_at_once = num_shadow * 24 * classes * 4  # float32 logits of the shadow models on 24 query records
    assert peak < all_at_once * 0.7, f"{peak:,} bytes at the peak"


def test_the_score_keeps_one_statistic_per_shadow_model_and_gives_the_old_numbers():
    """Reducing each shadow model's logits as it is read gives bit for bit what the score computed
    from all of them at once (K, views, Q, classes) before."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 4, size=(8, 2, 50, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=50)
    shadow_in = training_masks(Population(25, 25), 8, 25, True, 3)
    setup = SimpleNamespace(args=task_spec.LiraArgs(**{**fake_args(task_spec.LiraArgs).model_dump(), "augment": True}))
    streamed = np.stack([shadow_models.shadow_statistic(setup, shadow, labels) for shadow in logits])
    at_once = lira.logit_scaled_confidence(logits, labels)
    np.testing.assert_array_equal(streamed, at_once)
    np.testing.assert_array_equal(lira.scores(at_once[0].T, streamed.transpose(0, 2, 1), shadow_in, True, False),
                                  lira.scores(at_once[0].T, at_once.transpose(0, 2, 1), shadow_in, True, False))
    setup = SimpleNamespace(args=fake_args(task_spec.RmiaArgs))
    streamed = np.stack([shadow_models.shadow_statistic(setup, shadow[:1], labels) for shadow in logits])[:, 0]
    np.testing.assert_array_equal(streamed, np.stack([true_label_log_probability(shadow[0], labels)
                                                      for shadow in logits]))
    assert streamed.shape == (8, 50) and streamed.dtype == np.float64


def test_a_shadow_output_describes_the_query_records(tree):
    """LIRA queries the 24 audited records; RMIA also its 12 z samples; with augment, 2 views each."""
    for args, rows in ((lira_args(tree), 24), (rmia_args(tree, online=True), 36), (lira_args(tree, augment=True), 48)):
        outputs = shadow_outputs(tree, args, range(4))
        queries = 36 if isinstance(args, task_spec.RmiaArgs) else 24
        for index, output in enumerate(outputs):
            assert (output.shadow_index, output.num_rows, output.num_classes) == (index, rows, 4)
            assert len(output.logits) == rows * 4 * 4 and len(output.in_mask) == queries
            assert len(output.cache_key) == 64
        in_counts = np.sum([np.frombuffer(o.in_mask, np.uint8) for o in outputs], axis=0)
        assert (in_counts[:24] == 2).all()  # online, every audited record is IN half the shadow models
        assert (in_counts[24:] < 4).all()  # a z sample is OUT of at least one
    offline = shadow_outputs(tree, rmia_args(tree), range(4))
    in_counts = np.sum([np.frombuffer(o.in_mask, np.uint8) for o in offline], axis=0)
    assert (in_counts[:24] == 0).all() and (in_counts[24:] < 4).all()


def test_each_shadow_model_has_its_own_seed_and_is_reproducible(tree):
    first, second = shadow_outputs(tree, lira_args(tree), [0, 1])
    again = shadow_outputs(tree, lira_args(tree), [0])[0]
    assert untimed(again) == untimed(first)
    assert first.logits != second.logits and first.cache_key != second.cache_key


def test_the_attacks_seed_argument_overrides_the_jobs(tree):
    by_argument = untimed(shadow_outputs(tree, lira_args(tree, seed=3), [0])[0])
    assert by_argument != untimed(shadow_outputs(tree, lira_args(tree), [0])[0])
    assert by_argument == untimed(run(tree, request(lira_args(tree, seed=3), 0, seed=12345))[0])


def test_a_target_without_weights_is_its_own_shadow_and_gives_chance(tree):
    (tree.root / "models" / "constant").mkdir()
    (tree.root / "models" / "constant" / "constant.py").write_text(CONSTANT_MODEL)
    for args in (lira_args(tree, target_model="models/constant"), rmia_args(tree, target_model="models/constant")):
        result, progress = run(tree, request(args))
        assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
        assert result.metrics.auc == 0.5
        assert not any("training" in p.message for p in progress)


# ---------------------------------------------------------------- the shadow cache


def test_a_cached_shadow_model_is_not_trained_again_by_any_later_job(tree, tmp_path):
    cache = tmp_path / "cache"
    first = shadow_outputs(tree, lira_args(tree), [0], cache)[0]
    shadows = cache / "shadows"
    assert [p.name for p in shadows.iterdir()] == [f"{first.cache_key}.npz"]  # no temporary file left

    again, progress = run(tree, request(lira_args(tree), 0), cache)
    assert untimed(again) == untimed(first)
    assert not any("training" in p.message for p in progress)
    assert "shadow 1/4: found in the shadow cache, not trained again" in [p.message for p in progress]

    # Online RMIA with the same shadow models (same K, seed, population and training) reuses them
    # too, and a whole-attack job trains only the three that are missing.
    _, progress = run(tree, request(rmia_args(tree, online=True), 0), cache)
    assert not any("training" in p.message for p in progress)
    result, progress = run(tree, request(lira_args(tree)), cache)
    trained = {p.message.split(":")[0] for p in progress if "training" in p.message}
    assert trained == {"shadow 2/4", "shadow 3/4", "shadow 4/4"}
    assert len(list(shadows.iterdir())) == 4
    assert measurements(result) == measurements(run(tree, request(lira_args(tree)))[0])


def test_an_unusable_cache_entry_is_trained_again_and_replaced(tree, tmp_path):
    first = shadow_outputs(tree, lira_args(tree), [0], tmp_path)[0]
    entry = tmp_path / "shadows" / f"{first.cache_key}.npz"
    entry.write_bytes(b"not an npz file")
    again, progress = run(tree, request(lira_args(tree), 0), tmp_path)
    assert untimed(again) == untimed(first) and any("training" in p.message for p in progress)
    setup = shadow_models.load(lira_args(tree), PaddleRuntime(WorkerSettings(str(tree.root)), SEED, lambda *_: None))
    cache = ShadowCache.of(WorkerSettings(str(tree.root), cache_dir=str(tmp_path)))
    assert cache.load(first.cache_key, setup.masks[0], 1) is not None
    cache = ShadowCache.of(WorkerSettings(str(tree.root), cache_dir=str(tmp_path)))
    assert cache.load(first.cache_key, setup.masks[1], 1) is None  # another training set: not this entry
    cache = ShadowCache.of(WorkerSettings(str(tree.root), cache_dir=str(tmp_path)))
    assert cache.load(first.cache_key, setup.masks[0], 10) is None  # other views


def test_a_cache_that_cannot_be_written_does_not_fail_the_job(tree, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    output, _ = run(tree, request(lira_args(tree), 0), not_a_folder)
    assert isinstance(output, attack_worker_pb2.ShadowOutput)


def test_an_entrys_bytes_follow_from_its_arrays_alone(tmp_path, monkeypatch):
    """So that its fingerprint names its content, whichever worker wrote it and when."""
    arrays = {"logits": np.arange(24, dtype=np.float32).reshape(1, 6, 4), "in_mask": np.arange(6) % 2 == 0}
    first = NpzStore(tmp_path / "a", 2**20).store("k", **arrays)
    monkeypatch.setattr(time, "time", lambda: 2e9)  # another day, as zip time stamps would have it
    monkeypatch.setattr(time, "localtime", lambda *_: time.gmtime(2e9))
    second = NpzStore(tmp_path / "b", 2**20).store("k", **arrays)
    data = (tmp_path / "a" / "k.npz").read_bytes()
    assert data == (tmp_path / "b" / "k.npz").read_bytes()
    assert first == second == Fingerprint(len(data), hashlib.sha256(data).hexdigest())
    with np.load(tmp_path / "a" / "k.npz") as entry:  # still what np.load reads
        np.testing.assert_array_equal(entry["logits"], arrays["logits"])


def test_shadow_entries_used_within_the_hour_outlive_the_bound(tree, tmp_path):
    cache = ShadowCache.of(WorkerSettings(str(tree.root), cache_dir=str(tmp_path), cache_max_mb=0))
    mask = np.ones(6, dtype=bool)
    for key in ("old", "used", "new"):
        cache.store(key, np.zeros((1, 6, 4)), mask)
    folder = tmp_path / "shadows"
    for key, hours in (("old", 2), ("used", 2)):
        os.utime(folder / f"{key}.npz", (time.time() - hours * 3600,) * 2)
    assert cache.load("used", mask, 1) is not None  # reading marks it used
    cache.store("newest", np.zeros((1, 6, 4)), mask)
    assert sorted(p.stem for p in folder.glob("*.npz")) == ["new", "newest", "used"]


def test_the_cache_key_follows_what_decides_the_shadow_model(tree):
    def key(args, index: int = 0, seed: int = SEED, dataset_memory_mb: int = 1024) -> str:
        settings = WorkerSettings(str(tree.root), dataset_memory_mb=dataset_memory_mb)
        return shadow_key(tree.root, shadow_models.load(args, PaddleRuntime(settings, seed, lambda *_: None)), index)

    base = key(lira_args(tree))
    same = [lira_args(tree, fixed_variance=True), rmia_args(tree, online=True),
            rmia_args(tree, online=True, num_population=3, gamma=2.0), lira_args(tree, seed=SEED),
            lira_args(tree, shadow_train_size=12),  # the default: the 12 members
            lira_args(tree, num_shadow=6)]  # its first model trains on the same records from the same seed
    assert {key(args) for args in same} == {base}
    offline = key(lira_args(tree, online=False))
    assert {key(rmia_args(tree)), key(rmia_args(tree, a=0.9))} == {offline}
    # Online and offline models train on other records (the mask is part of the key), and so do
    # models of another training-set size: a model trained under another recipe is never served.
    different = [offline, key(lira_args(tree, shadow_train_size=13)), key(lira_args(tree), index=1),
                 key(lira_args(tree), seed=8), key(lira_args(tree, epochs=4)),
                 key(lira_args(tree, lr=0.01)), key(lira_args(tree, batch_size=4)), key(lira_args(tree, augment=True)),
                 key(lira_args(tree, num_shadow=6), index=5),
                 key(lira_args(tree, population_datasets=tree.population[:1]))]
    assert len({base, *different}) == 1 + len(different)

    # Datasets read into memory count by their records; others by their code and length.
    streamed = key(lira_args(tree), dataset_memory_mb=0)
    dataset_code = tree.root / "datasets" / "pop_b" / "dataset.py"
    dataset_code.write_text(dataset_code.read_text() + "\n# edited\n")
    assert key(lira_args(tree)) == base
    assert key(lira_args(tree), dataset_memory_mb=0) != streamed
    data = dict(np.load(tree.root / "datasets" / "pop_b" / "records.npz"))
    data["samples"][0] += 1  # the same length and code, another record
    np.savez(tree.root / "datasets" / "pop_b" / "records.npz", **data)
    edited = key(lira_args(tree))
    assert edited != base
    write_population(tree.root, "pop_b", 7, 2)  # one more record
    assert key(lira_args(tree)) not in (base, edited)
    model_code = tree.root / "models" / "net" / "model.py"
    model_code.write_text(model_code.read_text() + "\n# edited\n")
    assert key(lira_args(tree)) not in (base, edited)


# ---------------------------------------------------------------- faults


def failed(result) -> results_pb2.AttackError:
    assert isinstance(result, results_pb2.AttackResult) and result.status == results_pb2.ATTACK_STATUS_FAILED
    return result.error


def test_a_score_part_refuses_shadow_outputs_of_another_attack(tree):
    outputs = shadow_outputs(tree, lira_args(tree), range(4))
    error = failed(run(tree, request(lira_args(tree), outputs[:3]))[0])
    assert error.code == "INTERNAL" and "needs the outputs of shadow models 0 to 3 once each" in error.message
    other_seed = shadow_outputs(tree, lira_args(tree, seed=1), range(4))
    error = failed(run(tree, request(lira_args(tree), other_seed))[0])
    assert "shadow 0 was trained on other records" in error.message
    error = failed(run(tree, request(lira_args(tree, augment=True), outputs))[0])
    assert "expected 2 views x 24 query records" in error.message
    error = failed(run(tree, request(lira_args(tree, online=False), outputs))[0])
    assert "shadow 0 was trained on other records" in error.message  # online models for an offline attack


def test_a_shadow_index_beyond_num_shadow_fails(tree):
    assert "shadow_index 4 is out of range" in failed(run(tree, request(lira_args(tree), 4))[0]).message


def test_a_part_that_does_not_fit_fails_as_a_service_fault_saying_what_without_a_traceback(tree, caplog):
    """Found by fuzzing: a mismatch was an unexpected exception (a traceback logged per job, the
    message "see the log"), and NaN logits in a shadow output failed the metrics instead."""
    outputs = shadow_outputs(tree, lira_args(tree), range(4))
    not_finite = attack_worker_pb2.ShadowOutput()
    not_finite.CopyFrom(outputs[2])
    values = np.frombuffer(not_finite.logits, dtype="<f4").copy()
    values[5] = np.inf
    not_finite.logits = values.tobytes()
    caplog.set_level(logging.INFO)
    out_of_range = "shadow_index 4 is out of range: the attack has 4 shadow models"
    for job, message in ((request(lira_args(tree), 4), out_of_range),
                         (request(lira_args(tree), [*outputs[:2], not_finite, outputs[3]]),
                          "shadow 2: its logits hold NaN or infinite values")):
        error = failed(run(tree, job)[0])
        assert (error.code, error.fault, error.retryable, error.message) == \
            ("INTERNAL", results_pb2.FAULT_SERVICE, False, message)
    assert not [record.getMessage() for record in caplog.records if record.exc_info]


def test_a_part_of_an_attack_without_shadow_models_is_invalid(tree):
    job = baseline_request(tree.audit)
    job.shadow.shadow_index = 0
    error = failed(run(tree, job)[0])
    assert (error.code, error.field) == ("INVALID_ARGUMENT", "")
    assert "only LIRA and RMIA jobs have parts" in error.message


@pytest.mark.parametrize(("make_args", "field", "words"), [
    (lambda tree: lira_args(tree, population_datasets=("datasets/missing",)),
     "attacks[1].args.population_datasets[0]", "does not exist"),
    (lambda tree: lira_args(tree, population_datasets=("datasets/flat",), shadow_train_size=14),
     "attacks[1].args.population_datasets[0]", "flat has samples of shape [4], unlike the datasets read with it"),
])
def test_a_failed_shadow_part_answers_with_a_failed_result_naming_the_field(tree, make_args, field, words):
    write_dataset(tree.root / "datasets" / "flat", np.eye(4, dtype=np.float32), np.arange(4))  # 1-D samples
    error = failed(run(tree, request(make_args(tree), 0))[0])
    assert (error.code, error.field) == ("INVALID_ARGUMENT", field)
    assert words in error.message


def test_augmenting_samples_that_are_not_images_names_the_argument(tmp_path):
    audit = write_audit_tree(tmp_path)
    for name in ("members", "non_members"):
        write_dataset(tmp_path / "datasets" / name, np.eye(4, dtype=np.float32)[[0, 1, 2, 3] * 2], np.arange(8) % 4)
    args = lira_args(ShadowTree(audit, ()), augment=True)
    error = failed(run_job(request(args, 0), WorkerSettings(str(tmp_path)), lambda _: None))
    assert (error.code, error.field) == ("INVALID_ARGUMENT", "attacks[1].args.augment")
    assert "are not images" in error.message


# ---------------------------------------------------------------- the service and its flag


def test_over_grpc_a_shadow_part_ends_with_its_output_and_a_fault_with_a_result(tree, tmp_path):
    with served_worker(tree.root, cache_dir=str(tmp_path)) as (stub, _):
        responses = list(stub.RunAttack(request(lira_args(tree), 2), timeout=60))
        assert [r.WhichOneof("event") for r in responses[:-1]] == ["progress"] * (len(responses) - 1)
        assert responses[-1].WhichOneof("event") == "shadow" and responses[-1].shadow.shadow_index == 2
        assert (tmp_path / "shadows" / f"{responses[-1].shadow.cache_key}.npz").exists()
        failure = list(stub.RunAttack(request(lira_args(tree, population_datasets=("nowhere",)), 0), timeout=60))
        assert failure[-1].WhichOneof("event") == "result"
        assert failure[-1].result.status == results_pb2.ATTACK_STATUS_FAILED


def test_the_cache_dir_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PRIVAUDIT_CACHE_DIR", raising=False)
    assert parse_flags([]).cache_dir is None
    assert parse_flags(["--cache-dir", str(tmp_path)]).cache_dir == tmp_path
    monkeypatch.setenv("PRIVAUDIT_CACHE_DIR", str(tmp_path))
    assert parse_flags([]).cache_dir == tmp_path
    with pytest.raises(SystemExit):
        parse_flags(["--cache-dir", str(tmp_path / "missing")])
    assert "--cache-dir / PRIVAUDIT_CACHE_DIR: " in capsys.readouterr().err


# ---------------------------------------------------------------- what the runtime gives these attacks


def test_records_of_several_datasets_are_read_in_the_order_asked_and_augmented(tree):
    rt = PaddleRuntime(WorkerSettings(str(tree.root)), SEED, lambda *_: None)
    parts = [rt.load_dataset("a", tree.audit.members), rt.load_dataset("b", tree.population[1])]
    everything = [part.read(range(len(part))) for part in parts]
    samples, labels = (np.concatenate([e[i] for e in everything]) for i in (0, 1))
    order = np.array([17, 0, 12, 5, 13, 11])  # across both datasets, out of order
    selection = rt.records(parts, order, "the picks")
    assert len(selection) == 6 and selection.name == "the picks"
    got_samples, got_labels = selection.read([5, 0, 2])
    np.testing.assert_array_equal(got_labels, labels[order[[5, 0, 2]]])
    np.testing.assert_array_equal(got_samples, samples[order[[5, 0, 2]]])
    # An augmented selection is queried augmented (on the runtime's device): as the flipped records are.
    write_dataset(tree.root / "datasets" / "flipped", np.flip(samples[order], axis=2), labels[order])
    model = rt.load_model("target_model", tree.audit.model)
    mirrored = rt.predict(model, rt.records(parts, order, "mirrored", lira.AUGMENTED_VIEWS[1]), 4)
    flipped = rt.predict(model, rt.load_dataset("c", "datasets/flipped"), 4)
    np.testing.assert_allclose(mirrored.logits, flipped.logits, rtol=1e-6)
    assert not np.allclose(mirrored.logits, rt.predict(model, selection, 4).logits)


def test_fresh_models_and_training_take_a_seed_of_their_own(tree):
    def trained_weights(job_seed: int, seed: int) -> np.ndarray:
        rt = PaddleRuntime(WorkerSettings(str(tree.root)), job_seed, lambda *_: None)
        model = rt.load_model("target_model", tree.audit.model, trained=False, seed=seed)
        data = rt.load_dataset("target_datasets.members", tree.audit.members)
        rt.train(model, data, epochs=2, lr=0.1, batch_size=3, seed=seed)
        return model.layer.linear.weight.numpy()

    np.testing.assert_array_equal(trained_weights(1, 42), trained_weights(2, 42))  # the job's seed is not used
    assert not np.array_equal(trained_weights(1, 42), trained_weights(1, 43))
    rt = PaddleRuntime(WorkerSettings(str(tree.root)), SEED, lambda *_: None)
    assert rt.trainable(rt.load_model("target_model", tree.audit.model))


def test_labelled_progress(tree):
    events: list[tuple[int, float, str]] = []
    rt = PaddleRuntime(WorkerSettings(str(tree.root)), SEED, lambda *event: events.append(event))
    with rt.labelled("shadow 2/8"), rt.stage(results_pb2.STAGE_TRAIN_SHADOW):
        rt.progress(1.0, "done")
    rt.progress(1.0, "after")
    assert [message for _, _, message in events] == ["shadow 2/8", "shadow 2/8: done", "shadow 2/8", "after"]
