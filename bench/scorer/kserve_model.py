"""KServe's ModelServer with a custom `kserve.Model` on onnxruntime: the KServe peer of bench/scorer/run.py.

Runs in its own venv (bench/.work/kserve-venv: kserve and onnxruntime, pinned in run.py), never in the
project's:

    python bench/scorer/kserve_model.py --model_path model.onnx --model_name diabetes --http_port 8080

It serves the same ONNX file as our scorer at `/v2/models/<name>/infer` (Open Inference Protocol), with
ModelServer's best settings for one core: one uvicorn worker, no gRPC server, no per-request latency
log line, no access log. kserve reads its own flags (`--http_port`, `--workers`, ...) from the command
line when it is imported; the ones here are read with parse_known_args beside them.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import kserve
import numpy as np
import onnxruntime as ort
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid


class OnnxModel(kserve.Model):  # type: ignore[misc]  # kserve is not in the project's venv
    """One ONNX file, every input from the request, every output back as JSON data."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: ort.InferenceSession | None = None
        self.output_names: list[str] = []
        self.load()

    def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one core: no thread pool to wake per run
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return True

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        assert self.session is not None
        feeds: dict[str, Any] = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        results = self.session.run(self.output_names, feeds)
        outputs = []
        for name, value in zip(self.output_names, results, strict=True):
            array = np.asarray(value)
            output = InferOutput(name=name, shape=list(array.shape), datatype=_datatype(array))
            output.set_data_from_numpy(array, binary_data=False)
            outputs.append(output)
        # As kserve's own servers do: a request without an id gets a new one (the answer must have one).
        response_id = payload.id or generate_uuid()
        return InferResponse(response_id=response_id, model_name=self.name, infer_outputs=outputs)


def _datatype(array: np.ndarray[Any, Any]) -> str:
    return {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32"}[array.dtype.name]


def main() -> None:
    parser = argparse.ArgumentParser()  # kserve's own parser has --model_name too: both read it
    parser.add_argument("--model_name", default="diabetes")
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    model = OnnxModel(args.model_name, args.model_path)
    server = kserve.ModelServer(workers=1, enable_grpc=False, enable_latency_logging=False)
    # ModelServer has configured logging by now. uvicorn writes an access line only when its access
    # logger has a handler: take them away; and warnings only, like our scorer in the benchmark (its
    # timing middleware logs two lines per request at info on "kserve.trace").
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
