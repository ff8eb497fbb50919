"""Auditing a deployed model over the Open Inference Protocol v2 (issue 19, part 2).

The worker's jobs run against tests/oip_server.py, a protocol-conformant server serving the
example's target (digits_mlp) with Paddle. Through it BASELINE and LOSS must give the metrics
the local folder gives, bit for bit (the same float32 logits travel as raw bytes), and spend
one query per record, as the server counts independently. A labels-only endpoint runs
BASELINE and LABEL-ONLY (LABEL-ONLY's result equals the local one: the same labels, the same
local shadow model) and fails the score attacks saying why. Bad endpoints fail their attack
alone, each naming the task field to change.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from privaudit.services.attack_worker import storage
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common import task_spec
from privaudit.v1 import attack_worker_pb2, results_pb2
from tests.oip_server import Served, serving

ROOT = Path(__file__).resolve().parents[1]
MODEL = "./example/models/digits_mlp"
MEMBERS = "./example/datasets/digits_target_members"
NON_MEMBERS = "./example/datasets/digits_target_non_members"
SHADOW = ["./example/datasets/digits_shadow_members", "./example/datasets/digits_shadow_non_members"]
SEED = task_spec.DEFAULT_SEED


def attack(name: str, target_model: object, **args: object) -> task_spec.AttackArgs:
    pair = "test_datasets" if name == "BASELINE" else "target_datasets"
    return task_spec.ATTACKS[name].model_validate({pair: [MEMBERS, NON_MEMBERS], "target_model": target_model,
                                                   **args})


def label_only(target_model: object) -> task_spec.AttackArgs:
    return attack("LABEL-ONLY", target_model, shadow_model=MODEL, shadow_datasets=SHADOW, shadow_epoch=20,
                  classifier_epoch=20, batch_size=64, attack_type="r", r=2)


def run(args: task_spec.AttackArgs, root: Path = ROOT) -> results_pb2.AttackResult:
    request = attack_worker_pb2.RunAttackRequest(task_id="endpoint", attack_index=0, seed=SEED,
                                                 attack=task_spec.attack_to_proto(args))
    return run_job(request, WorkerSettings(str(root)), lambda progress: None)


def endpoint(address: str, **fields: object) -> dict[str, object]:
    return {"endpoint": address, "model": "digits", "version": "1", **fields}


def digits(**changes: object) -> Served:
    """The example's target as a served model."""
    layer = storage.load_model(ROOT, MODEL, "target_model")
    dataset = storage.load_dataset(ROOT, MEMBERS, "members")
    sample, _ = storage.read_records(dataset, [0], "members")
    return Served("digits", layer, tuple(sample.shape[1:]), num_classes=10, **changes)


def succeeded(result: results_pb2.AttackResult) -> results_pb2.AttackResult:
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    return result


def failed_at(result: results_pb2.AttackResult, field: str) -> str:
    assert result.status == results_pb2.ATTACK_STATUS_FAILED, "the attack should have failed"
    assert result.error.field == f"attacks[0].args.{field}", result.error
    return result.error.message


@pytest.fixture(scope="module")
def local() -> dict[str, results_pb2.AttackResult]:
    return {"BASELINE": succeeded(run(attack("BASELINE", MODEL))), "LOSS": succeeded(run(attack("LOSS", MODEL)))}


@pytest.mark.parametrize("name", ["BASELINE", "LOSS"])
def test_the_endpoint_gives_the_local_folders_metrics_exactly_and_counts_one_query_per_record(local, name):
    served = digits()
    with serving(served) as address:
        remote = succeeded(run(attack(name, endpoint(address))))
    assert remote.metrics == local[name].metrics
    assert list(remote.record_scores.members) == list(local[name].record_scores.members)
    assert list(remote.roc) == list(local[name].roc)
    records = sum(d.length for d in local[name].datasets if d.role == "target")
    assert remote.target_queries == served.records == records  # the worker's count is the server's
    assert local[name].target_queries == 0
    assert remote.target_model.path == f"{address}/digits/1" and remote.target_model.digest == ""
    assert (remote.target_model.train_acc, remote.target_model.test_acc) == \
        (local[name].target_model.train_acc, local[name].target_model.test_acc)


