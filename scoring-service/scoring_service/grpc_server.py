"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`) on REST's data plane, and the
standard health service (grpc.health.v1) for Kubernetes' gRPC probes. RPCs only: the data plane checks,
counts and runs; grpc_codecs.py converts.

grpcio's thread-pool server, not `grpc.aio`: each RPC is a coroutine run on the app's event loop
(REST's, where the data plane lives) from one of the server's threads. grpc.aio hands every
completion-queue event (four or more per call) from its poller thread to the loop: ~19 context
switches and ~230 us of CPU per call before any of ours on one core, against ~10 and ~150 us for the
thread-pool server and its single hand-off (bench/scorer/README.md, "gRPC vs REST").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from scoring_service.errors import ScoringError
from scoring_service.grpc_codecs import (
    infer_response,
    model_metadata,
    parse_grpc_infer,
    payload_size,
    server_metadata,
    split_infer_request,
)
from scoring_service.parsing import InferRequest
from scoring_service.proto import grpc_predict_v2_pb2 as pb
from scoring_service.repository import ServedModel
from scoring_service.runtime import OnnxModel
from scoring_service.service import DataPlane, Results
from scoring_service.settings import Settings

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
ENDPOINT = "grpc_infer"
"""The `endpoint` label of ModelInfer in the request metrics (REST's is `infer`)."""

# The data plane's errors carry an HTTP status; this is the one mapping to gRPC. The metrics keep the
# HTTP status as their `code` label, so a gRPC error counts as the REST request would have.
GRPC_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}

Rpc = Callable[[Any], Coroutine[Any, Any, Any]]

SPARE_THREADS = 4
"""Server threads beyond `max_concurrent_requests`: calls above the limit reach the data plane's check
(UNAVAILABLE, as REST's 503) instead of queueing, and health checks still find a thread."""


def grpc_status(http_status: int) -> grpc.StatusCode:
    """The gRPC status for a data plane error's HTTP status (an unknown 4xx is the client's, 5xx ours)."""
    status = GRPC_STATUS.get(http_status)
    if status is not None:
        return status
    return grpc.StatusCode.INTERNAL if http_status >= 500 else grpc.StatusCode.INVALID_ARGUMENT


class InferenceServicer:
    """The protocol's six RPCs, run on the event loop; each answers what its REST route answers, or
    raises its ScoringError."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def ServerLive(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.repo.ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        return server_metadata(self.plane.server_info())

    async def ModelReady(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.repo.get(request.name, request.version or None).ready)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        return model_metadata(self.plane.model_info(request.name, request.version or None))

    async def ModelInfer(self, data: bytes) -> bytes:
        """A serialized ModelInferRequest in, a serialized ModelInferResponse out (see grpc_codecs)."""
        plane = self.plane
        if plane.busy >= plane.max_busy:
            raise plane.overloaded()
        plane.busy += 1
        try:
            return await self._infer(data)
        finally:
            plane.busy -= 1

    def _infer(self, data: bytes) -> Awaitable[bytes]:
        plane = self.plane
        request, raw = split_infer_request(data)

        def parse(served: ServedModel, model: OnnxModel, inline: bool) -> InferRequest:
            return parse_grpc_infer(model, request, plane.image_inputs(served, inline), plane.limits, raw)

        def respond(served: ServedModel, checked: InferRequest, results: Results) -> bytes:
            assert served.model is not None
            return infer_response(served.name, served.version, served.model, checked, results)

        find = partial(plane.repo.get, request.model_name, request.model_version or None)
        return plane.execute(ENDPOINT, find, payload_size(request, raw), parse, respond)


def on_loop(loop: asyncio.AbstractEventLoop, rpc: Rpc) -> Callable[[Any, grpc.ServicerContext], Any]:
    """A server thread's handler that runs `rpc(request)` on `loop` and answers its result, or its
    error as a gRPC status with REST's message (never UNKNOWN)."""

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(rpc(request), loop).result()
        except ScoringError as exc:
            code, message = grpc_status(exc.status_code), exc.message
        except Exception:
            log.exception("unhandled error in a gRPC call")
            code, message = grpc.StatusCode.INTERNAL, "internal error"
        return context.abort(code, message)  # raises

    return handler


def inference_handler(servicer: InferenceServicer, loop: asyncio.AbstractEventLoop) -> grpc.GenericRpcHandler:
    s = servicer

    def unary(rpc: Rpc, request: type[Message], response: type[Message]) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            on_loop(loop, rpc),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ServerLive": unary(s.ServerLive, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": unary(s.ServerReady, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": unary(s.ModelReady, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": unary(s.ServerMetadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            "ModelMetadata": unary(s.ModelMetadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            # bytes in and out: grpc_codecs reads and writes the raw tensor bytes around protobuf
            "ModelInfer": grpc.unary_unary_rpc_method_handler(on_loop(loop, s.ModelInfer)),
        },
    )


class GrpcServer:
    """The gRPC server, started from the app's lifespan (uvicorn's loop, where its RPCs run) once the
    models are loaded, stopped before the data plane closes."""

    def __init__(self, settings: Settings, plane: DataPlane) -> None:
        self.settings = settings
        self.plane = plane
        self.health = health.HealthServicer()
        self.server: grpc.Server | None = None
        self.pool: ThreadPoolExecutor | None = None

    def options(self) -> list[tuple[str, Any]]:
        return [
            # REST's body limit; a larger message is refused by gRPC itself with RESOURCE_EXHAUSTED.
            ("grpc.max_receive_message_length", self.settings.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            # Worker processes share the port as they share uvicorn's; one process alone must not
            # silently share it with another server.
            ("grpc.so_reuseport", 1 if self.settings.workers > 1 else 0),
        ]

    async def start(self) -> None:
        threads = self.settings.max_concurrent_requests + SPARE_THREADS
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="grpc")
        # Past `threads` calls in progress, gRPC itself answers RESOURCE_EXHAUSTED: nothing queues.
        server = grpc.server(self.pool, options=self.options(), maximum_concurrent_rpcs=threads)
        loop = asyncio.get_running_loop()
        server.add_generic_rpc_handlers((inference_handler(InferenceServicer(self.plane), loop),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        host, port = self.settings.host, self.settings.grpc_port
        server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        server.start()
        self.server = server
        status = health_pb2.HealthCheckResponse.SERVING
        if not self.plane.repo.ready:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE):  # the server as a whole, and the inference service by name
            self.health.set(service, status)
        log.info("gRPC (%s, grpc.health.v1) on %s:%d", SERVICE, host, port)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING for probes first, then `grace` seconds for calls in progress (the loop keeps
        running them meanwhile)."""
        if self.server is None or self.pool is None:
            return
        self.health.enter_graceful_shutdown()
        stopped = self.server.stop(grace)
        await asyncio.get_running_loop().run_in_executor(None, stopped.wait)
        self.pool.shutdown(wait=False)
