"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`) on REST's data plane, and the
standard health service (grpc.health.v1) for Kubernetes' gRPC probes. RPCs only: the data plane checks,
counts and runs; grpc_codecs.py converts."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

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

Context = grpc.aio.ServicerContext[Any, Any]
M = TypeVar("M", bound=Message | bytes)


def grpc_status(http_status: int) -> grpc.StatusCode:
    """The gRPC status for a data plane error's HTTP status (an unknown 4xx is the client's, 5xx ours)."""
    status = GRPC_STATUS.get(http_status)
    if status is not None:
        return status
    return grpc.StatusCode.INTERNAL if http_status >= 500 else grpc.StatusCode.INVALID_ARGUMENT


class InferenceServicer:
    """The protocol's six RPCs; each answers what its REST route answers."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.repo.ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return server_metadata(self.plane.server_info())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        find = partial(self.plane.repo.get, request.name, request.version or None)
        return await answer(context, lambda: pb.ModelReadyResponse(ready=find().ready))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        info = partial(self.plane.model_info, request.name, request.version or None)
        return await answer(context, lambda: model_metadata(info()))

    async def ModelInfer(self, data: bytes, context: Context) -> bytes:
        """A serialized ModelInferRequest in, a serialized ModelInferResponse out (see grpc_codecs)."""
        plane = self.plane
        if plane.busy >= plane.max_busy:
            error = plane.overloaded()
            await context.abort(grpc_status(error.status_code), error.message)
        plane.busy += 1
        try:
            return await answer(context, partial(self._infer, data))
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


async def answer(context: Context, call: Callable[[], M | Awaitable[M]]) -> M:
    """`call()`'s message, or its error as a gRPC status with REST's message (never UNKNOWN)."""
    try:
        result = call()
        return result if isinstance(result, (Message, bytes)) else await result
    except ScoringError as exc:
        code, message = grpc_status(exc.status_code), exc.message
    except Exception:
        log.exception("unhandled error in a gRPC call")
        code, message = grpc.StatusCode.INTERNAL, "internal error"
    await context.abort(code, message)
    raise AssertionError("context.abort raises")  # pragma: no cover


def _unary(
    fn: Callable[..., Any], request: type[Message], response: type[Message]
) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request.FromString, response_serializer=response.SerializeToString
    )


def inference_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    s = servicer
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ServerLive": _unary(s.ServerLive, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": _unary(s.ServerReady, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": _unary(s.ModelReady, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": _unary(s.ServerMetadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            "ModelMetadata": _unary(s.ModelMetadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            # bytes in and out: grpc_codecs reads and writes the raw tensor bytes around protobuf
            "ModelInfer": grpc.unary_unary_rpc_method_handler(s.ModelInfer),
        },
    )


class GrpcServer:
    """The gRPC server, in the event loop of the app's lifespan (uvicorn's): started once the models
    are loaded, stopped before the data plane closes."""

    def __init__(self, settings: Settings, plane: DataPlane) -> None:
        self.settings = settings
        self.plane = plane
        self.health: Any = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None

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
        server = grpc.aio.server(options=self.options())
        server.add_generic_rpc_handlers((inference_handler(InferenceServicer(self.plane)),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        host, port = self.settings.host, self.settings.grpc_port
        server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        await server.start()
        self.server = server
        status = health_pb2.HealthCheckResponse.SERVING
        if not self.plane.repo.ready:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE):  # the server as a whole, and the inference service by name
            await self.health.set(service, status)
        log.info("gRPC (%s, grpc.health.v1) on %s:%d", SERVICE, host, port)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING for probes first, then `grace` seconds for calls in progress."""
        if self.server is None:
            return
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