def test_typed_tensor_contents_read_as_raw_ones_do(local):
    with serving(digits(typed_contents=True)) as address:
        remote = succeeded(run(attack("LOSS", endpoint(address))))
    assert remote.metrics == local["LOSS"].metrics


def test_probabilities_score_as_logits_do(local):
    """log p for logits: LOSS's loss moves by float32 rounding only, so its ranking and AUC stay."""
    with serving(digits(output="probabilities")) as address:
        remote = succeeded(run(attack("LOSS", endpoint(address, output="probabilities"))))
    assert remote.metrics.auc == pytest.approx(local["LOSS"].metrics.auc, abs=1e-4)
    np.testing.assert_allclose(remote.record_scores.members, local["LOSS"].record_scores.members, rtol=1e-4,
                               atol=1e-5)


def test_a_labels_only_endpoint_runs_baseline_and_label_only_as_the_local_folder_does(local):
    served = digits(output="labels")
    with serving(served) as address:
        target = endpoint(address, output="labels")
        baseline = succeeded(run(attack("BASELINE", target)))
        remote_label_only = succeeded(run(label_only(target)))
    assert baseline.metrics == local["BASELINE"].metrics
    local_label_only = succeeded(run(label_only(MODEL)))
    assert remote_label_only.metrics == local_label_only.metrics
    assert list(remote_label_only.record_scores.members) == list(local_label_only.record_scores.members)
    # every record once (the model summary's accuracy), then 5 rotations of each evaluated record
    evaluated = remote_label_only.metrics.num_members + remote_label_only.metrics.num_non_members
    assert remote_label_only.target_queries == 400 + 400 + 5 * evaluated


@pytest.mark.parametrize("name", ["LOSS", "ML-LEAK"])
def test_a_score_attack_on_a_labels_only_endpoint_fails_naming_the_reason_before_any_query(name):
    served = digits(output="labels")
    extra = {"shadow_model": MODEL, "shadow_datasets": SHADOW} if name == "ML-LEAK" else {}
    with serving(served) as address:
        # declared as labels, or declared as logits while the server's metadata says INT64
        for declared in ("labels", "logits"):
            result = run(attack(name, endpoint(address, output=declared), **extra))
            message = failed_at(result, "target_model.output")
            assert "returns labels only" in message and f"{name} needs the model's scores" in message
            assert "BASELINE and LABEL-ONLY" in message
    assert served.records == 0 and result.target_queries == 0


def test_a_model_whose_metadata_lists_no_tensors_is_queried_and_what_it_answers_decides(local):
    with serving(digits(listed=False)) as address:
        remote = succeeded(run(attack("LOSS", endpoint(address))))
    assert remote.metrics == local["LOSS"].metrics
    served = digits(listed=False, output="labels")
    with serving(served) as address:
        result = run(attack("LOSS", endpoint(address)))  # declared logits: the first answer says otherwise
    assert "set output: labels" in failed_at(result, "target_model.output")
    assert result.target_queries == served.records == 128  # one batch, then it stopped


def test_a_budget_is_never_overrun():
    """BASELINE queries the members (400), then the non-members (400): with 799 allowed, the
    second pass is refused before it sends anything."""
    served = digits()
    with serving(served) as address:
        result = run(attack("BASELINE", endpoint(address, max_queries=799)))
        spent = served.records
        enough = succeeded(run(attack("BASELINE", endpoint(address, max_queries=800))))
    message = failed_at(result, "target_model.max_queries")
    assert "needs 400 more queries" in message and "after the 400 it sent, past max_queries = 799" in message
    assert result.target_queries == spent == 400 and enough.target_queries == 800


def test_a_server_that_is_down_fails_the_attack_naming_the_endpoint():
    with serving(digits()) as address:
        pass  # the port is free again
    message = failed_at(run(attack("BASELINE", endpoint(address, deadline_s=2))), "target_model.endpoint")
    assert address in message and "UNAVAILABLE" in message and "4 tries" in message


def test_a_model_the_server_lacks_fails_naming_the_model():
    with serving(digits()) as address:
        wrong_name = run(attack("BASELINE", endpoint(address, model="digitz")))
        wrong_version = run(attack("BASELINE", endpoint(address, version="7")))
    assert "has no model 'digitz'" in failed_at(wrong_name, "target_model.model")
    assert "NOT_FOUND" in failed_at(wrong_version, "target_model.model")


