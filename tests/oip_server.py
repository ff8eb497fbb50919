"""An Open Inference Protocol v2 server for tests, serving a Paddle model over gRPC.

No OIP server installs beside privaudit (KServe 0.21 needs protobuf < 7, the project
protobuf >= 7.35), so the tests run this one, built on the protocol's own stubs
(protos/privaudit/oip): the core API as a conformant server answers it (ServerLive,
ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer with raw or typed
tensors; NOT_FOUND for a model it does not serve; INVALID_ARGUMENT for a malformed
input). What it answers is set per server: the model's logits, probabilities or labels,
an output of a wrong shape, a delay, a token it requires, TLS. It counts the records it
was asked about, independently of the worker's own count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import numpy as np
import paddle

from privaudit.oip import grpc_predict_v2_pb2 as oip
from privaudit.oip import grpc_predict_v2_pb2_grpc as oip_grpc

INPUT, OUTPUT = "input__0", "output__0"
Output = str  # "logits", "probabilities", "labels", "bad_shape"


@dataclass
class Served:
    """The one model a server serves and how it answers."""

    name: str
    layer: paddle.nn.Layer
    sample_shape: tuple[int, ...]
    num_classes: int
    output: Output = "logits"
    version: str = "1"
    delay_s: float = 0.0
    token: str | None = None
    typed_contents: bool = False  # answer in InferTensorContents rather than raw bytes
    listed: bool = True  # whether the metadata lists the input and output (KServe's custom models list none)
    records: int = 0  # records inferred so far
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Servicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, served: Served):
        self.served = served

    def ServerLive(self, request, context):
        return oip.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return oip.ServerReadyResponse(ready=True)

    def ServerMetadata(self, request, context):
        return oip.ServerMetadataResponse(name="privaudit-test-oip", version="2")

    def ModelReady(self, request, context):
        return oip.ModelReadyResponse(ready=self._known(request.name, request.version))

    def ModelMetadata(self, request, context):
        self._check(context, request.name, request.version)
        served = self.served
        if not served.listed:
            return oip.ModelMetadataResponse(name=served.name, versions=[served.version], platform="paddle")
        output = (oip.ModelMetadataResponse.TensorMetadata(name=OUTPUT, datatype="INT64", shape=[-1])
                  if served.output == "labels" else
                  oip.ModelMetadataResponse.TensorMetadata(name=OUTPUT, datatype="FP32",
                                                           shape=[-1, served.num_classes]))
        return oip.ModelMetadataResponse(
            name=served.name, versions=[served.version], platform="paddle",
            inputs=[oip.ModelMetadataResponse.TensorMetadata(name=INPUT, datatype="FP32",
                                                             shape=[-1, *served.sample_shape])],
            outputs=[output])

    def ModelInfer(self, request, context):
        served = self.served
        self._check(context, request.model_name, request.model_version)
        if len(request.inputs) != 1 or request.inputs[0].datatype != "FP32" or \
                (served.listed and request.inputs[0].name != INPUT):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected one FP32 input named {INPUT}")
        shape = tuple(request.inputs[0].shape)
        if shape[1:] != served.sample_shape or len(request.raw_input_contents) != 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"input shape {list(shape)}, expected "
                                                            f"[-1, {', '.join(map(str, served.sample_shape))}]")
        samples = np.frombuffer(request.raw_input_contents[0], dtype="<f4")
        if samples.size != int(np.prod(shape)):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "raw input size does not match its shape")
        if served.delay_s:
            time.sleep(served.delay_s)
        with served.lock, paddle.no_grad():
            served.layer.eval()
            logits = served.layer(paddle.to_tensor(samples.reshape(shape))).numpy().astype(np.float32)
            served.records += shape[0]
        values, datatype = _answer(served.output, logits)
        tensor = oip.ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype=datatype, shape=list(values.shape))
        response = oip.ModelInferResponse(model_name=served.name, model_version=served.version, id=request.id)
        if served.typed_contents:
            field_name = "fp32_contents" if datatype == "FP32" else "int64_contents"
            getattr(tensor.contents, field_name).extend(values.ravel().tolist())
        else:
            response.raw_output_contents.append(values.astype(values.dtype.newbyteorder("<")).tobytes())
        response.outputs.append(tensor)
        return response

    def _known(self, name: str, version: str) -> bool:
        return name == self.served.name and version in ("", self.served.version)

    def _check(self, context: grpc.ServicerContext, name: str, version: str) -> None:
        token = self.served.token
        if token is not None and (("authorization", f"Bearer {token}") not in context.invocation_metadata()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        if not self._known(name, version):
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {name!r} version {version!r} is not served here")


def _answer(output: Output, logits: np.ndarray) -> tuple[np.ndarray, str]:
    """What the server sends for a batch's logits, and its data type."""
    if output == "logits":
        return logits, "FP32"
    if output == "probabilities":
        return paddle.nn.functional.softmax(paddle.to_tensor(logits), axis=1).numpy(), "FP32"
    if output == "labels":
        return logits.argmax(axis=1).astype(np.int64), "INT64"
    if output == "bad_shape":  # one score per record: not [batch, classes]
        return logits[:, :1].reshape(-1, 1, 1), "FP32"
    raise ValueError(output)


@contextmanager
def serving(served: Served, credentials: grpc.ServerCredentials | None = None,
            interceptors: tuple[grpc.ServerInterceptor, ...] = ()) -> Iterator[str]:
    """Serves `served` on 127.0.0.1 (TLS with `credentials`) while inside; yields host:port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(_Servicer(served), server)
    address = "127.0.0.1:0"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
