"""Validation of LOSS, LIRA and RMIA arguments: defaults, the typed form, and errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_task_spec import one_attack, problems

from privaudit.services.common import task_spec
from privaudit.services.common.errors import TaskError
from privaudit.v1 import task_pb2

REPO = Path(__file__).resolve().parents[1]
TARGET = {"target_datasets": "[d/members, d/non_members]", "target_model": "m/target"}
SHADOWS = {**TARGET, "population_datasets": "[d/population_a, d/population_b]"}


def test_defaults():
    loss, lira, rmia = task_spec.parse_yaml(
        one_attack("LOSS", **TARGET) + one_attack("LIRA", **TARGET) + one_attack("RMIA", **SHADOWS)).attacks
    assert loss.batch_size == 128
    assert (lira.num_shadow, lira.online, lira.fixed_variance, lira.augment, lira.population_datasets) == (
        16, True, None, False, ())
    assert (lira.epochs, lira.lr, lira.batch_size, lira.seed, lira.shadow_train_size) == (20, 0.001, 128, None, None)
    assert (rmia.num_shadow, rmia.online, rmia.a, rmia.gamma, rmia.num_population) == (4, False, None, 1.0, 1000)
    assert rmia.shadow_train_size is None  # as many records as the target's members, counted by the worker
    assert rmia.population_datasets == ("d/population_a", "d/population_b")
    assert lira.shadow_parts and rmia.shadow_parts and not hasattr(loss, "shadow_parts")


def test_the_typed_form_round_trips_with_every_default_filled_in():
    spec = task_spec.parse_yaml(one_attack("LOSS", **TARGET) + one_attack("LIRA", **SHADOWS, augment="true")
                                + one_attack("RMIA", **SHADOWS, online="true", num_shadow=2, seed=5)
                                + one_attack("RMIA", **SHADOWS, a=0.25, shadow_train_size=300)
                                + one_attack("LIRA", **SHADOWS, online="false", shadow_train_size=7))
    message = task_spec.to_proto(spec)
    assert list(message.attacks[1].lira.population_datasets) == ["d/population_a", "d/population_b"]
    assert not message.attacks[2].rmia.HasField("a") and message.attacks[2].rmia.seed == 5
    assert not message.attacks[1].lira.HasField("shadow_train_size")
    assert (message.attacks[3].rmia.a, message.attacks[3].rmia.shadow_train_size) == (0.25, 300)
    assert message.attacks[4].lira.shadow_train_size == 7 and not message.attacks[4].lira.online
    assert task_spec.from_proto(message) == spec
    assert task_spec.from_proto(task_pb2.Task.FromString(message.SerializeToString())) == spec


def test_the_shipped_task_with_the_state_of_the_art_attacks_parses():
    spec = task_spec.parse_yaml((REPO / "example" / "tasks" / "mem_inf_sota.yaml").read_text())
    assert [a.name for a in spec.attacks] == ["LOSS", "LIRA", "RMIA"]
    lira, rmia = spec.attacks[1:]
    assert (lira.num_shadow, lira.online, lira.shadow_train_size) == (16, True, None)
    assert (rmia.num_shadow, rmia.online, rmia.shadow_train_size, rmia.a) == (4, False, None, None)
    assert lira.population_datasets == rmia.population_datasets and len(rmia.population_datasets) == 2
    # They train as example/train_target.py trained the target.
    assert {(a.epochs, a.lr, a.batch_size) for a in (lira, rmia)} == {(200, 0.003, 64)}


@pytest.mark.parametrize(("name", "args", "field", "words"), [
    ("LIRA", {"num_shadow": 3}, "num_shadow", "multiple of 2"),
    ("LIRA", {"num_shadow": 0}, "num_shadow", "greater than or equal to 2"),
    ("LIRA", {"num_shadow": 258}, "num_shadow", "less than or equal to 256"),
    ("RMIA", {"num_shadow": 1}, "num_shadow", "greater than or equal to 2"),
    ("RMIA", {"online": "true", "num_shadow": 3}, "num_shadow", "online RMIA needs an even number"),
    ("RMIA", {"num_shadow": 5, "online": "true"}, "num_shadow", "online RMIA needs an even number"),
    ("RMIA", {"a": 1.5}, "a", "less than or equal to 1"),
    ("RMIA", {"a": -0.1}, "a", "greater than or equal to 0"),
    ("RMIA", {"gamma": 0}, "gamma", "greater than 0"),
    ("RMIA", {"num_population": 0}, "num_population", "greater than or equal to 1"),
    ("RMIA", {"shadow_train_size": 0}, "shadow_train_size", "greater than or equal to 1"),
    ("LIRA", {"shadow_train_size": 0}, "shadow_train_size", "greater than or equal to 1"),
    ("LIRA", {"shadow_train_size": 10**9}, "shadow_train_size", "less than or equal to 100000000"),
    ("LIRA", {"shadow_train_size": 1.5}, "shadow_train_size", "integer"),
    ("LIRA", {"epochs": 0}, "epochs", "greater than or equal to 1"),
    ("LIRA", {"lr": 0}, "lr", "greater than 0"),
    ("LIRA", {"fixed_variance": "maybe"}, "fixed_variance", "boolean"),
    ("LIRA", {"population_datasets": "[/abs/path]"}, "population_datasets.0", "absolute"),
    ("LIRA", {"population_datasets": "[../outside]"}, "population_datasets.0", "leaves the storage root"),
    ("LOSS", {"batch_size": 0}, "batch_size", "greater than or equal to 1"),
])
def test_bad_values_name_the_field(name, args, field, words):
    base = TARGET if name == "LOSS" else SHADOWS
    found = problems(one_attack(name, **{**base, **args}))
    assert list(found) == [f"attacks[0].args.{field}"]
    assert words in found[f"attacks[0].args.{field}"]


def test_rmia_without_population_data_is_refused():
    assert problems(one_attack("RMIA", **TARGET)) == {
        "attacks[0].args.population_datasets": "required by RMIA and missing"}
    found = problems(one_attack("RMIA", **TARGET, population_datasets="[]"))
    assert "at least 1 item" in found["attacks[0].args.population_datasets"]


def test_online_lira_without_population_data_is_accepted():
    """Its shadow models can train on halves of the audited records alone."""
    assert task_spec.parse_yaml(one_attack("LIRA", **TARGET)).attacks[0].population_datasets == ()


@pytest.mark.parametrize("population", [None, "[]"])
def test_offline_lira_without_population_data_is_refused_naming_the_field_and_what_to_do(population):
    """Offline shadow models may not train on an audited record: population data is all they have."""
    args = {**TARGET, "online": "false"} | ({} if population is None else {"population_datasets": population})
    found = problems(one_attack("LIRA", **args))
    assert list(found) == ["attacks[0].args.population_datasets"]
    message = found["attacks[0].args.population_datasets"]
    assert "offline LIRA trains its models on population data only" in message
    assert "list population_datasets" in message and "or set online: true" in message
    assert task_spec.parse_yaml(one_attack("LIRA", **SHADOWS, online="false")).attacks[0].online is False


def test_the_typed_form_refuses_offline_lira_without_population_alike():
    message = task_pb2.Task(attacks=[task_pb2.AttackSpec(
        type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE,
        lira=task_pb2.LiraArgs(target_datasets=task_pb2.DatasetPair(members="d/m", non_members="d/n"),
                               target_model="m/t", online=False))])
    with pytest.raises(TaskError) as caught:
        task_spec.from_proto(message)
    assert [p.field for p in caught.value.problems] == ["attacks[0].args.population_datasets"]


def test_every_new_argument_is_described():
    described = {a["name"]: {arg["name"]: arg for arg in a["arguments"]} for a in task_spec.describe_attacks()}
    for name in ("LIRA", "RMIA"):
        assert "as many as the target's members" in described[name]["shadow_train_size"]["description"]
        assert described[name]["shadow_train_size"]["default"] == "null"
    assert "chosen on the reference models" in described["RMIA"]["a"]["description"]


@pytest.mark.parametrize(("name", "unknown", "suggestion"), [
    ("RMIA", "gama", "gamma"), ("LIRA", "num_shadows", "num_shadow"), ("LIRA", "shadow_model", None),
    ("LOSS", "epochs", None),
])
def test_unknown_arguments_are_refused_with_a_suggestion_and_the_list(name, unknown, suggestion):
    base = TARGET if name == "LOSS" else SHADOWS
    message = problems(one_attack(name, **{**base, unknown: 1}))[f"attacks[0].args.{unknown}"]
    assert message.startswith("unknown argument")
    assert (f"did you mean '{suggestion}'?" in message) == (suggestion is not None)
    assert f"{name} takes: target_datasets, target_model" in message


def test_missing_required_arguments_are_named():
    found = problems(one_attack("LIRA", num_shadow=4))
    assert found == {"attacks[0].args.target_datasets": "required by LIRA and missing",
                     "attacks[0].args.target_model": "required by LIRA and missing"}
