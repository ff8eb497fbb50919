"""Task parsing and validation: the seed's file as it stands, the typed form, and every bad shape."""

from pathlib import Path

import pytest

from privaudit.v1 import task_pb2
from services.common import task_spec
from services.common.errors import TaskError

REPO = Path(__file__).resolve().parents[1]


def seed_yaml() -> str:
    """The task file of the original PrivBox README, verbatim."""
    return (REPO / "tests" / "data" / "seed_mem_inf.yaml").read_text()


def problems(text: str) -> dict[str, str]:
    with pytest.raises(TaskError) as caught:
        task_spec.parse_yaml(text)
    return {p.field: p.message for p in caught.value.problems}


def one_attack(name: str, **args) -> str:
    lines = [f"- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: {name}\n  args:"]
    lines += [f"    {key}: {value}" for key, value in args.items()]
    return "\n".join(lines) + "\n"


BASELINE_OK = {"test_datasets": "[d/members, d/non_members]", "target_model": "m/target"}
ML_LEAK_OK = {
    "target_datasets": "[d/members, d/non_members]", "target_model": "m/target",
    "shadow_model": "m/shadow", "shadow_datasets": "[d/s_in, d/s_out]",
}


def test_the_seed_task_is_accepted_with_every_field():
    spec = task_spec.parse_yaml(seed_yaml())
    baseline, ml_leak, label_only = spec.attacks
    assert baseline.name == "BASELINE"
    assert baseline.test_datasets.members == "./example/datasets/cifar10_train"
    assert baseline.test_datasets.non_members == "./example/datasets/cifar10_test"
    assert baseline.target_model == "./example/models/resnet18_10classes"
    assert (ml_leak.shadow_model, ml_leak.shadow_datasets.members) == (
        "./example/models/resnet34_100classes", "./example/datasets/cifar100_train")
    assert (ml_leak.shadow_epoch, ml_leak.shadow_lr, ml_leak.classifier_epoch, ml_leak.classifier_lr,
            ml_leak.batch_size, ml_leak.topk) == (10, 0.0002, 10, 0.0002, 128, 3)
    assert (label_only.attack_type, label_only.r) == ("r", 6)
    assert label_only.shadow_datasets.members == "./example/datasets/cifar10_test"
    assert spec.seed == task_spec.DEFAULT_SEED


def test_the_shipped_example_task_is_accepted():
    spec = task_spec.parse_yaml((REPO / "example" / "tasks" / "mem_inf.yaml").read_text())
    assert [a.name for a in spec.attacks] == ["BASELINE", "ML-LEAK", "LABEL-ONLY"]


def test_typed_task_round_trips_and_fills_defaults():
    spec = task_spec.parse_yaml(seed_yaml())
    message = task_spec.to_proto(spec)
    assert task_spec.from_proto(message) == spec
    minimal = task_spec.parse_yaml(one_attack("ML-LEAK", **ML_LEAK_OK))
    filled = task_spec.to_proto(minimal).attacks[0].ml_leak
    assert filled.HasField("topk") and filled.topk == 3
    assert filled.target_datasets == task_pb2.DatasetPair(members="d/members", non_members="d/non_members")


def test_typed_task_is_validated_like_yaml():
    task = task_pb2.Task(attacks=[task_pb2.AttackSpec(
        type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE,
        ml_leak=task_pb2.MlLeakArgs(target_model="../outside", topk=0))])
    with pytest.raises(TaskError) as caught:
        task_spec.from_proto(task)
    fields = {p.field for p in caught.value.problems}
    assert {"attacks[0].args.target_model", "attacks[0].args.topk", "attacks[0].args.shadow_model"} <= fields


def test_label_only_translation_round_trips():
    text = one_attack("LABEL-ONLY", **ML_LEAK_OK, attack_type="d", d=2)
    spec = task_spec.parse_yaml(text)
    assert task_spec.to_proto(spec).attacks[0].label_only.attack_type == task_pb2.AUGMENTATION_TRANSLATION
    assert task_spec.from_proto(task_spec.to_proto(spec)) == spec


