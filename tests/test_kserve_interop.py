"""The worker's Open Inference Protocol client against a real KServe model server.

KServe 0.21 does not install beside privaudit (it needs protobuf < 7), so it runs from its own
virtualenv, build/kserve-venv, which `make test` makes (`make kserve-venv`); without it these tests
skip. The server (tests/kserve_identity_server.py) serves
worker_fixtures' identity model, so BASELINE through it must give what the folder gives, with and
without the input and output listed in the model's metadata (KServe's custom models list none).
KServe binds its gRPC port on every interface ([::]); the port is a free one picked on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest
from worker_fixtures import AuditTree, write_audit_tree

from privaudit.oip import grpc_predict_v2_pb2 as oip
from privaudit.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common import task_spec
from privaudit.v1 import attack_worker_pb2, results_pb2

REPO = Path(__file__).resolve().parents[1]
KSERVE_PYTHON = REPO / "build" / "kserve-venv" / "bin" / "python"

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not KSERVE_PYTHON.exists(), reason="needs KServe in build/kserve-venv (see the "
                                                                    "module's docstring)")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _kserve(output: str, metadata: bool) -> Iterator[str]:
    grpc_port, env = _free_port(), dict(os.environ)
    env.update(OIP_GRPC_PORT=str(grpc_port), OIP_HTTP_PORT=str(_free_port()), OIP_OUTPUT=output,
               OIP_METADATA="1" if metadata else "0")
    # Its log goes to a file, not a pipe: a server logging every call never blocks on a full pipe.
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen([str(KSERVE_PYTHON), str(REPO / "tests" / "kserve_identity_server.py")],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO / "build")
        address = f"127.0.0.1:{grpc_port}"
        try:
            with grpc.insecure_channel(address) as channel:
                stub, deadline = oip_grpc.GRPCInferenceServiceStub(channel), time.monotonic() + 60
                while True:
                    try:
                        if stub.ModelReady(oip.ModelReadyRequest(name="net"), timeout=2).ready:
                            break
                    except grpc.RpcError:
                        pass
                    assert server.poll() is None and time.monotonic() < deadline, _tail(log)
                    time.sleep(0.2)
            yield address
        finally:
            server.terminate()
            server.wait(timeout=30)


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


@pytest.fixture(scope="module", params=[False, True], ids=["no metadata", "metadata"])
def logits_server(request) -> Iterator[str]:
    yield from _kserve("logits", request.param)


@pytest.fixture(scope="module")
def labels_server() -> Iterator[str]:
    yield from _kserve("labels", True)


@pytest.fixture
def tree(tmp_path) -> AuditTree:
    return write_audit_tree(tmp_path)


def run(tree: AuditTree, name: str, target: object) -> results_pb2.AttackResult:
    pair = "test_datasets" if name == "BASELINE" else "target_datasets"
    args = task_spec.ATTACKS[name].model_validate({pair: [tree.members, tree.non_members], "target_model": target})
    request = attack_worker_pb2.RunAttackRequest(task_id="kserve", attack_index=0, seed=task_spec.DEFAULT_SEED,
                                                 attack=task_spec.attack_to_proto(args))
    return run_job(request, WorkerSettings(str(tree.root)), lambda progress: None)


@pytest.mark.parametrize("name", ["BASELINE", "LOSS"])
def test_through_kserve_the_results_are_the_folders(tree, logits_server, name):
    local = run(tree, name, tree.model)
    remote = run(tree, name, {"endpoint": logits_server, "model": "net"})
    assert remote.status == local.status == results_pb2.ATTACK_STATUS_SUCCEEDED, remote.error
    assert remote.metrics == local.metrics and remote.target_queries == 16
    assert (remote.target_model.train_acc, remote.target_model.test_acc) == (0.75, 0.375)


def test_kserves_labels_serve_baseline_and_refuse_loss(tree, labels_server):
    target = {"endpoint": labels_server, "model": "net", "output": "labels"}
    baseline = run(tree, "BASELINE", target)
    assert baseline.status == results_pb2.ATTACK_STATUS_SUCCEEDED, baseline.error
    assert baseline.metrics == run(tree, "BASELINE", tree.model).metrics
    # declared as logits, the model's metadata (INT64) says labels: LOSS is refused before a query
    loss = run(tree, "LOSS", {**target, "output": "logits"})
    assert loss.error.field == "attacks[0].args.target_model.output" and loss.target_queries == 0


def test_a_model_kserve_lacks_fails_naming_the_model(tree, labels_server):
    result = run(tree, "BASELINE", {"endpoint": labels_server, "model": "nett"})
    assert result.error.field == "attacks[0].args.target_model.model"
    assert "Model with name nett does not exist" in result.error.message
