"""Data plane: request validation, inference, response encoding and metrics. No HTTP framework here."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio.to_thread
import numpy as np
import numpy.typing as npt
import orjson

from scoring_service import __version__
from scoring_service.codecs import (
    binary_data,
    check_finite,
    coerce_array,
    decode_base64,
    decode_json_tensor,
    json_data,
)
from scoring_service.errors import BadRequest, ScoringError
from scoring_service.metrics import Metrics
from scoring_service.parsing import (
    NO_IMAGES,
    ImageDecoder,
    InferRequest,
    Limits,
    as_text,
    image_bytes,
    load_json,
    parse_infer,
)
from scoring_service.preprocess import images_to_tensor
from scoring_service.repository import ModelRepository, ServedModel
from scoring_service.runtime import OnnxModel
from scoring_service.settings import Settings

JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
EXTENSIONS = ["binary_tensor_data"]


@dataclass(frozen=True, slots=True)
class Reply:
    """What the routes turn into an HTTP response."""

    status: int
    body: bytes
    header_length: int | None = None  # set when the body carries binary tensors after the JSON header


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=JSON_OPTS)


class DataPlane:
    def __init__(self, settings: Settings, repository: ModelRepository, metrics: Metrics) -> None:
        self.settings = settings
        self.repo = repository
        self.metrics = metrics
        self._inline_max = settings.inline_max_elements
        self._limits = Limits(allow_non_finite=settings.allow_non_finite)
        # prometheus_client's labels() takes a lock and builds a key on every call; the label sets
        # here are few and bounded (loaded models x endpoints x codes), so resolve each once.
        self._request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._inference_children: dict[tuple[str, str], Any] = {}

    # -- health and metadata -----------------------------------------------------------------

    def live(self) -> Reply:
        return Reply(200, b'{"live":true}')

    def ready(self) -> Reply:
        ready = self.repo.ready
        body: dict[str, Any] = {"ready": ready}
        if not ready:
            body["reasons"] = self.repo.errors or ["models are loading"]
        return Reply(200 if ready else 503, dumps(body))

    def server_metadata(self) -> Reply:
        return Reply(
            200, dumps({"name": self.settings.server_name, "version": __version__, "extensions": EXTENSIONS})
        )

    def model_metadata(self, name: str, version: str | None) -> Reply:
        served = self.repo.get(name, version)
        served.require()
        return Reply(200, dumps(served.metadata))

    def model_ready(self, name: str, version: str | None) -> Reply:
        served = self.repo.get(name, version)
        body: dict[str, Any] = {"name": served.name, "version": served.version, "ready": served.ready}
        if not served.ready:
            body["reason"] = served.error
        return Reply(200 if served.ready else 503, dumps(body))

    def version(self) -> Reply:
        served = self.repo.default()
        return Reply(
            200,
            dumps(
                {
                    "app_version": __version__,
                    "model_name": served.name,
                    "model_version": served.version,
                    "models": [
                        {"name": m.name, "version": m.version, "ready": m.ready} for m in self.repo.all()
                    ],
                }
            ),
        )

    # -- inference ---------------------------------------------------------------------------

    async def infer(self, name: str, version: str | None, body: bytes, header_length: int | None) -> Reply:
        start = time.perf_counter()
        served: ServedModel | None = None
        try:
            served = self.repo.get(name, version)
            model = served.require()
            request = parse_infer(model, body, header_length, self._image_inputs(served), self._limits)
            results = await self._run(served, model, request.feeds, request.count, request.outputs)
            reply = self._infer_reply(served, request, results)
        except ScoringError as exc:
            self._observe(served, "infer", exc.status_code, start)
            raise
        self._observe(served, "infer", 200, start)
        return reply

    def _image_inputs(self, served: ServedModel) -> Mapping[str, ImageDecoder]:
        if served.image_input is None:
            return NO_IMAGES
        return {served.image_input: partial(self._images, served)}

    def _images(
        self, served: ServedModel, shape: list[int], data: Any, raw: memoryview | None, where: str
    ) -> npt.NDArray[Any]:
        assert served.preprocess is not None
        assert served.model is not None
        assert served.image_input is not None
        items = image_bytes(shape, data, raw, where)
        target = served.model.input_by_name[served.image_input]
        return images_to_tensor(items, served.preprocess, target, self.settings.max_image_pixels, where)

    async def _run(
        self,
        served: ServedModel,
        model: OnnxModel,
        feeds: dict[str, npt.NDArray[Any]],
        count: int,
        outputs: list[str],
    ) -> list[npt.NDArray[Any]]:
        start = time.perf_counter()
        if count <= self._inline_max:
            results = model.run(feeds, outputs)
        else:
            results = await anyio.to_thread.run_sync(model.run, feeds, outputs)
        elapsed = time.perf_counter() - start
        key = (served.name, served.version)
        child = self._inference_children.get(key)
        if child is None:
            child = self._inference_children[key] = self.metrics.inference_latency.labels(*key)
        child.observe(elapsed)
        return results

    def _infer_reply(
        self, served: ServedModel, request: InferRequest, results: list[npt.NDArray[Any]]
    ) -> Reply:
        model = served.model
        assert model is not None
        out: list[dict[str, Any]] = []
        chunks: list[bytes] = []
        for out_name, arr in zip(request.outputs, results, strict=True):
            tensor: dict[str, Any] = {
                "name": out_name,
                "datatype": model.output_by_name[out_name].datatype,
                "shape": list(arr.shape),
            }
            if out_name in request.binary_outputs:
                chunk = binary_data(arr)
                tensor["parameters"] = {"binary_data_size": len(chunk)}
                chunks.append(chunk)
            else:
                tensor["data"] = json_data(arr)
            out.append(tensor)
        response: dict[str, Any] = {
            "model_name": served.name,
            "model_version": served.version,
            "outputs": out,
        }
        if request.request_id is not None:
            response["id"] = request.request_id
        header = dumps(response)
        if not chunks:
            return Reply(200, header)
        return Reply(200, b"".join([header, *chunks]), header_length=len(header))

    # -- the seeds' API ----------------------------------------------------------------------

    async def score(self, body: bytes) -> Reply:
        start = time.perf_counter()
        served: ServedModel | None = None
        try:
            served = self.repo.default()
            model = served.require()
            request = load_json(body)
            if type(request) is not dict or not ("data" in request or "input" in request):
                raise BadRequest('request must be {"data": [[...]]} or {"input": ...}')
            payload = request["data"] if "data" in request else request["input"]
            top_k = request.get("top_k", self.settings.top_k)
            if type(top_k) is not int or top_k < 1:
                raise BadRequest("'top_k' must be a positive integer")
            if len(model.inputs) != 1:
                raise BadRequest(f"/score needs a single-input model; use /v2/models/{served.name}/infer")
            feeds = {model.inputs[0].name: self._score_input(served, model, payload)}
            outputs = [served.proba_output] if served.proba_output else [model.output_names[0]]
            count = next(iter(feeds.values())).size
            (result,) = await self._run(served, model, feeds, count, outputs)
            reply = Reply(200, dumps({"result": self._score_result(served, result, top_k)}))
        except ScoringError as exc:
            self._observe(served, "score", exc.status_code, start)
            raise
        self._observe(served, "score", 200, start)
        return reply

    def _score_input(self, served: ServedModel, model: OnnxModel, payload: Any) -> npt.NDArray[Any]:
        spec = model.inputs[0]
        if served.image_input == spec.name and _is_images(payload):
            images = [payload] if isinstance(payload, str) else payload
            decoded = [decode_base64(t, f"input[{i}]") for i, t in enumerate(images)]
            assert served.preprocess is not None
            return images_to_tensor(decoded, served.preprocess, spec, self.settings.max_image_pixels, "input")
        if spec.datatype == "BYTES":
            arr = decode_json_tensor(
                "BYTES", [len(payload)] if isinstance(payload, list) else [1], payload, "data"
            )
            arr = as_text(arr, "data")
        else:
            arr = coerce_array(spec.datatype, payload, "data")
            if arr.dtype.kind == "f" and not self._limits.allow_non_finite:
                check_finite(arr, "data")
        if arr.ndim == len(spec.shape) - 1:
            arr = arr[None, ...]  # one sample without the batch dimension
        if not spec.accepts_shape(arr.shape):
            raise BadRequest(f"data has shape {list(arr.shape)}; the model expects {list(spec.shape)}")
        return arr

    @staticmethod
    def _score_result(served: ServedModel, result: npt.NDArray[Any], top_k: int) -> Any:
        if served.labels is not None:
            labels = served.labels
            k = min(top_k, len(labels))
            rows = result.reshape(result.shape[0], -1)
            order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
            return [
                [{"label": labels[j], "probability": float(row[j])} for j in idx]
                for row, idx in zip(rows, order, strict=True)
            ]
        if result.ndim == 2 and result.shape[1] == 1:
            result = result[:, 0]  # regressors: one number per row, as the seed returned
        if result.dtype.kind == "O":
            return json_data(result)
        return result.tolist()

    # -- metrics -----------------------------------------------------------------------------

    def _observe(self, served: ServedModel | None, endpoint: str, code: int, start: float) -> None:
        name, version = (served.name, served.version) if served else ("", "")
        key = (name, version, endpoint, code)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.metrics.requests.labels(name, version, endpoint, str(code)),
                self.metrics.request_latency.labels(name, version, endpoint),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - start)


def _is_images(payload: Any) -> bool:
    return isinstance(payload, str) or (
        isinstance(payload, list) and bool(payload) and all(isinstance(p, str) for p in payload)
    )
