"""LABEL-ONLY: the augmentation queries and the attack end to end on fakes."""

import numpy as np
import pytest
from fake_runtime import AUDIT_PATHS, ConstantModel, FakeDataset, FakeRuntime, audit_runtime, membership_auc
from test_reporter_fixtures import make_report

from privaudit.services.attack_worker import metrics
from privaudit.services.attack_worker.attacks import label_only
from privaudit.services.attack_worker.attacks.augment import Rotation, Translation
from privaudit.services.attack_worker.attacks.base import Scores, balanced_indices
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import LabelOnlyArgs
from privaudit.services.reporter.report import ReportRequestError
from privaudit.v1 import results_pb2

CONTROL_PROBABILITIES = [0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02]


def args(**overrides) -> LabelOnlyArgs:
    return LabelOnlyArgs(**AUDIT_PATHS, **overrides)


def test_attack_type_chooses_the_queries():
    assert label_only.augments_for(args(attack_type="r", r=2, d=5)) == [Rotation(a) for a in (-2, -1, 0, 1, 2)]
    shifts = label_only.augments_for(args(attack_type="d", r=5, d=2))
    assert len(shifts) == 9 and all(isinstance(s, Translation) for s in shifts)


@pytest.mark.parametrize("task", [args(attack_type="r", r=3), args(attack_type="d", d=1)])
def test_leaky_target_is_found(task):
    assert membership_auc(label_only.run(task, audit_runtime())) > 0.6


@pytest.mark.parametrize("task", [args(attack_type="r", r=3), args(attack_type="d", d=1)])
def test_control_model_with_constant_outputs_gives_chance(task):
    scores = label_only.run(task, audit_runtime(target=ConstantModel(CONTROL_PROBABILITIES)))
    assert abs(membership_auc(scores) - 0.5) <= 0.02


def test_zero_range_runs_as_the_single_unaugmented_query():
    rt = audit_runtime()
    scores = label_only.run(args(attack_type="r", r=0), rt)
    # One query: members (always right on a memorising model) against non-members (right 73%).
    assert membership_auc(scores) > 0.6


def test_same_seed_same_scores():
    first, again = (label_only.run(args(r=2), audit_runtime(seed=5)) for _ in range(2))
    np.testing.assert_array_equal(first.members, again.members)
    np.testing.assert_array_equal(first.non_members, again.non_members)


def test_works_on_channels_last_images():
    # Three channels make the fake model generalise better; more noise keeps it overfit.
    rt = audit_runtime(sample_shape=(8, 8, 3), noise=3.0)
    assert membership_auc(label_only.run(args(attack_type="r", r=3), rt)) > 0.6


def test_trains_the_shadow_and_reports_stages_as_ml_leak_does():
    rt = audit_runtime()
    label_only.run(args(shadow_epoch=2, batch_size=16), rt)

    (call,) = rt.train_calls
    assert call.data is rt.datasets[AUDIT_PATHS["shadow_datasets"][0]]
    assert (call.epochs, call.batch_size) == (2, 16)
    assert rt.stages == [results_pb2.STAGE_LOAD, results_pb2.STAGE_TRAIN_SHADOW, results_pb2.STAGE_PREDICT,
                         results_pb2.STAGE_FIT_ATTACK, results_pb2.STAGE_SCORE]


def test_samples_that_are_not_images_name_the_dataset():
    rt = audit_runtime(sample_shape=(5, 8, 8))

    with pytest.raises(TaskError) as caught:
        label_only.run(args(), rt)

    assert caught.value.field == "shadow_datasets.members"
    assert "(5, 8, 8)" in str(caught.value) and "CHW" in str(caught.value)


def test_scores_say_where_the_threshold_comes_from_and_carry_the_target_labels():
    rt = audit_runtime()

    scores = label_only.run(args(r=2, classifier_epoch=500), rt)

    assert scores.threshold == 0.5
    assert "shadow model's members and non-members" in scores.threshold_source
    members, non_members = (rt.datasets[path] for path in AUDIT_PATHS["target_datasets"])
    np.testing.assert_array_equal(scores.member_labels, members.labels)
    np.testing.assert_array_equal(scores.non_member_labels, non_members.labels)
    assert scores.warnings == ()


def test_an_unconverged_classifier_is_reported_with_what_to_change():
    scores = label_only.run(args(r=2, classifier_epoch=2), audit_runtime())

    (warning,) = scores.warnings
    assert "had not converged" in warning and "Raise classifier_epoch" in warning


