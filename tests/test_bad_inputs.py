"""The bad-input corpus (tests/bad_inputs/cases.yaml) through a real local cluster and AuditClient.

Every case must give the client a clear error naming the field (or file) at fault, leave every
service healthy, and not get in the way of a good task submitted right after it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import paddle
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from worker_fixtures import identity_weights, write_audit_tree, write_model

from privaudit.client import AuditClient, LocalCluster
from privaudit.services.common.errors import TaskError
from privaudit.v1 import results_pb2

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
SPEC = yaml.safe_load((CORPUS / "cases.yaml").read_text())
CASES = {case["name"]: case for case in SPEC["cases"]}
# Small enough that runaway user code hits them within seconds.
WORKER_FLAGS = ["--job-memory-mb", "1536", "--job-timeout-s", "5"]


def task_text(case: dict) -> str:
    """The case's task file: as written, or its attack on the good base arguments."""
    if "yaml" in case:
        return case["yaml"]
    attack = case["attack"]
    args = {**SPEC["bases"].get(attack["name"], SPEC["bases"]["BASELINE"]), **attack.get("args", {})}
    args = {key: value for key, value in args.items() if value is not None}
    return yaml.safe_dump([{"type": "MEMBERSHIP_INFERENCE_ATTACK", "name": attack["name"], "args": args}])


GOOD_TASK = task_text({"attack": {"name": "BASELINE"}})


@pytest.fixture(scope="module")
def storage_root(tmp_path_factory) -> Path:
    """The corpus's folders, each model folder with weights that fit models/net, beside the good ones."""
    base = tmp_path_factory.mktemp("bad-inputs")
    root = base / "root"
    shutil.copytree(CORPUS / "tree", root)
    write_audit_tree(root)
    for folder in (root / "models").iterdir():
        _add_weights(folder)
    write_model(base / "outside", identity_weights(), code=(root / "models" / "net" / "model.py").read_text())
    (root / "models" / "escape").symlink_to(base / "outside")
    return root


def _add_weights(folder: Path) -> None:
    if not any(folder.glob("*.pdparams")):
        paddle.save({k: paddle.to_tensor(v) for k, v in identity_weights().items()}, str(folder / "model.pdparams"))


@pytest.fixture(scope="module")
def cluster(storage_root):
    with LocalCluster(workers=1, storage_root=storage_root, worker_flags=WORKER_FLAGS) as running:
        yield running


@pytest.fixture(scope="module")
def auditor(cluster):
    with AuditClient(cluster.address, call_timeout=60) as client:
        yield client


def assert_all_healthy(cluster: LocalCluster) -> None:
    for service in cluster.processes:
        assert service.process is not None and service.process.poll() is None, f"{service.name} died"
        with grpc.insecure_channel(service.address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, service.name


def test_the_corpus_has_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=case["known_gap"])) if "known_gap" in case
    else name for name, case in CASES.items()])
def test_bad_input_gives_a_clear_error_and_harms_nothing(cluster, auditor, name):
    case = CASES[name]
    if case.get("refused"):
        with pytest.raises(TaskError) as refused:
            auditor.run(task_text(case))
        message = str(refused.value)
        if case["field"]:
            assert case["field"] in [problem.field for problem in refused.value.problems], message
    else:
        outcome = auditor.run(task_text(case))
        [result] = outcome.results
        assert result.status == results_pb2.ATTACK_STATUS_FAILED, result
        assert result.error.code == case.get("code", "INVALID_ARGUMENT"), result.error
        assert result.error.field == case["field"], result.error
        message = result.error.message
    for word in case["words"]:
        assert word in message, message

    assert_all_healthy(cluster)
    good = auditor.run(GOOD_TASK)
    assert [r.status for r in good.results] == [results_pb2.ATTACK_STATUS_SUCCEEDED], good.results
    assert good.results[0].target_model.train_acc == 0.75
