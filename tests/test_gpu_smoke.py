"""On a GPU, through a real worker (its job processes, no address-space limit there): one LIRA
shadow model trains and one LABEL-ONLY job queries its augmented batch on CUDA, and the model's
forward pass sees its inputs on the GPU. Skips, saying why, where Paddle has no CUDA or sees no
GPU."""

from __future__ import annotations

import paddle
import pytest
from test_shadow_jobs import ShadowTree, lira_args, write_population
from test_shadow_jobs import request as lira_request
from worker_fixtures import MODEL_CODE, identity_weights, served_worker, write_audit_tree, write_model

from privaudit.services.common import task_spec
from privaudit.v1 import attack_worker_pb2, results_pb2

if not paddle.device.is_compiled_with_cuda():
    pytest.skip("this Paddle is built without CUDA (paddle.device.is_compiled_with_cuda() is False): "
                "install paddlepaddle-gpu on a machine with a GPU to run the GPU smoke test",
                allow_module_level=True)
if paddle.device.cuda.device_count() == 0:
    pytest.skip("Paddle is built with CUDA but sees no GPU (check the driver and CUDA_VISIBLE_DEVICES)",
                allow_module_level=True)

# The target model's code, recording where its forward pass ran (the job's process writes it).
PLACE_RECORDING = '''
_forward = Net.forward


def _recording_forward(self, x):
    with open(__file__ + ".place", "a") as seen:
        seen.write(f"{x.place}\\n")
    return _forward(self, x)


Net.forward = _recording_forward
'''


@pytest.fixture
def tree(tmp_path) -> ShadowTree:
    audit = write_audit_tree(tmp_path / "root", member_correct=[True] * 10 + [False] * 2,
                             non_member_correct=[True] * 5 + [False] * 7)
    write_model(audit.root / "models" / "net", identity_weights(), code=MODEL_CODE + PLACE_RECORDING)
    return ShadowTree(audit, (write_population(audit.root, "pop", 16, 1),))


def places(tree: ShadowTree) -> set[str]:
    return set((tree.root / "models" / "net" / "model.py.place").read_text().split())


def test_a_lira_shadow_model_trains_on_the_gpu(tree):
    with served_worker(tree.root, device="gpu") as (stub, _):
        capacity = stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=30)
        assert (capacity.device, capacity.gpu) == ("gpu:0", True)
        answers = list(stub.RunAttack(lira_request(lira_args(tree), part=0), timeout=600))
    assert answers[-1].HasField("shadow"), answers[-1]
    assert all(place.startswith("Place(gpu") for place in places(tree)), places(tree)


def test_a_label_only_query_batch_runs_on_the_gpu_with_the_cpus_answer(tree):
    shadow_pair = [write_population(tree.root, name, 12, seed) for name, seed in (("shadow_in", 2), ("shadow_out", 3))]
    args = task_spec.LabelOnlyArgs(target_datasets=[tree.audit.members, tree.audit.non_members],
                                   target_model=tree.audit.model, shadow_model=tree.audit.model,
                                   shadow_datasets=shadow_pair, shadow_epoch=3, classifier_epoch=5, batch_size=8,
                                   attack_type="r", r=2)
    job = attack_worker_pb2.RunAttackRequest(task_id="gpu-smoke", attack_index=0, seed=7,
                                             attack=task_spec.attack_to_proto(args))
    results = {}
    for device in ("gpu", "cpu"):
        with served_worker(tree.root, device=device) as (stub, _):
            results[device] = list(stub.RunAttack(job, timeout=600))[-1].result
        assert results[device].status == results_pb2.ATTACK_STATUS_SUCCEEDED, results[device].error
        if device == "gpu":
            assert all(place.startswith("Place(gpu") for place in places(tree)), places(tree)
    # The same model and records: float differences may move a borderline label, not the figure.
    assert results["gpu"].metrics.auc == pytest.approx(results["cpu"].metrics.auc, abs=0.05)
