"""BASELINE takes its datasets as `test_datasets` (the seed's name) or `target_datasets` (every
other attack's): exactly one of them, kept through the typed task, and named in every error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from worker_fixtures import write_audit_tree

from privaudit.services.attack_worker.attacks import baseline
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common import task_spec
from privaudit.services.common.errors import TaskError

REPO = Path(__file__).resolve().parents[1]


def baseline_task(args: str) -> str:
    return f"- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args: {{{args} target_model: m/target}}\n"


def refused_fields(text: str) -> dict[str, str]:
    with pytest.raises(TaskError) as refused:
        task_spec.parse_yaml(text)
    return {problem.field: problem.message for problem in refused.value.problems}


@pytest.mark.parametrize("name", ["test_datasets", "target_datasets"])
def test_either_name_gives_the_pair_and_survives_the_typed_task(name):
    [args] = task_spec.parse_yaml(baseline_task(f"{name}: [d/in, d/out],")).attacks
    assert (args.target_pair, args.datasets().members, args.datasets().non_members) == (name, "d/in", "d/out")
    message = task_spec.attack_to_proto(args)
    assert message.baseline.HasField(name) and len(message.baseline.ListFields()) == 2  # the pair, the model
    assert task_spec.attack_from_proto(message) == args
    assert [field for field, _ in args.storage_paths()] == [f"{name}.members", f"{name}.non_members", "target_model"]


def test_neither_or_both_names_are_refused_at_target_datasets():
    assert refused_fields(baseline_task("")) == {
        "attacks[0].args.target_datasets": "required by BASELINE and missing: [members, non_members] "
                                           "(test_datasets, the seed's name for it, is accepted too)"}
    assert refused_fields(baseline_task("test_datasets: [a, b], target_datasets: [a, b],")) == {
        "attacks[0].args.target_datasets": "give the datasets as target_datasets or as test_datasets, not both"}


@pytest.mark.parametrize("name", ["test_datasets", "target_datasets"])
def test_a_bad_pair_is_refused_once_under_the_name_given(name):
    problems = refused_fields(baseline_task(f"{name}: [only/one],"))
    assert list(problems) == [f"attacks[0].args.{name}"], "no second problem claiming the pair is missing"
    assert "two dataset folders" in problems[f"attacks[0].args.{name}"]


def test_the_seed_task_file_parses_unchanged():
    spec = task_spec.parse_yaml((REPO / "tests" / "data" / "seed_mem_inf.yaml").read_text())
    assert spec.attacks[0].target_pair == "test_datasets"
    assert spec.attacks[0].datasets().members == "./example/datasets/cifar10_train"


def test_privaudit_attacks_lists_both_names_for_baseline():
    [described] = [attack for attack in task_spec.describe_attacks() if attack["name"] == "BASELINE"]
    arguments = {argument["name"]: argument for argument in described["arguments"]}
    assert not arguments["test_datasets"]["required"] and not arguments["target_datasets"]["required"]
    assert "target_datasets" in arguments["test_datasets"]["description"]


@pytest.mark.parametrize("name", ["test_datasets", "target_datasets"])
def test_the_worker_reads_either_and_names_a_bad_folder_by_the_name_given(tmp_path, name):
    tree = write_audit_tree(tmp_path)
    rt = PaddleRuntime(WorkerSettings(str(tree.root)), seed=1, report=lambda *_: None)
    args = task_spec.BaselineArgs.model_validate({name: [tree.members, tree.non_members], "target_model": tree.model})
    np.testing.assert_array_equal(baseline.run(args, rt).members, tree.member_correct.astype(float))
    missing = task_spec.BaselineArgs.model_validate({name: [tree.members, "datasets/nowhere"],
                                                     "target_model": tree.model})
    with pytest.raises(TaskError) as refused:
        baseline.run(missing, rt)
    assert refused.value.field == f"{name}.non_members"
