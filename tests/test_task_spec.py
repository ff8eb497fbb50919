"""Task parsing and validation: the seed's file as it stands, the typed form, and every bad shape."""

import re
from pathlib import Path

import pytest

from privaudit.services.common import task_spec
from privaudit.services.common.errors import TaskError
from privaudit.v1 import task_pb2

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


# ---------------------------------------------------------------- input hygiene (issue 15)


def test_deep_nesting_is_refused_before_it_is_parsed_naming_the_limit():
    for text in ("[" * 50_000, "{a: " * 50_000, "".join(f"{'  ' * i}-\n" for i in range(2_000))):
        found = problems(text)
        assert list(found) == [""], found
        assert f"nests deeper than {task_spec.MAX_YAML_DEPTH} levels" in found[""]
        assert " at line " in found[""], found


def test_nesting_up_to_the_limit_reaches_validation():
    depth = task_spec.MAX_YAML_DEPTH
    assert problems("[" * depth + "]" * depth) == {"attacks[0]": "each attack must be a mapping with type, name and "
                                                                 "args, got a list"}
    assert "nests deeper" in problems("[" * (depth + 1) + "]" * (depth + 1))[""]


def test_aliases_work_but_cannot_expand_past_the_bound():
    shared = ("- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: LOSS\n  args:\n    target_datasets: &pair [d/in, d/out]\n"
              "    target_model: m/target\n- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args:\n"
              "    test_datasets: *pair\n    target_model: m/target\n")
    assert task_spec.parse_yaml(shared).attacks[1].test_datasets.members == "d/in"
    lines = ["- &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"- &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]  # 10^8 values from 540 bytes
    found = problems("\n".join(lines))
    assert list(found) == [""] and f"more than {task_spec.MAX_YAML_VALUES:,} values" in found[""], found
    assert "at line 5, column" in found[""]  # where *a3 takes it past the bound
    assert "refers to the value that holds it" in problems("- &loop [*loop]\n")[""]


STORAGE_FIELDS = {
    "test_datasets.members": ("BASELINE", {"test_datasets": "[{}, d/out]", "target_model": "m"}),
    "target_model": ("BASELINE", {"test_datasets": "[d/in, d/out]", "target_model": "{}"}),
    "shadow_datasets.non_members": ("ML-LEAK", {**ML_LEAK_OK, "shadow_datasets": "[d/s_in, {}]"}),
    "shadow_model": ("LABEL-ONLY", {**ML_LEAK_OK, "shadow_model": "{}"}),
    "population_datasets.1": ("LOSS", {"target_datasets": "[d/in, d/out]", "target_model": "m",
                                        "population_datasets": "[d/p0, {}]"}),
}
BAD_CHARACTERS = {  # YAML escape: what the message must say
    "\\0": "a control character (U+0000)",
    "\\x1f": "a control character (U+001F)",
    "\\x7f": "a control character (U+007F)",
    "\\x85": "a control character (U+0085)",
    "\\t": "a control character (U+0009)",
    "\\u202e": "an invisible formatting character (U+202E)",
    "\\u2028": "a line separator (U+2028)",
    "\\ud800": "a lone UTF-16 surrogate (U+D800)",
}


@pytest.mark.parametrize("field", STORAGE_FIELDS)
@pytest.mark.parametrize("escape", BAD_CHARACTERS)
def test_every_storage_path_refuses_characters_that_are_not_plain_text(field, escape):
    name, args = STORAGE_FIELDS[field]
    text = one_attack(name, **{key: value.format(f'"d/x{escape}y"') for key, value in args.items()})
    found = problems(text)
    assert list(found) == [f"attacks[0].args.{field}"], found
    message = found[f"attacks[0].args.{field}"]
    assert BAD_CHARACTERS[escape] in message and "at character 4" in message, message
    assert message.isprintable() and message.isascii(), "the message escapes what it quotes"


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_a_number_that_is_not_finite_is_refused_even_where_no_bound_would_catch_it(value):
    rmia = {"target_datasets": "[a, b]", "target_model": "m", "population_datasets": "[p]"}
    assert "finite number" in problems(one_attack("RMIA", **rmia, gamma=value))["attacks[0].args.gamma"]