def test_an_output_of_the_wrong_shape_fails_naming_the_shape():
    with serving(digits(output="bad_shape")) as address:
        message = failed_at(run(attack("BASELINE", endpoint(address))), "target_model")
    assert "shape [128, 1, 1]" in message and "[batch, classes]" in message


def test_probabilities_that_are_not_fail_naming_the_output_field():
    with serving(digits(output="logits")) as address:
        message = failed_at(run(attack("LOSS", endpoint(address, output="probabilities"))), "target_model.output")
    assert "not probabilities" in message and "logits" in message


def test_a_slow_endpoint_fails_past_its_deadline_naming_it():
    with serving(digits(delay_s=1.5)) as address:
        message = failed_at(run(attack("BASELINE", endpoint(address, deadline_s=0.3))), "target_model.deadline_s")
    assert "deadline_s = 0.3 s" in message and "DEADLINE_EXCEEDED" in message


def test_a_token_is_sent_when_configured_and_its_absence_fails_naming_token_file(tmp_path):
    root = _root_with(tmp_path, {"secrets/token": b"s3cret\n"})
    with serving(digits(token="s3cret")) as address:
        missing = run(attack("BASELINE", endpoint(address)), root)
        given = succeeded(run(attack("BASELINE", endpoint(address, token_file="secrets/token")), root))
    assert "UNAUTHENTICATED" in failed_at(missing, "target_model.token_file")
    assert given.target_queries == 800


def test_tls_works_with_the_right_ca_and_a_mismatch_fails_naming_tls_ca(tmp_path):
    ca_key, ca = _certificate("privaudit test CA")
    _, other_ca = _certificate("another CA")
    server_key, server_cert = _certificate("127.0.0.1", issuer=(ca_key, ca))
    root = _root_with(tmp_path, {"tls/ca.pem": _pem(ca), "tls/other.pem": _pem(other_ca)})
    credentials = grpc.ssl_server_credentials([(
        server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()), _pem(server_cert))])
    with serving(digits(), credentials) as address:
        trusted = succeeded(run(attack("BASELINE", endpoint(address, tls_ca="tls/ca.pem")), root))
        wrong_ca = run(attack("BASELINE", endpoint(address, tls_ca="tls/other.pem", deadline_s=2)), root)
        plaintext = run(attack("BASELINE", endpoint(address, deadline_s=2)), root)
    assert trusted.target_queries == 800
    assert "with TLS, verifying it by tls_ca" in failed_at(wrong_ca, "target_model.tls_ca")
    # gRPC says only that the socket closed: the message says what the worker spoke
    assert "set tls_ca if it speaks TLS" in failed_at(plaintext, "target_model.endpoint")


def test_lira_trains_its_shadows_on_the_named_architecture_and_needs_one():
    """The shadow models train locally from `architecture` (here the target's own folder), so the
    result is the local one."""
    lira = {"num_shadow": 2, "epochs": 2, "online": True}
    with serving(digits()) as address:
        without = run(attack("LIRA", endpoint(address), **lira))
        remote = succeeded(run(attack("LIRA", endpoint(address, architecture=MODEL), **lira)))
    assert "architecture" in failed_at(without, "target_model.architecture")
    assert remote.metrics == succeeded(run(attack("LIRA", MODEL, **lira))).metrics
    # each audited record once: LIRA's query records are the ones the model summary's accuracies read
    assert remote.target_queries == 800


