"""Limits: task size, attacks, epochs and shadow models per deployment, message size, dataset length."""

from __future__ import annotations

import time

import pytest
from test_orchestrator import TASK, ScriptedReporter, ScriptedWorker, serve, succeed
from worker_fixtures import baseline_request, write_audit_tree

from privaudit.client import cli
from privaudit.client.api import AuditClient, AuditError
from privaudit.client.local_cluster import ClusterError, LocalCluster
from privaudit.services.attack_worker import storage
from privaudit.services.attack_worker.__main__ import DEFAULT_MAX_DATASET_LENGTH, parse_flags
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common import task_spec
from privaudit.services.common.errors import TaskError
from privaudit.services.common.server import DEFAULT_OPTIONS, ServerOptions
from privaudit.services.orchestrator.__main__ import DEFAULT_MAX_MESSAGE_BYTES, parse_args
from privaudit.services.orchestrator.app import Orchestrator, OrchestratorConfig
from privaudit.services.orchestrator.limits import DEFAULT_MAX_TASK_BYTES, TaskLimits
from privaudit.services.orchestrator.worker_pool import WORKER_SERVICE
from privaudit.v1 import attack_worker_pb2_grpc, orchestrator_pb2, reporter_pb2_grpc, results_pb2, task_pb2

SHADOW_TASK = """
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: ML-LEAK
  args:
    target_datasets: [d/in, d/out]
    target_model: m/target
    shadow_model: m/shadow
    shadow_datasets: [d/s_in, d/s_out]
    shadow_epoch: 20
    classifier_epoch: 200
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: LIRA
  args: {target_datasets: [d/in, d/out], target_model: m/target, epochs: 100, num_shadow: 32}
"""


def problems(error: TaskError) -> dict[str, str]:
    return {p.field: p.message for p in error.problems}


# ---------------------------------------------------------------- TaskLimits


def test_a_task_larger_than_the_limit_is_refused_by_its_bytes_not_its_characters():
    limits = TaskLimits(max_task_bytes=1024)
    limits.check_size(orchestrator_pb2.SubmitAuditRequest(task_yaml="#" + "x" * 1023))  # exactly 1024 bytes
    with pytest.raises(TaskError) as refused:
        limits.check_size(orchestrator_pb2.SubmitAuditRequest(task_yaml="#" + "\u00e9" * 600))  # 601 characters
    assert problems(refused.value) == {
        "task_yaml": "the task is 1,201 bytes; this orchestrator accepts at most 1,024 (its --max-task-bytes)"}


def test_a_typed_task_is_measured_by_its_encoded_size():
    task = task_spec.to_proto(task_spec.parse_yaml(TASK))
    limits = TaskLimits(max_task_bytes=task.ByteSize() - 1)
    with pytest.raises(TaskError) as refused:
        limits.check_size(orchestrator_pb2.SubmitAuditRequest(task=task))
    assert problems(refused.value) == {"task": f"the task is {task.ByteSize():,} bytes; this orchestrator accepts "
                                               f"at most {task.ByteSize() - 1:,} (its --max-task-bytes)"}


def test_every_field_over_the_deployments_limits_is_named_with_value_and_limit():
    spec = task_spec.parse_yaml(SHADOW_TASK)
    TaskLimits().check(spec)  # the schema's own bounds allow it
    with pytest.raises(TaskError) as refused:
        TaskLimits(max_epochs=100, max_shadow=16).check(spec)
    assert problems(refused.value) == {
        "attacks[0].args.classifier_epoch": "200 is more than this orchestrator allows: at most 100 (its --max-epochs)",
        "attacks[1].args.num_shadow": "32 is more than this orchestrator allows: at most 16 (its --max-shadow)",
    }
    with pytest.raises(TaskError) as refused:
        TaskLimits(max_attacks=1).check(spec)
    assert problems(refused.value) == {
        "attacks": "the task has 2 attacks; this orchestrator runs at most 1 per task (its --max-attacks)"}


