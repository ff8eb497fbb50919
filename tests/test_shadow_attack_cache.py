"""ML-LEAK's and LABEL-ONLY's shadow work is kept by content: a rerun that changes nothing is
served from the worker's cache with identical results and trains nothing; a new seed, another
shadow record, other shadow model code or another argument misses what it decides, and only
that; an entry that does not fit its key counts as absent."""

from __future__ import annotations

import numpy as np
import pytest
from worker_fixtures import NUM_CLASSES, AuditTree, records, write_audit_tree, write_dataset, write_model

from privaudit.services.attack_worker.attack_cache import ShadowAttackCache
from privaudit.services.attack_worker.attacks import attack_classifier
from privaudit.services.attack_worker.attacks.base import balanced_indices
from privaudit.services.attack_worker.attacks.shadow_attack import FOUND
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.npz_store import NpzStore
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common import task_spec
from privaudit.v1 import attack_worker_pb2, results_pb2

CLASSIFIER_FOUND = f"the attack classifier {FOUND}"
FEATURES_FOUND = f"the shadow model's features {FOUND}"
TARGET_FOUND = "the target model's features"
SHADOW = "models/shadow"
SHADOW_IN, SHADOW_OUT = "datasets/shadow_in", "datasets/shadow_out"
ATTACKS = {"ML-LEAK": {"topk": 2}, "LABEL-ONLY": {"attack_type": "r", "r": 1}}


@pytest.fixture
def tree(tmp_path) -> AuditTree:
    tree = write_audit_tree(tmp_path / "storage")
    write_model(tree.root / SHADOW)  # code only: trained from scratch
    for name, correct in ((SHADOW_IN, [True] * 10), (SHADOW_OUT, [True, False] * 5)):
        write_dataset(tree.root / name, *records([i % NUM_CLASSES for i in range(10)], correct))
    return tree


def request(tree: AuditTree, attack: str, seed: int = 7, **changes) -> attack_worker_pb2.RunAttackRequest:
    args = task_spec.ATTACKS[attack](**{
        "target_datasets": [tree.members, tree.non_members], "target_model": tree.model, "shadow_model": SHADOW,
        "shadow_datasets": [SHADOW_IN, SHADOW_OUT], "shadow_epoch": 3, "classifier_epoch": 5, "batch_size": 4,
        **ATTACKS[attack], **changes})
    return attack_worker_pb2.RunAttackRequest(task_id="task-1", attack_index=0, seed=seed,
                                              attack=task_spec.attack_to_proto(args))


class Counted:
    """Counts the shadow models trained, the classifiers fitted and the augmented queries of a
    dataset while it is installed."""

    def __init__(self, monkeypatch):
        self.trained = self.fitted = self.augmented = 0
        train, fit, augmented = PaddleRuntime.train, attack_classifier.fit, PaddleRuntime.predict_augmented

        def counted_train(*args, **kwargs):
            self.trained += 1
            return train(*args, **kwargs)

        def counted_fit(*args, **kwargs):
            self.fitted += 1
            return fit(*args, **kwargs)

        def counted_augmented(*args, **kwargs):
            self.augmented += 1
            return augmented(*args, **kwargs)

        monkeypatch.setattr(PaddleRuntime, "train", counted_train)
        monkeypatch.setattr(attack_classifier, "fit", counted_fit)
        monkeypatch.setattr(PaddleRuntime, "predict_augmented", counted_augmented)


def run(tree: AuditTree, cache_dir, job: attack_worker_pb2.RunAttackRequest, monkeypatch, counted=None):
    """The job's result (timings cleared), its progress messages, and how many models it trained
    and fitted (`counted`, when given, counts more)."""
    progress: list[results_pb2.JobProgress] = []
    counted = counted or Counted(monkeypatch)
    result = run_job(job, WorkerSettings(str(tree.root), cache_dir=str(cache_dir)), progress.append)
    monkeypatch.undo()
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    result.ClearField("timings")
    return result, [p.message for p in progress], (counted.trained, counted.fitted)


def shadow_found(messages: list[str]) -> bool:
    """Whether the job found any of its shadow work (not the target's features) in the cache."""
    return any(FOUND in m and TARGET_FOUND not in m for m in messages)


def entries(cache_dir) -> list:
    return sorted((cache_dir / ShadowAttackCache.FOLDER).glob("*.npz"))


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_rerun_is_served_from_the_cache_with_identical_results(tree, tmp_path, monkeypatch, attack):
    cache = tmp_path / "cache"
    first, messages, work = run(tree, cache, request(tree, attack), monkeypatch)
    assert work == (1, 1) and not any(FOUND in m for m in messages)
    assert len(entries(cache)) == 4  # the shadow's features, the classifier, the target's features on each side

    counted = Counted(monkeypatch)
    again, messages, work = run(tree, cache, request(tree, attack), monkeypatch, counted)
    assert work == (0, 0) and counted.augmented == 0
    assert sum(CLASSIFIER_FOUND in m for m in messages) == 2  # no shadow to train, no classifier to fit
    assert sum(TARGET_FOUND in m for m in messages) == 2
    assert again.SerializeToString(deterministic=True) == first.SerializeToString(deterministic=True)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_new_seed_trains_and_fits_again(tree, tmp_path, monkeypatch, attack):
    cache = tmp_path / "cache"
    first, _, _ = run(tree, cache, request(tree, attack), monkeypatch)
    other, messages, work = run(tree, cache, request(tree, attack, seed=8), monkeypatch)
    assert work == (1, 1) and not shadow_found(messages)
    assert len(entries(cache)) == 6  # the target's features are on the same records: 8 members, 8 non-members
    assert other.SerializeToString(deterministic=True) != first.SerializeToString(deterministic=True)


