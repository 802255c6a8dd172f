"""Data plane: request validation, inference, response encoding and metrics. No HTTP framework here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from scoring_service import __version__
from scoring_service.codecs import (
    binary_data,
    check_finite,
    coerce_array,
    decode_json_tensor,
    json_data,
)
from scoring_service.errors import BadRequest, InferenceFailed, Overloaded, ScoringError
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
    score_image_bytes,
)
from scoring_service.preprocess import ImageLimits, images_to_tensor, open_images, pixels
from scoring_service.repository import ModelRepository, ServedModel
from scoring_service.runtime import OnnxModel
from scoring_service.settings import Settings

JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
EXTENSIONS = ["binary_tensor_data"]
SEED_TOP_K = 3  # labels per image in the cat-species seed's `/score` answer
T = TypeVar("T")
Results = list[npt.NDArray[Any]]


class Prepared(Protocol):
    """A request parsed and checked, ready for the model."""

    feeds: dict[str, npt.NDArray[Any]]
    count: int
    outputs: list[str]


P = TypeVar("P", bound=Prepared)
R = TypeVar("R")


@dataclass(slots=True)
class ScoreRequest:
    """A `/score` request, checked against the default model."""

    feeds: dict[str, npt.NDArray[Any]]
    count: int
    outputs: list[str]
    top_k: int


class _OffTheLoop(Exception):
    """Raised by an image decoder running on the event loop: these images are for a worker thread."""


# HTTP header names, spelled once.
HEADER_LENGTH = "Inference-Header-Content-Length"  # OIP binary extension: the JSON header's length
SHADOW_HEADER = "X-Modelapp-Shadow"  # on a mirrored request: answer with Server-Timing
SERVER_TIMING = "Server-Timing"  # the scorer's own time for the request (body received → response built)


# Not frozen: a frozen dataclass sets each field through object.__setattr__, for nothing on the hot
# path (a Reply is never changed once built: `dataclasses.replace` makes another).
@dataclass(slots=True)
class Reply:
    """What the routes turn into an HTTP response."""

    status: int
    body: bytes
    header_length: int | None = None  # set when the body carries binary tensors after the JSON header
    server_seconds: float | None = None  # sent as Server-Timing (a mirrored request asks for it)

    def server_timing(self) -> str | None:
        """``infer;dur=<ms>`` (the W3C Server-Timing syntax), when the request asked for it."""
        return None if self.server_seconds is None else f"infer;dur={self.server_seconds * 1000:.4f}"


Mirror = Callable[[str, str | None, bytes, str | None, int | None, Reply, float], None]
"""`shadow.Shadow.offer`: takes (name, version, body, content type, header length, reply, serving
seconds) of each infer request answered 2xx while shadow mirroring is on."""


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=JSON_OPTS)


class DataPlane:
    def __init__(self, settings: Settings, repository: ModelRepository, metrics: Metrics) -> None:
        self.settings = settings
        self.repo = repository
        self.metrics = metrics
        self._inline_max = settings.inline_max_elements
        self._inline_max_bytes = settings.inline_max_bytes
        self.body_limit = settings.max_request_bytes
        self.json_body_limit = min(settings.max_request_bytes, settings.max_json_bytes)
        """Bodies without binary tensor data are all JSON, held to the JSON budget as they are read."""
        self.limits = Limits(
            allow_non_finite=settings.allow_non_finite, max_json_bytes=settings.max_json_bytes
        )
        self._image_limits = ImageLimits(
            settings.max_images, settings.max_image_pixels, settings.max_request_pixels
        )
        self._seed_response = settings.score_response == "seed"
        self._pool = ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="scoring-worker")
        # prometheus_client's labels() takes a lock and builds a key on every call; the label sets
        # here are few and bounded (loaded models x endpoints x codes), so resolve each once.
        self._request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._inference_children: dict[tuple[str, str], Any] = {}
        self.busy = 0
        """Inference requests in progress, over every transport (REST and gRPC)."""
        self.max_busy = settings.max_concurrent_requests
        self.mirror: Mirror | None = None
        """Set while shadow mirroring is on; the routes hand it each infer request answered 2xx."""

    # -- health and metadata -----------------------------------------------------------------

    def live(self) -> Reply:
        return Reply(200, b'{"live":true}')

    def ready(self) -> Reply:
        ready = self.repo.ready
        body: dict[str, Any] = {"ready": ready}
        if not ready:
            body["reasons"] = self.repo.errors or ["models are loading"]
        return Reply(200 if ready else 503, dumps(body))

    def overloaded(self) -> Overloaded:
        """The error for one inference request more than `max_busy` (the caller checks `busy`)."""
        return Overloaded(f"server busy: {self.busy} inference requests in progress; retry later")

    def server_info(self) -> dict[str, Any]:
        return {"name": self.settings.server_name, "version": __version__, "extensions": EXTENSIONS}

    def server_metadata(self) -> Reply:
        return Reply(200, dumps(self.server_info()))

    def model_info(self, name: str, version: str | None) -> dict[str, Any]:
        served = self.repo.get(name, version)
        served.require()
        return served.metadata

    def model_metadata(self, name: str, version: str | None) -> Reply:
        return Reply(200, dumps(self.model_info(name, version)))

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

    # -- off the event loop ------------------------------------------------------------------

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` in the worker pool: bounded, so heavy requests queue instead of piling up."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self.repo.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- inference ---------------------------------------------------------------------------

    async def execute(
        self,
        endpoint: str,
        find: Callable[[], ServedModel],
        size: int,
        parse: Callable[[ServedModel, OnnxModel, bool], P],
        respond: Callable[[ServedModel, P, Results], R],
    ) -> R:
        """One inference request of any transport (REST infer, /score, gRPC): find the model, parse
        (`parse(served, model, inline)`, on the loop when `size` is small), run, `respond`; count it
        under `endpoint` with the HTTP status it maps to."""
        start = time.perf_counter()
        served: ServedModel | None = None
        try:
            served = find()
            model = served.model or served.require()  # require() raises: the model is not loaded
            request: P | None = None
            if size <= self._inline_max_bytes:  # small bodies parse faster than a thread hand-off
                try:  # noqa: SIM105 (contextlib.suppress costs ~0.4 us on the hot path)
                    request = parse(served, model, True)
                except _OffTheLoop:
                    pass
            if request is None:
                done: tuple[P, Results] = await self.offload(
                    self._prepare_and_run, served, model, partial(parse, served, model)
                )
                request, results = done
            elif served.batcher is None and request.count <= self._inline_max:
                results = self._run_here(served, model, request.feeds, request.outputs)
            else:
                results = await self._run(served, model, request.feeds, request.outputs)
            response = respond(served, request, results)
        except ScoringError as exc:
            self._observe(served, endpoint, exc.status_code, start)
            if isinstance(exc, InferenceFailed) and served is not None:
                self.metrics.inference_failures.labels(served.name, served.version).inc()
            raise
        self._observe(served, endpoint, 200, start)
        return response

    def infer(
        self, name: str, version: str | None, body: bytes, header_length: int | None
    ) -> Coroutine[Any, Any, Reply]:
        """REST infer, to be awaited (`execute`'s coroutine itself: one frame less per request)."""
        return self.execute(
            "infer",
            partial(self.repo.get, name, version),
            len(body),
            partial(self._parse, body, header_length),
            self._infer_reply,
        )

    def _parse(
        self, body: bytes, header_length: int | None, served: ServedModel, model: OnnxModel, inline: bool
    ) -> InferRequest:
        """The checked request. On the event loop (`inline`), large images raise `_OffTheLoop`."""
        images = NO_IMAGES if served.image_input is None else self.image_inputs(served, inline)
        return parse_infer(model, body, header_length, images, self.limits)

    def _prepare_and_run(
        self, served: ServedModel, model: OnnxModel, prepare: Callable[[bool], P]
    ) -> tuple[P, Results]:
        """In a worker thread: parse (`prepare(inline=False)`) and run, one hand-off for both."""
        request = prepare(False)
        if served.batcher is not None:  # it records the inference time, once per batch
            return request, served.batcher.run(request.feeds, request.outputs)
        return request, self._run_here(served, model, request.feeds, request.outputs)

    def image_inputs(self, served: ServedModel, inline: bool) -> Mapping[str, ImageDecoder]:
        if served.image_input is None:
            return NO_IMAGES
        return {served.image_input: partial(self._images, served, inline)}

    def _images(
        self,
        served: ServedModel,
        inline: bool,
        shape: list[int],
        data: Any,
        raw: memoryview | None,
        where: str,
    ) -> npt.NDArray[Any]:
        assert served.preprocess is not None
        assert served.model is not None
        assert served.image_input is not None
        images = open_images(image_bytes(shape, data, raw, where), self._image_limits, where)
        if inline and pixels(images) > self._inline_max:
            raise _OffTheLoop
        target = served.model.input_by_name[served.image_input]
        return images_to_tensor(images, served.preprocess, target, where)

    def _run_here(
        self, served: ServedModel, model: OnnxModel, feeds: dict[str, npt.NDArray[Any]], outputs: list[str]
    ) -> Results:
        """Run in this thread (the event loop for small inputs, else a worker) and record the time."""
        start = time.perf_counter()
        results = model.run(feeds, outputs)
        self._observe_inference(served, time.perf_counter() - start)
        return results

    async def _run(
        self, served: ServedModel, model: OnnxModel, feeds: dict[str, npt.NDArray[Any]], outputs: list[str]
    ) -> Results:
        """A parsed request too large to run on the event loop, or one for the model's batcher."""
        if served.batcher is not None:  # it records the inference time, once per batch
            return await served.batcher.run_async(feeds, outputs)
        start = time.perf_counter()
        results = await self.offload(model.run, feeds, outputs)
        self._observe_inference(served, time.perf_counter() - start)
        return results

    def _observe_inference(self, served: ServedModel, elapsed: float) -> None:
        key = (served.name, served.version)
        child = self._inference_children.get(key)
        if child is None:
            child = self._inference_children[key] = self.metrics.inference_latency.labels(*key)
        child.observe(elapsed)

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
                "shape": arr.shape,  # orjson writes a tuple as a JSON array
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
        header = orjson.dumps(response, option=JSON_OPTS)
        if not chunks:
            return Reply(200, header)
        return Reply(200, b"".join([header, *chunks]), header_length=len(header))

    # -- the seeds' API ----------------------------------------------------------------------

    async def score(self, body: bytes) -> Reply:
        reply = partial(self._score_reply, time.perf_counter())
        return await self.execute(
            "score", self.repo.default, len(body), partial(self._score_parse, body), reply
        )

    def _score_parse(self, body: bytes, served: ServedModel, model: OnnxModel, inline: bool) -> ScoreRequest:
        """The checked request. On the event loop (`inline`), large images raise `_OffTheLoop`."""
        request = load_json(body, self.limits.max_json_bytes)
        if type(request) is not dict or not ("data" in request or "input" in request):
            raise BadRequest('request must be {"data": [[...]]} or {"input": ...}')
        payload = request["data"] if "data" in request else request["input"]
        top_k = request.get("top_k", SEED_TOP_K if self._seed_response else self.settings.top_k)
        if type(top_k) is not int or top_k < 1:
            raise BadRequest("'top_k' must be a positive integer")
        if len(model.inputs) != 1:
            raise BadRequest(f"/score needs a single-input model; use /v2/models/{served.name}/infer")
        arr = self._score_input(served, model, payload, inline)
        outputs = [served.proba_output] if served.proba_output else [model.output_names[0]]
        return ScoreRequest({model.inputs[0].name: arr}, arr.size, outputs, top_k)

    def _score_input(
        self, served: ServedModel, model: OnnxModel, payload: Any, inline: bool
    ) -> npt.NDArray[Any]:
        spec = model.inputs[0]
        if served.image_input == spec.name and _is_images(payload):
            encoded = score_image_bytes(payload, self._image_limits.max_images)
            images = open_images(encoded, self._image_limits, "input")
            if inline and pixels(images) > self._inline_max:
                raise _OffTheLoop
            assert served.preprocess is not None
            return images_to_tensor(images, served.preprocess, spec, "input")
        if spec.datatype == "BYTES":
            arr = decode_json_tensor(
                "BYTES", [len(payload)] if isinstance(payload, list) else [1], payload, "data"
            )
            arr = as_text(arr, "data")
        else:
            arr = coerce_array(spec.datatype, payload, "data")
            if arr.dtype.kind == "f" and not self.limits.allow_non_finite:
                check_finite(arr, "data")
        if arr.ndim == len(spec.shape) - 1:
            arr = arr[None, ...]  # one sample without the batch dimension
        if not spec.accepts_shape(arr.shape):
            raise BadRequest(f"data has shape {list(arr.shape)}; the model expects {list(spec.shape)}")
        return arr

    def _score_reply(
        self, start: float, served: ServedModel, request: ScoreRequest, results: Results
    ) -> Reply:
        result, top_k = results[0], request.top_k
        labels = served.labels
        if labels is None:
            return Reply(200, dumps({"result": self._score_result(result)}))
        ranked = top_labels(result, labels, top_k)
        if not self._seed_response:
            per_image = [[{"label": label, "probability": p} for label, p in row] for row in ranked]
            return Reply(200, dumps({"result": per_image}))
        # The cat-species seed's shape: [label, percent] pairs, then how long the request took.
        pairs = [[[label, p * 100] for label, p in row] for row in ranked]
        took = (time.perf_counter() - start) * 1000
        return Reply(200, dumps({"result": [pairs, f"Computed in {took:.2f} ms"]}))

    @staticmethod
    def _score_result(result: npt.NDArray[Any]) -> Any:
        """The answer of a model without labels: its first output as a list."""
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


def top_labels(result: npt.NDArray[Any], labels: list[str], top_k: int) -> list[list[tuple[str, float]]]:
    """Per row of a classifier's probabilities, its `top_k` (label, probability), most likely first."""
    rows = result.reshape(result.shape[0], -1)
    order = np.argsort(-rows, axis=1, kind="stable")[:, : min(top_k, len(labels))]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(rows, order, strict=True)]


def _is_images(payload: Any) -> bool:
    return isinstance(payload, str) or (
        isinstance(payload, list) and bool(payload) and all(isinstance(p, str) for p in payload)
    )
