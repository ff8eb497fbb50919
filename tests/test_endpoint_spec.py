"""The deployed-target form of `target_model` (issue 19, part 2): validation, the typed message, and
the Open Inference Protocol client's retries and tensor decoding, without a model."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from privaudit.oip import grpc_predict_v2_pb2 as oip
from privaudit.services.attack_worker.oip_client import ATTEMPTS, ModelInfo, OipClient, Tensor
from privaudit.services.common import task_spec
from privaudit.services.common.errors import TaskError
from privaudit.v1 import task_pb2

PAIR = ["data/in", "data/out"]


def refusal(target: object, name: str = "LOSS") -> list[tuple[str, str]]:
    pair = "test_datasets" if name == "BASELINE" else "target_datasets"
    with pytest.raises(TaskError) as caught:
        task_spec.parse_yaml(yaml.safe_dump([{"type": task_spec.YAML_ATTACK_TYPE, "name": name,
                                                        "args": {pair: PAIR, "target_model": target}}]))
    return [(problem.field, problem.message) for problem in caught.value.problems]


def test_every_attack_takes_an_endpoint_and_the_typed_message_carries_it_both_ways():
    target = {"endpoint": "[::1]:8081", "model": "digits", "version": "2", "tls_ca": "ca.pem",
              "token_file": "token", "output": "probabilities", "max_queries": 10, "deadline_s": 2.5,
              "architecture": "models/arch", "output_name": "probs"}
    for name, cls in task_spec.ATTACKS.items():
        message = cls.proto_type.DESCRIPTOR.fields_by_name
        assert message["target_endpoint"].message_type.name == "ModelEndpoint", name
    args = {"target_datasets": PAIR, "target_model": target}
    spec = task_spec.parse_yaml(yaml.safe_dump([{"type": task_spec.YAML_ATTACK_TYPE, "name": "LIRA", "args": args}]))
    typed = task_spec.to_proto(spec)
    assert typed.attacks[0].lira.target_model == "" and typed.attacks[0].lira.target_endpoint.max_queries == 10
    assert task_spec.from_proto(typed) == spec
    endpoint = spec.attacks[0].target_model
    assert str(endpoint) == "[::1]:8081/digits/2"
    assert spec.attacks[0].storage_paths()[-1] == ("target_model.architecture", "models/arch")
    assert spec.attacks[0].target_architecture() == ("target_model.architecture", "models/arch")


def test_defaults_of_an_endpoint():
    endpoint = task_spec.ModelEndpoint(endpoint="h:1", model="m")
    assert (endpoint.output, endpoint.version, endpoint.max_queries, endpoint.deadline_s) == ("logits", "", None, 30.0)
    assert str(endpoint) == "h:1/m"


@pytest.mark.parametrize(("target", "field", "words"), [
    ({"endpoint": "h", "model": "m"}, "endpoint", "host:port"),
    ({"endpoint": "h:0", "model": "m"}, "endpoint", "host:port"),
    ({"endpoint": "h:65536", "model": "m"}, "endpoint", "host:port"),
    ({"endpoint": "h:1", "model": "a b"}, "model", "a model server's name"),
    ({"endpoint": "h:1", "model": "m", "version": 1}, "version", "valid string"),
    ({"endpoint": "h:1"}, "model", "required by a deployed target"),
    ({"endpoint": "h:1", "model": "m", "max_queries": 0}, "max_queries", "greater than or equal to 1"),
    ({"endpoint": "h:1", "model": "m", "deadline_s": 0}, "deadline_s", "greater than 0"),
    ({"endpoint": "h:1", "model": "m", "token_file": "../t"}, "token_file", "leaves the storage root"),
    ({"endpoint": "h:1", "model": "m", "output": "softmax"}, "output", "'logits', 'probabilities' or 'labels'"),
    ({"endpoint": "h:1", "model": "m", "tls": True}, "tls", "a deployed target takes: endpoint, model"),
])
def test_a_bad_endpoint_is_refused_naming_its_own_field_alone(target, field, words):
    problems = refusal(target)
    assert len(problems) == 1, problems  # the folder form's error is not listed beside it
    assert problems[0][0] == f"attacks[0].args.target_model.{field}" and words in problems[0][1]


def test_a_folder_target_keeps_its_errors():
    assert refusal("../up") == [("attacks[0].args.target_model", "'../up' leaves the storage root")]


def test_a_typed_task_with_both_a_folder_and_an_endpoint_is_refused():
    typed = task_pb2.LossArgs(target_datasets=task_pb2.DatasetPair(members="a", non_members="b"), target_model="m",
                              target_endpoint=task_pb2.ModelEndpoint(endpoint="h:1", model="m"))
    with pytest.raises(TaskError) as caught:
        task_spec.from_proto(task_pb2.Task(attacks=[task_pb2.AttackSpec(
            type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE, loss=typed)]))
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("attacks[0].args.target_endpoint", "target_model and target_endpoint are both set; give one")]


def test_privaudit_attacks_shows_the_endpoint_form():
    for attack in task_spec.describe_attacks():
        target = next(a for a in attack["arguments"] if a["name"] == "target_model")
        assert target["type"] == "folder or {endpoint: ...}"
        assert "Open Inference Protocol" in target["description"] and "max_queries" in target["description"]


def test_unavailable_is_tried_4_times_with_doubling_waits_then_names_the_endpoint(tmp_path):
    waits: list[float] = []
    endpoint = task_spec.ModelEndpoint(endpoint="127.0.0.1:1", model="m", deadline_s=2)
    client = OipClient(endpoint, tmp_path, "target_model", sleep=waits.append)
    with pytest.raises(TaskError) as caught:
        client.model_info()
    assert waits == [0.25, 0.5, 1.0] and ATTEMPTS == 4
    assert caught.value.problems[0].field == "target_model.endpoint"


class _Answer:
    """A ModelInfer stub answering `response`."""

    def __init__(self, response: oip.ModelInferResponse):
        self.response = response

    def ModelInfer(self, request, timeout, metadata):
        return self.response


@pytest.mark.parametrize(("datatype", "values"), [("FP32", [[0.5, -1.0], [2.0, 3.0]]), ("INT64", [3, 7]),
                                                  ("FP64", [[1e-300, 2.0]]), ("INT32", [[1], [2]])])
def test_raw_and_typed_contents_decode_alike(tmp_path, datatype, values):
    from privaudit.services.attack_worker.oip_client import _CONTENTS_FIELD, DATATYPES

    array = np.asarray(values, dtype=DATATYPES[datatype])
    client = OipClient(task_spec.ModelEndpoint(endpoint="127.0.0.1:1", model="m"), tmp_path, "target_model")
    info = ModelInfo(Tensor("x", "FP32", (-1, 2)), Tensor("y", datatype, (-1,)))
    tensor = oip.ModelInferResponse.InferOutputTensor(name="y", datatype=datatype, shape=list(array.shape))
    raw = oip.ModelInferResponse(outputs=[tensor], raw_output_contents=[array.tobytes()])
    typed = oip.ModelInferResponse(outputs=[tensor])
    getattr(typed.outputs[0].contents, _CONTENTS_FIELD[datatype]).extend(array.ravel().tolist())
    for response in (raw, typed):
        client._stub = _Answer(response)
        np.testing.assert_array_equal(client.infer(info, np.zeros((len(array), 2), np.float32)), array)


def test_contents_of_the_wrong_size_are_refused(tmp_path):
    client = OipClient(task_spec.ModelEndpoint(endpoint="127.0.0.1:1", model="m"), tmp_path, "target_model")
    tensor = oip.ModelInferResponse.InferOutputTensor(name="y", datatype="FP32", shape=[2, 3])
    client._stub = _Answer(oip.ModelInferResponse(outputs=[tensor], raw_output_contents=[b"\0" * 20]))
    with pytest.raises(TaskError, match=r"shape \[2, 3\] with 5 values"):
        client.infer(ModelInfo(Tensor("x", "FP32", (-1,)), Tensor("y", "FP32", (-1, 3))), np.zeros((2, 1), np.float32))


def test_grpc_status_codes_name_the_field_to_change(tmp_path):
    client = OipClient(task_spec.ModelEndpoint(endpoint="127.0.0.1:1", model="m"), tmp_path, "target_model")

    class Error(grpc.RpcError):
        def __init__(self, code, details):
            self._code, self._details = code, details

        def code(self):
            return self._code

        def details(self):
            return self._details

    expected = {grpc.StatusCode.DEADLINE_EXCEEDED: "target_model.deadline_s",
                grpc.StatusCode.UNAUTHENTICATED: "target_model.token_file",
                grpc.StatusCode.NOT_FOUND: "target_model.model",
                grpc.StatusCode.INVALID_ARGUMENT: "target_model",
                grpc.StatusCode.INTERNAL: "target_model"}
    for code, field in expected.items():
        assert client._refusal("ModelInfer", Error(code, "x"), 1).problems[0].field == field
    # Triton answers UNAVAILABLE for a model it does not know
    unknown = Error(grpc.StatusCode.UNAVAILABLE, "Request for unknown model: 'm' is not found")
    assert client._refusal("ModelInfer", unknown, 4).problems[0].field == "target_model.model"
    handshake = Error(grpc.StatusCode.UNAVAILABLE, "failed to connect: Ssl handshake failed")
    assert client._refusal("ModelInfer", handshake, 4).problems[0].field == "target_model.tls_ca"


def test_preflight_checks_a_deployed_targets_architecture_as_a_model_folder_and_nothing_else():
    from privaudit.services.common.preflight import preflight

    repo = Path(__file__).resolve().parents[1]
    datasets = ["example/datasets/digits_target_members", "example/datasets/digits_target_non_members"]

    def problems(target: dict[str, object]) -> list[tuple[str, str]]:
        spec = task_spec.parse_yaml(yaml.safe_dump([{"type": task_spec.YAML_ATTACK_TYPE, "name": "LIRA",
                                                     "args": {"target_datasets": datasets, "target_model": target}}]))
        return [(p.field, p.message) for p in preflight(spec, repo)]

    endpoint = {"endpoint": "127.0.0.1:1", "model": "m", "token_file": "not/checked/here"}
    assert problems(endpoint) == []
    assert problems({**endpoint, "architecture": "example/models/digits_mlp"}) == []
    (field, message), = problems({**endpoint, "architecture": "example/models/none"})
    assert field == "attacks[0].args.target_model.architecture" and "does not exist" in message