def test_seed_argument_overrides_the_task_seed():
    spec = task_spec.from_proto(task_pb2.Task(attacks=task_spec.to_proto(
        task_spec.parse_yaml(one_attack("BASELINE", **BASELINE_OK))).attacks, seed=5), seed=7)
    assert spec.seed == 7


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("- [unclosed", "", "not valid YAML at line"),
        ("type: MEMBERSHIP_INFERENCE_ATTACK\nname: BASELINE\n", "", "not a mapping"),
        ("just text", "", "must be a YAML list"),
        ("", "", "must be a YAML list"),
        ("[]", "attacks", "no attacks"),
        ("- 3", "attacks[0]", "must be a mapping"),
        ("- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n", "attacks[0].args", "must be a mapping"),
        (one_attack("BASELINE", **BASELINE_OK).replace("MEMBERSHIP_INFERENCE_ATTACK", "MODEL_INVERSION"),
         "attacks[0].type", "must be MEMBERSHIP_INFERENCE_ATTACK"),
        (one_attack("BASELIN", **BASELINE_OK), "attacks[0].name", "did you mean 'BASELINE'"),
        (one_attack("BASELINE", **BASELINE_OK) + "  extra: 1\n", "attacks[0].extra", "unknown key"),
        (one_attack("BASELINE", test_datasets="[a, b]"), "attacks[0].args.target_model", "missing"),
        (one_attack("BASELINE", test_datasets="[a, b]", target_model="m", targt_model="m"),
         "attacks[0].args.targt_model", "did you mean 'target_model'"),
        (one_attack("BASELINE", test_datasets="[a]", target_model="m"),
         "attacks[0].args.test_datasets", "two dataset folders"),
        (one_attack("BASELINE", test_datasets="a", target_model="m"), "attacks[0].args.test_datasets", ""),
        (one_attack("BASELINE", test_datasets="[a, b]", target_model="../m"),
         "attacks[0].args.target_model", "leaves the storage root"),
        (one_attack("BASELINE", test_datasets="[a, x/../../b]", target_model="m"),
         "attacks[0].args.test_datasets.non_members", "leaves the storage root"),
        (one_attack("BASELINE", test_datasets="[/etc, b]", target_model="m"),
         "attacks[0].args.test_datasets.members", "absolute"),
        (one_attack("BASELINE", test_datasets="[a, b]", target_model="''"),
         "attacks[0].args.target_model", "empty"),
        (one_attack("ML-LEAK", **ML_LEAK_OK, shadow_epoch="'10'"), "attacks[0].args.shadow_epoch", "integer"),
        (one_attack("ML-LEAK", **ML_LEAK_OK, shadow_epoch=0), "attacks[0].args.shadow_epoch", ">= 1"),
        (one_attack("ML-LEAK", **ML_LEAK_OK, shadow_lr=-0.1), "attacks[0].args.shadow_lr", "greater than 0"),
        (one_attack("ML-LEAK", **ML_LEAK_OK, classifier_lr="fast"), "attacks[0].args.classifier_lr", "number"),
        (one_attack("ML-LEAK", **ML_LEAK_OK, batch_size=0), "attacks[0].args.batch_size", ">= 1"),
        (one_attack("ML-LEAK", **ML_LEAK_OK, topk=0), "attacks[0].args.topk", ">= 1"),
        (one_attack("ML-LEAK", **ML_LEAK_OK, topk=2.5), "attacks[0].args.topk", "integer"),
        (one_attack("LABEL-ONLY", **ML_LEAK_OK, r=-1), "attacks[0].args.r", ">= 0"),
        (one_attack("LABEL-ONLY", **ML_LEAK_OK, attack_type="x"), "attacks[0].args.attack_type", "'r' or 'd'"),
        (one_attack("LABEL-ONLY", **ML_LEAK_OK, topk=3), "attacks[0].args.topk", "LABEL-ONLY takes"),
    ],
)
def test_bad_tasks_name_the_field(text, field, words):
    found = problems(text)
    assert field in found, found
    assert words in found[field] or words.replace(">= ", "greater than or equal to ") in found[field], found


def test_every_problem_of_every_attack_is_reported_at_once():
    text = one_attack("BASELINE", test_datasets="[a, b]") + one_attack("ML-LEAK", **ML_LEAK_OK, topk=0)
    assert set(problems(text)) == {"attacks[0].args.target_model", "attacks[1].args.topk"}


def test_too_many_attacks():
    assert "at most" in problems(one_attack("BASELINE", **BASELINE_OK) * (task_spec.MAX_ATTACKS + 1))["attacks"]


def test_error_status_carries_field_violations():
    with pytest.raises(TaskError) as caught:
        task_spec.parse_yaml(one_attack("ML-LEAK", **ML_LEAK_OK, topk=0))
    status = caught.value.to_status()
    assert status.code.name == "INVALID_ARGUMENT"
    assert "attacks[0].args.topk" in status.details
