"""A client of the Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`).

The protocol KServe and Triton serve. One client talks to one model of one server:
`model_info()` once (it also tells whether the server has the model), then `infer()`
per batch, tensors sent and received as raw little-endian bytes. Every call has the
endpoint's deadline; UNAVAILABLE is retried a few times with backoff, and anything
that still fails becomes a TaskError naming the task field to change (the endpoint,
the model's name, the deadline, the CA file, the token file), with the server's words.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np

from privaudit.oip import grpc_predict_v2_pb2 as oip
from privaudit.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import ModelEndpoint

# Tries of a call the server answers UNAVAILABLE, and the wait before each retry (doubling).
ATTEMPTS = 4
FIRST_BACKOFF_S = 0.25
# The largest answer taken from a model server (a batch's outputs).
MAX_MESSAGE_BYTES = 64 * 2**20
# A CA bundle or token file larger than this is not one.
MAX_SECRET_FILE_BYTES = 1 * 2**20

# The protocol's tensor data types that hold numbers, as numpy little-endian dtypes.
DATATYPES: dict[str, np.dtype] = {name: np.dtype(code).newbyteorder("<") for name, code in (
    ("BOOL", "bool"), ("UINT8", "u1"), ("UINT16", "u2"), ("UINT32", "u4"), ("UINT64", "u8"), ("INT8", "i1"),
    ("INT16", "i2"), ("INT32", "i4"), ("INT64", "i8"), ("FP16", "f2"), ("FP32", "f4"), ("FP64", "f8"))}
# Where typed (not raw) contents keep each data type's elements.
_CONTENTS_FIELD = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                   "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
                   "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
                   "FP32": "fp32_contents", "FP64": "fp64_contents"}
# The input data types the worker can send its float32 samples as.
_FLOAT_INPUTS = ("FP32", "FP64")
# What the worker calls the input of a model whose metadata lists none (KServe's custom Python
# models list none unless they say), and sends it as.
UNLISTED_INPUT = ("input-0", "FP32")

T = TypeVar("T")


@dataclass(frozen=True)
class Tensor:
    """An input or output of the model as its metadata describes it (-1: a dimension of any size);
    an output the metadata does not list has no datatype and, unless the task names it, no name."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What the server says of the model: the one input the worker fills, the output it reads."""

    input: Tensor
    output: Tensor