# ---------------------------------------------------------------- only the evaluated records are queried


def unequal_runtime(num_members: int, num_non_members: int) -> FakeRuntime:
    """audit_runtime's task with the target's members and non-members cut to these counts (the
    shadow's datasets and every record kept are the same whatever the counts)."""
    rt = audit_runtime(records=max(num_members, num_non_members))
    for path, count in zip(AUDIT_PATHS["target_datasets"], (num_members, num_non_members), strict=True):
        data = rt.datasets[path]
        rt.datasets[path] = FakeDataset(data.samples[:count], data.labels[:count])
    return rt


def queried_lengths(rt: FakeRuntime) -> list[int]:
    """The number of records of every predict_augmented call on `rt` from now on."""
    lengths: list[int] = []
    query = rt.predict_augmented

    def counted(model, dataset, augments, batch_size):
        lengths.append(len(dataset) * len(augments))
        return query(model, dataset, augments, batch_size)

    rt.predict_augmented = counted
    return lengths


@pytest.mark.parametrize(("num_members", "num_non_members"), [(240, 160), (160, 240)])
def test_only_the_target_records_the_evaluation_keeps_are_queried_and_scored_as_before(num_members, num_non_members):
    task = args(attack_type="r", r=2)  # 5 queries a record
    everything = label_only.run(task, unequal_runtime(240, 240))  # balanced already: every record scored
    rt = unequal_runtime(num_members, num_non_members)
    lengths = queried_lengths(rt)

    scores = label_only.run(task, rt)

    member_kept, non_member_kept = balanced_indices(num_members, num_non_members, rt.seed)
    assert lengths == [240 * 5, 240 * 5, 160 * 5, 160 * 5]  # shadow members, non-members, then the target's
    for kept, got, full in ((member_kept, scores.members, everything.members),
                            (non_member_kept, scores.non_members, everything.non_members)):
        assert np.isnan(got).sum() == len(got) - 160
        np.testing.assert_allclose(got[kept], full[kept], rtol=1e-12)  # a record's score is its own
    np.testing.assert_array_equal(scores.member_labels, rt.datasets[AUDIT_PATHS["target_datasets"][0]].labels)


def test_the_metrics_measure_what_label_only_scored_and_list_every_record():
    rt = unequal_runtime(240, 160)
    scores = label_only.run(args(attack_type="r", r=2), rt)

    evaluation = metrics.evaluate(scores, rt.seed)  # the job's seed, as the worker's job measures it

    records = evaluation.record_scores
    assert (evaluation.num_members, evaluation.num_non_members) == (160, 160)
    assert len(records.members) == 240 and len(records.non_members) == 160
    np.testing.assert_array_equal(records.member_evaluated, ~np.isnan(scores.members))
    assert records.non_member_evaluated.all()
    kept = records.member_evaluated
    assert evaluation.auc == pytest.approx(membership_auc(Scores(scores.members[kept], scores.non_members, 0.5)))
    exposed = [index for index, _ in evaluation.most_exposed]
    assert len(exposed) == metrics.MOST_EXPOSED and kept[exposed].all()
    ranked = np.argsort(-np.nan_to_num(scores.members, nan=-1.0), kind="stable")[:metrics.MOST_EXPOSED]
    assert exposed == ranked.tolist()


def test_a_seed_that_is_not_the_jobs_finds_unscored_records_and_says_so():
    rt = unequal_runtime(240, 160)
    scores = label_only.run(args(attack_type="r", r=2), rt)
    with pytest.raises(ValueError, match="NaN only for a record left out"):
        metrics.evaluate(scores, rt.seed + 1)


def test_a_result_with_unscored_records_makes_a_report_and_an_evaluated_nan_does_not():
    rt = unequal_runtime(240, 160)
    scores = label_only.run(args(attack_type="r", r=2), rt)
    result = results_pb2.AttackResult(attack_index=0, attack_name="LABEL-ONLY",
                                      status=results_pb2.ATTACK_STATUS_SUCCEEDED)
    result.MergeFrom(metrics.to_proto(metrics.evaluate(scores, rt.seed)))
    records = result.record_scores
    np.testing.assert_array_equal(np.isnan(records.members), ~np.array(records.member_evaluated))

    (entry,) = make_report(result).attacks
    assert entry.epsilon is not None, "estimated from the evaluated records"

    records.members[int(np.flatnonzero(records.member_evaluated)[0])] = float("nan")
    with pytest.raises(ReportRequestError, match=r"record_scores\.members: must be finite numbers"):
        make_report(result)