def _root_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A storage root holding a copy of the example's target and datasets, and `files`."""
    for part in (MODEL, MEMBERS, NON_MEMBERS, "example/digits.py"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        copy(ROOT / part, tmp_path / part)
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path


def _certificate(name: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None
                 ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA's self-signed certificate, or (with `issuer`) a server certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if issuer is None:
        builder = builder.issuer_name(subject).add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                                             critical=True)
        return key, builder.sign(key, hashes.SHA256())
    builder = builder.issuer_name(issuer[1].subject).add_extension(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), critical=False)
    return key, builder.sign(issuer[0], hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.e2e
def test_through_the_local_cluster_each_bad_endpoint_fails_its_attack_alone():
    """The worker's jobs run in forked child processes: the gRPC client must work there too."""
    from privaudit.client import AuditClient, LocalCluster

    def entry(name: str, target: dict[str, object] | str) -> dict[str, object]:
        pair = "test_datasets" if name == "BASELINE" else "target_datasets"
        return {"type": task_spec.YAML_ATTACK_TYPE, "name": name,
                "args": {pair: [MEMBERS, NON_MEMBERS], "target_model": target}}

    with serving(digits()) as scores, serving(digits(output="labels")) as labels:
        with serving(digits()) as down:
            pass
        task = [entry("BASELINE", MODEL), entry("BASELINE", endpoint(scores)), entry("LOSS", endpoint(scores)),
                entry("LOSS", endpoint(labels, output="labels")), entry("BASELINE", endpoint(down, deadline_s=2)),
                entry("BASELINE", endpoint(scores, model="digitz"))]
        with LocalCluster(workers=1, storage_root=ROOT) as cluster, AuditClient(cluster.address) as auditor:
            outcome = auditor.run(yaml.safe_dump(task))
    local_baseline, remote_baseline, remote_loss, *bad = outcome.results
    succeeded_ = results_pb2.ATTACK_STATUS_SUCCEEDED
    assert [r.status for r in (local_baseline, remote_baseline, remote_loss)] == [succeeded_] * 3
    assert remote_baseline.metrics == local_baseline.metrics
    assert (local_baseline.target_queries, remote_baseline.target_queries, remote_loss.target_queries) == (0, 800, 800)
    assert [r.error.field for r in bad] == ["attacks[3].args.target_model.output",
                                            "attacks[4].args.target_model.endpoint",
                                            "attacks[5].args.target_model.model"]
    assert outcome.done.succeeded_attacks == 3


MNIST_TASK = ROOT / "example" / "tasks" / "mem_inf_mnist.yaml"
MNIST_MODEL = "./example/models/mnist_cnn"


@pytest.mark.e2e
@pytest.mark.skipif(not (ROOT / "example" / "models" / "mnist_cnn" / "mnist_cnn.pdparams").exists(),
                    reason="needs the MNIST example (make mnist)")
def test_the_mnist_task_through_endpoints_gives_the_local_results_and_reports_its_queries():
    """Issue 19's done-when: the example's MNIST task, its target served over the protocol (logits for
    the score attacks, labels alone for LABEL-ONLY), gives the local folder's results exactly."""
    from privaudit.client import AuditClient, LocalCluster

    entries = [e for e in yaml.safe_load(MNIST_TASK.read_text()) if e["name"] not in ("LIRA", "RMIA")]
    assert [e["name"] for e in entries] == ["BASELINE", "LOSS", "ML-LEAK", "LABEL-ONLY", "LABEL-ONLY"]
    sample = storage.read_records(storage.load_dataset(ROOT, entries[0]["args"]["target_datasets"][0], "x"), [0], "x")
    layer = storage.load_model(ROOT, MNIST_MODEL, "target_model")
    scores, labels = (Served("mnist", layer, tuple(sample[0].shape[1:]), num_classes=10, output=output)
                      for output in ("logits", "labels"))
    with serving(scores) as scores_at, serving(labels) as labels_at:
        remote = [{**e, "args": {**e["args"], "target_model": endpoint(scores_at, model="mnist") if
                                 e["name"] != "LABEL-ONLY" else endpoint(labels_at, model="mnist", output="labels")}}
                  for e in entries]
        with LocalCluster(workers=1, storage_root=ROOT) as cluster, AuditClient(cluster.address) as auditor:
            local_results = auditor.run(yaml.safe_dump(entries)).results
            remote_results = auditor.run(yaml.safe_dump(remote)).results
    for here, there in zip(local_results, remote_results, strict=True):
        assert here.status == there.status == results_pb2.ATTACK_STATUS_SUCCEEDED, (here.error, there.error)
        assert there.metrics == here.metrics, here.attack_name
        assert list(there.record_scores.members) == list(here.record_scores.members)
        print(f"{there.attack_name}: AUC {there.metrics.auc:.4f}, {there.target_queries:,} queries")
    assert sum(r.target_queries for r in remote_results) == scores.records + labels.records
