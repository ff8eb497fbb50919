"""End to end: the example task through real service processes on loopback.

These start the orchestrator, reporter and workers as `python -m services.*`
processes, exactly as `make demo` does, and check what a user sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from privaudit.client import AuditClient, LocalCluster
from privaudit.v1 import results_pb2

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_TASK = REPO / "example" / "tasks" / "mem_inf.yaml"
BASELINE_ONLY = """
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: BASELINE
  args:
    test_datasets: [./example/datasets/digits_target_members, ./example/datasets/digits_target_non_members]
    target_model: ./example/models/digits_mlp
"""


def cluster_processes(state_under: Path) -> list[int]:
    """Pids of local-cluster service processes still alive whose state folder is under
    `state_under` (so that other clusters on the machine, e.g. other tests', do not count)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"privaudit-cluster-" in command and b"--ready-file" in command and str(state_under).encode() in command:
                pids.append(int(entry.name))
    return pids


def baseline_expectation() -> dict[str, float]:
    """BASELINE's metrics computed here, independently, with scikit-learn."""
    import paddle

    sys.path.insert(0, str(REPO))
    from privaudit.services.attack_worker import storage

    root = REPO
    model = storage.load_model(root, "example/models/digits_mlp", "target_model", trained=True)
    model.eval()
    correct = []
    for folder in ("digits_target_members", "digits_target_non_members"):
        dataset = storage.load_dataset(root, f"example/datasets/{folder}", "test_datasets")
        xs = np.stack([np.asarray(dataset[i][0], dtype="float32") for i in range(len(dataset))])
        ys = np.array([int(np.asarray(dataset[i][1]).reshape(-1)[0]) for i in range(len(dataset))])
        with paddle.no_grad():
            predicted = model(paddle.to_tensor(xs)).numpy().argmax(axis=1)
        correct.append((predicted == ys).astype(float))
    members, non_members = correct
    assert len(members) == len(non_members), "the example's target sets are balanced by design"
    truth = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    scores = np.r_[members, non_members]
    return {
        "acc": accuracy_score(truth, scores >= 0.5),
        "precision": precision_score(truth, scores >= 0.5),
        "recall": recall_score(truth, scores >= 0.5),
        "auc": roc_auc_score(truth, scores),
        "train_acc": members.mean(),
        "test_acc": non_members.mean(),
    }


def test_example_audit_through_the_cli(tmp_path):
    """`main.py` as `make demo` runs it: JSON report, right BASELINE numbers, no process left."""
    output, state_under = tmp_path / "report.json", tmp_path / "tmp"
    state_under.mkdir()
    completed = subprocess.run(
        [sys.executable, "main.py", str(EXAMPLE_TASK), "--format", "json", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "TMPDIR": str(state_under)},
    )
    assert completed.returncode == 0, completed.stderr
    assert "BASELINE" in completed.stderr  # progress lines
    assert not cluster_processes(state_under), "the local cluster left processes behind"
    report = json.loads(output.read_text())
    attacks = {a["name"]: a for a in report["attacks"]}
    assert set(attacks) == {"BASELINE", "ML-LEAK", "LABEL-ONLY"}
    baseline = attacks["BASELINE"]
    assert baseline["status"] == "succeeded"
    expected = baseline_expectation()
    for metric in ("acc", "precision", "recall", "auc"):
        assert baseline["metrics"][metric] == pytest.approx(expected[metric], abs=1e-9), metric
    model = next(m for m in report["models"] if m["name"] == "digits_mlp")
    assert model["train_acc"] == pytest.approx(expected["train_acc"])
    assert model["test_acc"] == pytest.approx(expected["test_acc"])
    assert model["train_acc"] > model["test_acc"]
    for attack in attacks.values():
        assert attack["status"] in ("succeeded", "failed")
        if attack["status"] == "failed":  # never a fake number
            assert attack["metrics"] is None and attack["error"]["message"]


def test_text_report_has_the_seed_layout():
    completed = subprocess.run(
        [sys.executable, "main.py", str(EXAMPLE_TASK), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    positions = [text.index(heading) for heading in ("Models:", "Datasets:", "Attacks:", "Summary:")]
    assert positions == sorted(positions)
    assert "digits_mlp" in text and "train_acc" in text


def test_invalid_task_exits_2_naming_the_field(tmp_path):
    task = tmp_path / "bad.yaml"
    task.write_text(BASELINE_ONLY.replace("./example/models/digits_mlp", "../outside"))
    completed = subprocess.run([sys.executable, "main.py", str(task)], cwd=REPO, capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 2
    assert "attacks[0].args.target_model" in completed.stderr
    assert "leaves the storage root" in completed.stderr


def test_every_service_serves_health_and_reflection():
    expected = {"orchestrator": "privaudit.v1.OrchestratorService", "reporter": "privaudit.v1.ReporterService",
                "worker-0": "privaudit.v1.AttackWorkerService"}
    with LocalCluster(workers=1, storage_root=REPO) as cluster:
        for service in cluster.processes:
            with grpc.insecure_channel(service.address) as channel:
                services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
                assert {expected[service.name], "grpc.health.v1.Health"} <= services
                status = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=expected[service.name]), timeout=5).status
                assert status == health_pb2.HealthCheckResponse.SERVING


def test_missing_model_folder_fails_that_attack_alone():
    task = BASELINE_ONLY + BASELINE_ONLY.replace("digits_mlp", "no_such_model")
    with LocalCluster(workers=1, storage_root=REPO) as cluster, AuditClient(cluster.address) as auditor:
        outcome = auditor.run(task)
    good, bad = outcome.results
    assert good.status == results_pb2.ATTACK_STATUS_SUCCEEDED
    assert bad.status == results_pb2.ATTACK_STATUS_FAILED
    assert bad.error.code == "INVALID_ARGUMENT"
    assert bad.error.field == "attacks[1].args.target_model"
    assert "no_such_model" in bad.error.message
    assert outcome.done.succeeded_attacks == 1 and not outcome.done.error


def test_the_attacks_of_a_task_query_the_target_once_through_the_workers_cache():
    loss = BASELINE_ONLY.replace("BASELINE", "LOSS").replace("test_datasets", "target_datasets")
    messages: list[tuple[str, str]] = []

    def keep(event) -> None:
        if event.WhichOneof("kind") == "progress":
            messages.append((event.progress.attack_index, event.progress.message))

    with LocalCluster(workers=1, storage_root=REPO) as cluster, AuditClient(cluster.address) as auditor:
        outcome = auditor.run(BASELINE_ONLY + loss, on_event=keep)
    assert [r.status for r in outcome.results] == [results_pb2.ATTACK_STATUS_SUCCEEDED] * 2
    found = [(index, message) for index, message in messages if "found in the output cache" in message]
    # LOSS (attack 1) reads the outputs BASELINE computed on both datasets; BASELINE found none.
    assert sorted(found) == [(1, "outputs of digits_mlp on digits_target_members found in the output cache"),
                             (1, "outputs of digits_mlp on digits_target_non_members found in the output cache")]
    baseline, loss_result = outcome.results
    assert (baseline.target_model.train_acc, baseline.target_model.test_acc) == \
        (loss_result.target_model.train_acc, loss_result.target_model.test_acc)


def test_the_readmes_python_api_snippet_prints_high_on_the_example():
    """README's Python API section, run as written: the typed report, not protobuf enums."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    snippet = section[section.index("```python\n") + len("```python\n"):section.index("```\n", 10)]
    completed = subprocess.run([sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True,
                               timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert lines[0] == "HIGH"
    names = [line.split()[0] for line in lines[1:4]]
    assert names == ["BASELINE", "ML-LEAK", "LABEL-ONLY"]
    for line in lines[1:4]:
        auc = float(line.split()[2])
        assert 0.5 < auc <= 1.0
    assert "Summary:" in completed.stdout  # the text report


def test_an_orchestrator_hosting_its_reporter_reports_with_one_process_less(tmp_path):
    """Issue 17: `privaudit run`'s cluster has no reporter process; the orchestrator serves the reporter
    from its own (on loopback) and the report is the same as a separate reporter's."""
    reports = {}
    for hosted in (True, False):
        with LocalCluster(workers=1, storage_root=REPO, host_reporter=hosted, state_dir=tmp_path / str(hosted)) \
                as cluster, AuditClient(cluster.address) as auditor:
            names = sorted(p.name for p in cluster.processes)
            record = json.loads((cluster.state_dir / "cluster.json").read_text())
            outcome = auditor.run(BASELINE_ONLY, "json")
        assert names == (["orchestrator", "worker-0"] if hosted else ["orchestrator", "reporter", "worker-0"])
        assert (record["reporter"] == {"hosted_by": "orchestrator"}) == hosted
        assert outcome.risk == "HIGH" and not outcome.done.error
        reports[hosted] = outcome.report.model_dump(exclude={"task_id": True, "provenance": {"generated_at"},
                                                             "attacks": {"__all__": {"timings"}}})
    assert reports[True] == reports[False]


def test_a_hosted_reporter_refuses_the_peer_security_it_could_not_answer(tmp_path, capsys):
    from privaudit.services.orchestrator.__main__ import parse_args

    token = tmp_path / "token"
    token.write_text("secret-internal-token\n")
    with pytest.raises(SystemExit):
        parse_args(["--workers", "127.0.0.1:1", "--host-reporter", "--internal-token-file", str(token)])
    assert "--host-reporter serves the reporter in plaintext" in capsys.readouterr().err
