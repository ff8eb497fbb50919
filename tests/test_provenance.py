"""Provenance from the worker: the content digests of the target model and of the datasets' records,
and the device a job ran on."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
from worker_fixtures import baseline_request, identity_weights, write_audit_tree, write_dataset, write_model

from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.v1 import results_pb2


def _run(root, request) -> results_pb2.AttackResult:
    result = run_job(request, WorkerSettings(str(root)), lambda progress: None)
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    return result


def _records_digest(folder) -> str:
    """The records' digest recomputed from the file the dataset serves: shapes, labels as int64,
    samples as float32."""
    data = np.load(folder / "records.npz")
    samples, labels = data["samples"].astype(np.float32), data["labels"].astype(np.int64)
    digest = hashlib.sha256(f"{samples.shape}{labels.shape}".encode())
    digest.update(labels.tobytes())
    digest.update(samples.tobytes())
    return digest.hexdigest()


def test_the_result_names_the_records_and_model_digests_and_the_device(tmp_path) -> None:
    tree = write_audit_tree(tmp_path)
    result = _run(tree.root, baseline_request(tree))
    assert result.device == "cpu"
    assert [d.digest for d in result.datasets] == [_records_digest(tree.root / tree.members),
                                                   _records_digest(tree.root / tree.non_members)]
    assert len(result.target_model.digest) == 64 and int(result.target_model.digest, 16) >= 0


def test_the_same_records_in_another_form_or_folder_give_the_same_digest(tmp_path) -> None:
    """Labels as 0-d arrays and samples as Paddle tensors in float64, in another folder: same records."""
    tree = write_audit_tree(tmp_path)
    data = np.load(tree.root / tree.members / "records.npz")
    write_dataset(tree.root / "datasets" / "copy", data["samples"].astype(np.float64), data["labels"],
                  label_form="0-d array", sample_form="tensor")
    shutil.copytree(tree.root / tree.model, tree.root / "models" / "net_copy")
    request = baseline_request(tree, target_model="models/net_copy")
    request.attack.baseline.test_datasets.members = "datasets/copy"
    copied = _run(tree.root, request)
    original = _run(tree.root, baseline_request(tree))
    assert copied.datasets[0].digest == original.datasets[0].digest
    assert copied.datasets[1].digest == original.datasets[1].digest != original.datasets[0].digest
    assert copied.target_model.digest == original.target_model.digest


def test_other_weights_give_another_model_digest(tmp_path) -> None:
    tree = write_audit_tree(tmp_path)
    weights = identity_weights()
    weights["linear.bias"] = weights["linear.bias"] + 0.01
    write_model(tree.root / "models" / "shifted", weights)
    shifted = _run(tree.root, baseline_request(tree, target_model="models/shifted"))
    assert shifted.target_model.digest != _run(tree.root, baseline_request(tree)).target_model.digest