def changed_shadow_record(tree: AuditTree) -> None:
    samples, labels = records([i % NUM_CLASSES for i in range(10)], [True] * 10)
    samples[3] *= 2  # same prediction, another record
    write_dataset(tree.root / SHADOW_IN, samples, labels)


def changed_shadow_code(tree: AuditTree) -> None:
    code = tree.root / SHADOW / "model.py"
    code.write_text(code.read_text() + "\n# a change to the code, not to what it builds\n")


@pytest.mark.parametrize("change", [changed_shadow_record, changed_shadow_code])
def test_another_shadow_record_or_shadow_code_trains_again(tree, tmp_path, monkeypatch, change):
    cache = tmp_path / "cache"
    run(tree, cache, request(tree, "ML-LEAK"), monkeypatch)
    change(tree)
    _, messages, work = run(tree, cache, request(tree, "ML-LEAK"), monkeypatch)
    assert work == (1, 1) and not shadow_found(messages)


@pytest.mark.parametrize(("argument", "value", "work"), [
    ("shadow_epoch", 4, (1, 1)), ("shadow_lr", 0.01, (1, 1)), ("batch_size", 5, (1, 1)), ("topk", 3, (1, 1)),
    ("classifier_epoch", 6, (0, 1)), ("classifier_lr", 0.01, (0, 1)),  # the shadow's features are reused
])
def test_an_argument_misses_what_it_decides_and_only_that(tree, tmp_path, monkeypatch, argument, value, work):
    cache = tmp_path / "cache"
    run(tree, cache, request(tree, "ML-LEAK"), monkeypatch)
    _, messages, done = run(tree, cache, request(tree, "ML-LEAK", **{argument: value}), monkeypatch)
    assert done == work
    assert any(FEATURES_FOUND in m for m in messages) == (work == (0, 1))
    assert not any(CLASSIFIER_FOUND in m for m in messages)


def test_the_query_views_are_part_of_the_key(tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    run(tree, cache, request(tree, "LABEL-ONLY"), monkeypatch)
    _, messages, work = run(tree, cache, request(tree, "LABEL-ONLY", r=2), monkeypatch)
    assert work == (1, 1) and not shadow_found(messages)


def test_entries_that_do_not_fit_their_keys_count_as_absent(tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first, _, _ = run(tree, cache, request(tree, "ML-LEAK"), monkeypatch)
    store = NpzStore(cache / ShadowAttackCache.FOLDER, 2**30)
    for entry in entries(cache):  # arrays of another width under each key
        store.store(entry.stem, members=np.zeros((10, 5)), non_members=np.zeros((10, 5)), mean=np.zeros(5),
                    scale=np.ones(5), weights_0=np.zeros((5, 1)), biases_0=np.zeros(1), loss_curve=np.ones(1),
                    convergence=np.asarray("settled"))

    again, messages, work = run(tree, cache, request(tree, "ML-LEAK"), monkeypatch)
    assert work == (1, 1) and not any(FOUND in m for m in messages)
    assert again.SerializeToString(deterministic=True) == first.SerializeToString(deterministic=True)


def test_a_kept_classifier_scores_as_the_fitted_one(tmp_path):
    rng = np.random.default_rng(0)
    members, non_members = rng.normal(1.0, 1.0, (40, 3)), rng.normal(-1.0, 1.0, (30, 3))
    classifier = attack_classifier.fit(members, non_members, lr=0.01, epochs=20, batch_size=8, seed=3)
    cache = ShadowAttackCache(NpzStore(tmp_path, 2**30))
    cache.store_classifier("k", classifier)

    kept = cache.load_classifier("k", width=3)
    assert kept is not None and kept.convergence is classifier.convergence
    assert kept.loss_curve == classifier.loss_curve
    queries = rng.normal(0.0, 2.0, (50, 3))
    np.testing.assert_array_equal(kept.member_probability(queries), classifier.member_probability(queries))
    assert cache.load_classifier("k", width=4) is None
    assert cache.load_classifier("absent", width=3) is None


def test_the_targets_features_are_kept_for_the_records_queried(tmp_path, monkeypatch):
    # 10 members, 6 non-members: LABEL-ONLY queries the 6 non-members and 6 members the seed draws.
    tree = write_audit_tree(tmp_path / "storage", member_correct=[True] * 10, non_member_correct=[False] * 6)
    write_model(tree.root / SHADOW)
    for name in (SHADOW_IN, SHADOW_OUT):
        write_dataset(tree.root / name, *records([i % NUM_CLASSES for i in range(10)], [True] * 10))
    cache = tmp_path / "cache"
    run(tree, cache, request(tree, "LABEL-ONLY", seed=1), monkeypatch)
    seed = next(s for s in range(2, 50) if not np.array_equal(balanced_indices(10, 6, s)[0],
                                                                balanced_indices(10, 6, 1)[0]))

    _, messages, _ = run(tree, cache, request(tree, "LABEL-ONLY", seed=seed), monkeypatch)
    found = [m for m in messages if TARGET_FOUND in m]
    assert len(found) == 1 and "non-members" in found[0]  # other members drawn, the same non-members
