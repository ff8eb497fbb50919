"""A KServe model server (the `kserve` package's own ModelServer, gRPC on) for the interoperability test.

Runs under a separate virtualenv (build/kserve-venv: KServe needs protobuf < 7, privaudit >= 7.35),
started by tests/test_kserve_interop.py. It serves model `net`: worker_fixtures' identity model,
whose logits are a sample's 4 values, so the worker's results through it have known answers.
Environment: OIP_GRPC_PORT, OIP_HTTP_PORT, OIP_OUTPUT (logits or labels), OIP_METADATA (1: the
model lists its input and output in its metadata; else none, as KServe's custom models do).
"""

import os

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class Identity(Model):
    def __init__(self) -> None:
        super().__init__("net")
        self.labels = os.environ.get("OIP_OUTPUT") == "labels"
        self.ready = True

    def get_input_types(self) -> list[dict]:
        return [{"name": "x", "datatype": "FP32", "shape": [-1, 2, 2]}] if os.environ.get("OIP_METADATA") == "1" \
            else []

    def get_output_types(self) -> list[dict]:
        if os.environ.get("OIP_METADATA") != "1":
            return []
        return [{"name": "y", "datatype": "INT64", "shape": [-1]} if self.labels else
                {"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        samples = payload.inputs[0].as_numpy()
        logits = samples.reshape(len(samples), -1).astype(np.float32)
        values = logits.argmax(axis=1).astype(np.int64) if self.labels else logits
        output = InferOutput(name="y", shape=list(values.shape), datatype="INT64" if self.labels else "FP32")
        output.set_data_from_numpy(values, binary_data=True)
        return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=[output])


if __name__ == "__main__":
    ModelServer(grpc_port=int(os.environ["OIP_GRPC_PORT"]), http_port=int(os.environ["OIP_HTTP_PORT"]),
                workers=1).start([Identity()])