class OipClient:
    """Calls to one model on one Open Inference Protocol server. `field` is the task field that
    named the endpoint (e.g. `target_model`); `root` is the storage root the CA and token files
    are read from."""

    def __init__(self, endpoint: ModelEndpoint, root: str | os.PathLike[str], field: str,
                 sleep: Callable[[float], None] = time.sleep):
        self.endpoint = endpoint
        self.field = field
        self._sleep = sleep
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        if endpoint.tls_ca is None:
            self._channel = grpc.insecure_channel(endpoint.endpoint, options=options)
        else:
            ca = _read_file(root, endpoint.tls_ca, f"{field}.tls_ca")
            self._channel = grpc.secure_channel(endpoint.endpoint, grpc.ssl_channel_credentials(ca), options=options)
        self._metadata: tuple[tuple[str, str], ...] = ()
        if endpoint.token_file is not None:
            token = _read_file(root, endpoint.token_file, f"{field}.token_file").decode("utf-8", "replace").strip()
            if not token or not token.isprintable():
                raise TaskError.at(f"{field}.token_file", f"'{endpoint.token_file}' must hold one printable token")
            self._metadata = (("authorization", f"Bearer {token}"),)
        self._stub = oip_grpc.GRPCInferenceServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def model_info(self) -> ModelInfo:
        """The model's input and the output to read (`output_name`, else its only output);
        TaskError when the server lacks the model or the model does not fit what the worker sends."""
        answer = self._call("ModelMetadata", self._stub.ModelMetadata,
                            oip.ModelMetadataRequest(name=self.endpoint.model, version=self.endpoint.version))
        inputs = [Tensor(t.name, t.datatype, tuple(t.shape)) for t in answer.inputs]
        outputs = [Tensor(t.name, t.datatype, tuple(t.shape)) for t in answer.outputs]
        model = self._model_words()
        inputs = inputs or [Tensor(*UNLISTED_INPUT, ())]
        if len(inputs) != 1 or inputs[0].datatype not in _FLOAT_INPUTS:
            got = ", ".join(f"{t.name} ({t.datatype})" for t in inputs)
            raise TaskError.at(f"{self.field}.model", f"{model} must take one FP32 or FP64 input tensor (a batch of "
                                                      f"samples); its metadata lists {got}")
        if not outputs:
            return ModelInfo(inputs[0], Tensor(self.endpoint.output_name, "", ()))
        named = [t for t in outputs if t.name == self.endpoint.output_name] if self.endpoint.output_name else outputs
        if len(named) != 1:
            listed = ", ".join(t.name for t in outputs) or "none"
            problem = (f"names no output of {model}" if self.endpoint.output_name
                       else f"is needed: {model} has {len(outputs)} outputs")
            raise TaskError.at(f"{self.field}.output_name", f"{problem} (its outputs: {listed})")
        if named[0].datatype not in DATATYPES:
            raise TaskError.at(f"{self.field}.output_name", f"output {named[0].name} of {model} is of type "
                                                            f"{named[0].datatype}, not numbers")
        return ModelInfo(inputs[0], named[0])

    def infer(self, info: ModelInfo, samples: np.ndarray) -> np.ndarray:
        """The model's output `info.output` (its only output, unnamed) on a batch of float32
        `samples`, as an array of its data type and the shape the server gave."""
        dtype = DATATYPES[info.input.datatype]
        request = oip.ModelInferRequest(
            model_name=self.endpoint.model, model_version=self.endpoint.version,
            inputs=[oip.ModelInferRequest.InferInputTensor(name=info.input.name, datatype=info.input.datatype,
                                                           shape=list(samples.shape))],
            outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name=info.output.name)] if info.output.name
            else [],
            raw_input_contents=[np.ascontiguousarray(samples, dtype=dtype).tobytes()])
        answer = self._call("ModelInfer", self._stub.ModelInfer, request)
        return self._output(answer, info.output.name)

    # ------------------------------------------------------------ internals

    def _output(self, answer: oip.ModelInferResponse, name: str) -> np.ndarray:
        positions = [i for i, t in enumerate(answer.outputs) if t.name == name or not name]
        if len(positions) != 1:
            wanted = f"output {name}" if name else "one output"
            listed = ", ".join(t.name for t in answer.outputs) or "none"
            raise TaskError.at(f"{self.field}.output_name", f"{self._model_words()} answered without {wanted} "
                                                            f"(outputs: {listed})")
        position = positions[0]
        tensor = answer.outputs[position]
        shape = tuple(tensor.shape)
        if tensor.datatype not in DATATYPES or any(d < 0 for d in shape):
            raise TaskError.at(self.field, f"{self._model_words()} answered output {name} of type "
                                           f"{tensor.datatype!r} and shape {list(shape)}: not a numeric tensor")
        dtype = DATATYPES[tensor.datatype]
        if answer.raw_output_contents:
            if position >= len(answer.raw_output_contents):
                raise TaskError.at(self.field, f"{self._model_words()} answered {len(answer.outputs)} outputs but "
                                               f"raw contents for {len(answer.raw_output_contents)}")
            values = np.frombuffer(answer.raw_output_contents[position], dtype=dtype)
        elif tensor.datatype in _CONTENTS_FIELD:
            values = np.asarray(getattr(tensor.contents, _CONTENTS_FIELD[tensor.datatype]), dtype=dtype)
        else:  # FP16 travels as raw bytes only
            values = np.array([], dtype=dtype)
        if values.size != int(np.prod(shape)):
            raise TaskError.at(self.field, f"{self._model_words()} answered output {name} of shape {list(shape)} "
                                           f"with {values.size} values")
        return values.reshape(shape)

    def _call(self, method: str, call: Callable[..., T], request: object) -> T:
        wait = FIRST_BACKOFF_S
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return call(request, timeout=self.endpoint.deadline_s, metadata=self._metadata)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == ATTEMPTS:
                    raise self._refusal(method, error, attempt) from None
            self._sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")

    def _refusal(self, method: str, error: grpc.RpcError, attempts: int) -> TaskError:
        """What a failed call means for the task, naming the field to change."""
        code, details = error.code(), error.details() or ""
        said = f"{method} failed with {code.name}: {details}" if details else f"{method} failed with {code.name}"
        where, model = self.endpoint.endpoint, self._model_words()
        tls = f"{self.field}.tls_ca"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return TaskError.at(f"{self.field}.deadline_s", f"{model} took longer than deadline_s = "
                                                            f"{self.endpoint.deadline_s:g} s to answer ({said}); "
                                                            "raise deadline_s or lower batch_size")
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return TaskError.at(f"{self.field}.token_file", f"{where} refused the worker's credentials ({said}); "
                                                            "check token_file")
        if code == grpc.StatusCode.NOT_FOUND or _names_unknown_model(details):
            return TaskError.at(f"{self.field}.model", f"{where} has no {model} ({said}); check model and version")
        if code == grpc.StatusCode.UNAVAILABLE:
            if _is_tls_fault(details):
                how = ("with TLS, verifying it by tls_ca" if self.endpoint.tls_ca is not None
                       else "in plaintext (tls_ca is unset)")
                return TaskError.at(tls, f"could not talk to {where} {how} ({said}); give the CA that signed the "
                                         "server's certificate, or unset tls_ca for a plaintext server")
            hint = "" if self.endpoint.tls_ca is not None else \
                " (the worker spoke plaintext: set tls_ca if it speaks TLS)"
            return TaskError.at(f"{self.field}.endpoint", f"{where} did not answer after {attempts} tries ({said}); "
                                                          f"is the model server running and reachable from the "
                                                          f"attack workers{hint}?")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return TaskError.at(self.field, f"{model} refused the worker's request ({said}); does it take this "
                                            "dataset's samples, in a batch, as one float tensor?")
        return TaskError.at(self.field, f"{model} at {where}: {said}")

    def _model_words(self) -> str:
        version = f" version {self.endpoint.version}" if self.endpoint.version else ""
        return f"model {self.endpoint.model!r}{version}"


def _names_unknown_model(details: str) -> bool:
    """Whether a server's message says the model is unknown (Triton answers UNAVAILABLE so)."""
    lowered = details.lower()
    return "unknown model" in lowered or ("model" in lowered and "not found" in lowered)


def _is_tls_fault(details: str) -> bool:
    lowered = details.lower()
    return any(word in lowered for word in ("ssl", "tls", "handshake", "certificate"))


def _read_file(root: str | os.PathLike[str], path: str, field: str) -> bytes:
    """A small file under the storage root (symlinks resolved and kept inside it)."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root / path))
    if not real.is_relative_to(real_root):
        raise TaskError.at(field, f"'{path}' leaves the storage root")
    if not real.is_file():
        raise TaskError.at(field, f"'{path}' is not a file under the storage root {real_root}")
    with real.open("rb") as file:
        data = file.read(MAX_SECRET_FILE_BYTES + 1)
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise TaskError.at(field, f"'{path}' is larger than {MAX_SECRET_FILE_BYTES:,} bytes")
    return data