@pytest.mark.parametrize(("limits", "expected"), [
    ({"max_task_bytes": 0}, f"--max-task-bytes: must be 1 to {task_spec.MAX_TASK_BYTES}, got 0"),
    ({"max_task_bytes": task_spec.MAX_TASK_BYTES + 1},
     f"--max-task-bytes: must be 1 to {task_spec.MAX_TASK_BYTES}, got {task_spec.MAX_TASK_BYTES + 1}"),
    ({"max_attacks": task_spec.MAX_ATTACKS + 1}, f"--max-attacks: must be 1 to {task_spec.MAX_ATTACKS}, got 65"),
    ({"max_epochs": 0}, f"--max-epochs: must be 1 to {task_spec.MAX_EPOCHS}, got 0"),
    ({"max_shadow": 1000}, f"--max-shadow: must be 1 to {task_spec.MAX_SHADOW}, got 1000"),
])
def test_a_limit_beyond_the_schemas_bounds_is_refused(limits, expected):
    with pytest.raises(ValueError, match=expected):
        TaskLimits(**limits)


# ---------------------------------------------------------------- through a real orchestrator


@pytest.fixture
def orchestrator():
    """Starts a real orchestrator with the limits and server options given, over a scripted
    worker and reporter; returns a client of it."""
    started = []

    def start(limits: TaskLimits, options: ServerOptions = DEFAULT_OPTIONS) -> AuditClient:
        worker = serve(lambda s: attack_worker_pb2_grpc.add_AttackWorkerServiceServicer_to_server(
            ScriptedWorker(succeed), s), [WORKER_SERVICE])
        reporter = serve(lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(ScriptedReporter(), s))
        running = Orchestrator(OrchestratorConfig(reporter=reporter.address, workers=[worker.address],
                                                  probe_interval=0.2, limits=limits))
        started.append((running, worker, reporter))
        return AuditClient(running.start("127.0.0.1:0", options).address)

    yield start
    for running, *peers in started:
        running.stop(0)
        for peer in peers:
            peer.stop(0)


def test_the_orchestrator_refuses_a_task_over_its_limits_and_runs_one_within(orchestrator):
    limit = len(SHADOW_TASK)
    client = orchestrator(TaskLimits(max_task_bytes=limit, max_epochs=50))
    padded = TASK + "#" * (limit - len(TASK))  # exactly at the limit
    assert client.run(padded).done.succeeded_attacks == 2
    with pytest.raises(TaskError) as refused:
        client.run(padded + "#")
    assert refused.value.field == "task_yaml" and "(its --max-task-bytes)" in str(refused.value)
    with pytest.raises(TaskError) as refused:
        client.run(SHADOW_TASK.replace("num_shadow: 32", "num_shadow: 2"))
    assert refused.value.field == "attacks[0].args.classifier_epoch"


def test_a_message_over_the_receive_limit_is_resource_exhausted_naming_both_sizes(orchestrator):
    client = orchestrator(TaskLimits(), ServerOptions(max_receive_bytes=4096))
    assert client.run(TASK + "#" * (3000 - len(TASK))).done.succeeded_attacks == 2
    with pytest.raises(AuditError) as refused:
        client.run(TASK + "#" * 5000)
    assert "RESOURCE_EXHAUSTED" in str(refused.value)
    assert "larger than max (" in str(refused.value) and "vs. 4096)" in str(refused.value)
    assert [a.task_id for a in client.list()]  # the orchestrator still serves