def test_a_typed_task_with_a_nul_in_a_path_is_refused_naming_the_field():
    task = task_spec.to_proto(task_spec.parse_yaml(one_attack("BASELINE", **BASELINE_OK)))
    task.attacks[0].baseline.target_model = "m/tar\0get"
    with pytest.raises(TaskError) as caught:
        task_spec.from_proto(task)
    assert caught.value.field == "attacks[0].args.target_model" and "U+0000" in str(caught.value)


def test_a_path_longer_than_the_bound_is_refused_and_echoed_cut():
    long_path = "d/" + "x" * task_spec.MAX_PATH_BYTES
    message = problems(one_attack("BASELINE", test_datasets="[d/in, d/out]", target_model=long_path))[
        "attacks[0].args.target_model"]
    assert f"{task_spec.MAX_PATH_BYTES + 2:,} bytes long; at most {task_spec.MAX_PATH_BYTES:,}" in message
    assert len(message) < 300, message
    assert task_spec.parse_yaml(one_attack("BASELINE", test_datasets="[d/in, d/out]",
                                           target_model="d/" + "x" * (task_spec.MAX_PATH_BYTES - 2)))


def status_bytes(error: TaskError) -> int:
    """What the error's status costs in HTTP/2 trailers: its message and its details, base64'd."""
    status = error.to_status()
    return len(status.details.encode()) + sum(4 * len(value) // 3 for _, value in status.trailing_metadata)


def test_what_a_task_sent_is_echoed_cut_so_the_error_still_reaches_the_caller():
    huge = "z" * 100_000
    found = problems(one_attack("ML-LEAK", **ML_LEAK_OK, topk=huge, **{"k" * 1000: 1})  # YAML's longest key
                     + f"- type: {huge}\n" + f"- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: {huge}\n")
    assert len(found) == 4, found
    for field, message in found.items():
        assert len(field) < 120 and len(message) < 400, (field[:200], message[:200])
    assert "attacks[0].args.topk" in found and "100,000 characters" in found["attacks[0].args.topk"]
    assert "attacks[1].type" in found and "attacks[2].name" in found


def test_hundreds_of_problems_are_cut_to_what_a_status_can_carry_saying_how_many_more():
    text = one_attack("BASELINE", test_datasets="[a, b]", target_model="/abs",
                      **{f"unknown_{i}": 1 for i in range(300)}) * task_spec.MAX_ATTACKS
    with pytest.raises(TaskError) as caught:
        task_spec.parse_yaml(text)
    shown = caught.value.problems
    assert shown[0].field == "attacks[0].args.target_model"
    assert shown[-1].field == "" and re.fullmatch(r"and [\d,]+ more problems not shown", shown[-1].message)
    assert len(shown) - 1 + int(shown[-1].message.split()[1].replace(",", "")) == 64 * 301
    assert status_bytes(caught.value) < 6 * 1024  # gRPC refuses trailers over 8 KiB


def test_a_task_file_is_read_as_utf8_within_the_size_bound(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(one_attack("BASELINE", **BASELINE_OK))
    assert task_spec.read_task_file(good) == good.read_text()
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(one_attack("BASELINE", **BASELINE_OK).replace("m/target", "m/caf\xe9").encode("latin-1"))
    with pytest.raises(TaskError, match=r"not UTF-8 text: byte 0xe9 at offset \d+"):
        task_spec.read_task_file(latin)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (task_spec.MAX_TASK_BYTES + 1))
    with pytest.raises(TaskError, match=f"more than {task_spec.MAX_TASK_BYTES:,} bytes"):
        task_spec.read_task_file(big)