def test_a_task_over_the_bound_is_refused_by_the_client_before_it_reaches_the_wire():
    over = task_spec.MAX_TASK_BYTES + 1
    loss = task_pb2.LossArgs(population_datasets=["p" * 4096] * 1024)
    typed = task_pb2.Task(attacks=[task_pb2.AttackSpec(type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE, loss=loss)])
    assert typed.ByteSize() > over
    started = time.monotonic()
    with AuditClient("127.0.0.1:9", connect_timeout=30) as client:  # nothing listens: sending would fail otherwise
        for task, field, size in (("#" * over, "task_yaml", over), ("#" + "\u00e9" * (over // 2), "task_yaml", over),
                                  (typed, "task", typed.ByteSize())):
            with pytest.raises(TaskError) as refused:
                client.run(task)
            assert problems(refused.value) == {field: f"the task is {size:,} bytes; privaudit sends at most "
                                                      f"{task_spec.MAX_TASK_BYTES:,} (an orchestrator's "
                                                      "--max-task-bytes may allow less)"}
        with pytest.raises(TaskError, match="character 3 of the task's text is '\\\\ud800', which is not text"):
            client.run("- \ud800")
    assert time.monotonic() - started < 5


def test_the_cli_refuses_a_5_mb_task_with_exit_2(tmp_path, capsys):
    task = tmp_path / "task.yaml"
    task.write_text(TASK + "#" * 5_000_000)
    assert cli.main(["run", str(task), "--orchestrator", "127.0.0.1:9"]) == cli.EXIT_INVALID
    assert "is more than 4,193,280 bytes, the most a task may be" in capsys.readouterr().err


def test_a_task_with_hundreds_of_problems_is_still_refused_as_invalid_naming_the_first(orchestrator):
    client = orchestrator(TaskLimits(max_epochs=5))
    many = ("- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args: {test_datasets: [a, b], target_model: /m, "
            + ", ".join(f"extra_{i}: 1" for i in range(50)) + "}\n") * 40
    with pytest.raises(TaskError) as refused:
        client.run(many)
    assert refused.value.field == "attacks[0].args.target_model"
    assert refused.value.problems[-1].message.endswith("more problems not shown")
    over_limits = SHADOW_TASK.split("- type: MEMBERSHIP_INFERENCE_ATTACK")[1]
    with pytest.raises(TaskError) as refused:  # 64 attacks, each with two fields over the deployment's limit
        client.run(("- type: MEMBERSHIP_INFERENCE_ATTACK" + over_limits) * task_spec.MAX_ATTACKS)
    assert refused.value.field == "attacks[0].args.shadow_epoch"
    assert refused.value.problems[-1].message.endswith("more problems not shown")


@pytest.mark.parametrize(("task_id", "shown"), [
    ("f" * 12_000, "'" + "f" * 27 + "..." + "f" * 28 + "' (12,000 characters)"),  # 60 characters, quotes too
    ("not an id\n\x1b[2J", "'not an id\\n\\x1b[2J'"),
    ("0123456789ab", "'0123456789ab'"),
])
def test_an_unknown_task_id_is_not_found_on_every_method_echoed_cut(orchestrator, task_id, shown):
    client = orchestrator(TaskLimits())
    for call in (client.status, client.cancel, lambda tid: list(client.watch(tid))):
        with pytest.raises(AuditError) as refused:
            call(task_id)
        assert str(refused.value).endswith(f"NOT_FOUND: task_id: no audit {shown} on this orchestrator; "
                                           "`privaudit list` shows the known ones")
    assert [a.task_id for a in client.list()] == []  # still serving


# ---------------------------------------------------------------- flags


def test_the_orchestrators_limit_flags_and_their_environment_fallbacks(monkeypatch):
    monkeypatch.setenv("PRIVAUDIT_MAX_EPOCHS", "30")
    monkeypatch.setenv("PRIVAUDIT_MAX_MESSAGE_BYTES", "65536")
    _, config, serving = parse_args(["--workers", "w:1", "--max-task-bytes", "2048", "--max-shadow", "8"])
    assert config.limits == TaskLimits(max_task_bytes=2048, max_epochs=30, max_shadow=8)
    assert serving.max_receive_bytes == 65536
    for name in ("PRIVAUDIT_MAX_EPOCHS", "PRIVAUDIT_MAX_MESSAGE_BYTES"):
        monkeypatch.delenv(name)
    _, config, serving = parse_args(["--workers", "w:1"])
    assert config.limits == TaskLimits() and config.limits.max_task_bytes == DEFAULT_MAX_TASK_BYTES
    assert serving.max_receive_bytes == DEFAULT_MAX_MESSAGE_BYTES > DEFAULT_MAX_TASK_BYTES


@pytest.mark.parametrize(("argv", "expected"), [
    (["--max-epochs", "0"], "--max-epochs: must be 1 to 10000, got 0"),
    (["--max-message-bytes", "0"], "--max-message-bytes: must be at least 1, got 0"),
    (["--max-task-bytes", "4000000", "--max-message-bytes", "4000512"],
     "--max-task-bytes (4000000) must be at most --max-message-bytes (4000512) - 1024"),
])
def test_a_bad_limit_flag_stops_the_orchestrator_naming_it(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(["--workers", "w:1", *argv])
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


# ---------------------------------------------------------------- dataset length on the worker


def test_a_dataset_longer_than_the_limit_is_refused_naming_its_field(tmp_path):
    tree = write_audit_tree(tmp_path)  # 8 members
    assert len(storage.load_dataset(tree.root, tree.members, "members", max_length=8)) == 8
    with pytest.raises(TaskError) as refused:
        storage.load_dataset(tree.root, tree.members, "test_datasets.members", max_length=7)
    assert refused.value.field == "test_datasets.members"
    assert str(refused.value).endswith("the dataset has 8 records; this worker reads at most 7 "
                                       "(its --max-dataset-length)")


def test_a_job_with_a_dataset_over_the_workers_limit_fails_on_that_dataset(tmp_path):
    tree = write_audit_tree(tmp_path, non_member_correct=[True] * 3 + [False] * 7)  # 10 non-members
    result = run_job(baseline_request(tree), WorkerSettings(str(tree.root), max_dataset_length=9), lambda _: None)
    assert result.status == results_pb2.ATTACK_STATUS_FAILED
    assert (result.error.code, result.error.field) == ("INVALID_ARGUMENT", "attacks[0].args.test_datasets.non_members")
    assert "10 records; this worker reads at most 9" in result.error.message
    passed = run_job(baseline_request(tree), WorkerSettings(str(tree.root), max_dataset_length=10), lambda _: None)
    assert passed.status == results_pb2.ATTACK_STATUS_SUCCEEDED


def test_the_workers_dataset_length_flag(tmp_path, monkeypatch, capsys):
    assert parse_flags(["--storage-root", str(tmp_path)]).max_dataset_length == DEFAULT_MAX_DATASET_LENGTH
    monkeypatch.setenv("PRIVAUDIT_MAX_DATASET_LENGTH", "500")
    assert parse_flags(["--storage-root", str(tmp_path)]).max_dataset_length == 500
    with pytest.raises(SystemExit):
        parse_flags(["--storage-root", str(tmp_path), "--max-dataset-length", "0"])
    assert "--max-dataset-length / PRIVAUDIT_MAX_DATASET_LENGTH: must be at least 1, got 0" in capsys.readouterr().err


# ---------------------------------------------------------------- the local cluster's job limits


@pytest.mark.parametrize("command", [["run", "TASK"], ["cluster", "up", "--state-dir", "STATE"]])
def test_run_and_cluster_up_give_the_local_workers_the_job_limits(command, tmp_path, monkeypatch):
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    made: list[dict] = []

    def recording_cluster(**kwargs):  # records what the CLI would start, starts nothing
        made.append(kwargs)
        raise ClusterError("not started in this test")

    monkeypatch.setattr(cli, "LocalCluster", recording_cluster)
    monkeypatch.setattr(cli, "_preflight", lambda spec, root: None)  # the task's folders are not the point here
    argv = [str(task) if a == "TASK" else str(tmp_path / "state") if a == "STATE" else a for a in command]
    assert cli.main([*argv, "--job-timeout-s", "2.5", "--job-memory-mb", "1536"]) == cli.EXIT_FAILED
    assert (made[-1]["job_timeout_s"], made[-1]["job_memory_mb"]) == (2.5, 1536)
    cli.main(argv)
    assert "job_timeout_s" not in made[-1], "unset: the workers' own defaults"


def test_job_limits_are_the_worker_flags_of_a_local_cluster():
    cluster = LocalCluster(job_timeout_s=2.5, job_memory_mb=1536)
    assert cluster._job_limit_flags() == ["--job-timeout-s", "2.5", "--job-memory-mb", "1536"]
    flags = parse_flags(["--storage-root", ".", *cluster._job_limit_flags()])
    assert (flags.job_timeout_s, flags.job_memory_mb) == (2.5, 1536)
    assert LocalCluster()._job_limit_flags() == []


@pytest.mark.parametrize(("argv", "expected"), [
    (["--orchestrator", "127.0.0.1:1", "--job-timeout-s", "5"],
     "--job-timeout-s: set the local cluster's workers; the workers of --orchestrator have their own"),
    (["--job-timeout-s", "0"], "--job-timeout-s: must be positive, got 0"),
    (["--job-memory-mb", "-1"], "--job-memory-mb: must be positive, got -1"),
])
def test_a_job_limit_the_cli_cannot_apply_is_a_usage_error(argv, expected, tmp_path, capsys):
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    assert cli.main(["run", str(task), *argv]) == cli.EXIT_INVALID
    assert expected in capsys.readouterr().err
