"""`create_app(settings)`: wires settings, metrics, the model repository and the routes."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from scoring_service import __version__
from scoring_service.errors import ScoringError
from scoring_service.grpc_server import GrpcServer
from scoring_service.metrics import CONTENT_TYPE, Metrics
from scoring_service.repository import ModelRepository
from scoring_service.routes import fast_infer, infer_target, router
from scoring_service.service import DataPlane
from scoring_service.settings import Settings, get_settings
from scoring_service.shadow import Shadow

log = logging.getLogger(__name__)

GRPC_GRACE_SECONDS = 10.0
"""Seconds gRPC calls in progress get at shutdown (uvicorn has given REST ones theirs by then)."""


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status, media_type="application/json")


async def _scoring_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScoringError)
    return _error(exc.status_code, exc.message)


async def _http_error(_: Request, exc: Exception) -> Response:
    # Unknown routes (404) and wrong methods (405) keep the protocol's {"error": ...} shape.
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, str(exc.detail))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _error(400, "; ".join(str(e.get("msg", e)) for e in exc.errors()))


async def _client_gone(_: Request, exc: Exception) -> Response:
    # The client left, or its body missed the deadline (the protocol already answered 408): this
    # response is never sent. Without this handler each one would be logged as an unhandled error.
    return Response(status_code=499)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, "internal error")


class ScoringApp(FastAPI):
    """FastAPI, with POST .../infer answered before FastAPI's per-request work (see `fast_infer`).

    Requests that came in on the operations port go to `ops` instead (one uvicorn server listens on
    both sockets, so that `--workers` shares them as it shares the serving socket). POST requests
    (inference) beyond the data plane's `max_busy` in progress, gRPC ones included, get an immediate
    503: a flood queues nowhere, and health, metadata and the operations port are never turned away.
    """

    ops: ASGIApp | None = None
    ops_port: int = -1
    plane: DataPlane
    proxy: Callable[..., Awaitable[None]] | None = None
    """uvicorn's X-Forwarded-* middleware, which calls this app back (see `server.ScorerConfig.load`):
    run for the requests that carry those headers only, as it changes nothing in the others."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.proxy is not None and scope["type"] != "lifespan" and PROXIED not in scope:
            for name, _ in scope["headers"]:
                if name == b"x-forwarded-for" or name == b"x-forwarded-proto":
                    scope[PROXIED] = True
                    await self.proxy(scope, receive, send)
                    return
        if scope["type"] == "http":
            server = scope.get("server")
            if server is not None and server[1] == self.ops_port:
                assert self.ops is not None
                await self.ops(scope, receive, send)
                return
            if scope["method"] == "POST":
                plane = self.plane
                if plane.busy >= plane.max_busy:
                    await _send_json(send, 503, orjson.dumps({"error": plane.overloaded().message}), RETRY)
                    return
                plane.busy += 1
                try:
                    target = infer_target(scope["path"])
                    if target is None:
                        await super().__call__(scope, receive, send)
                        return
                    try:
                        await fast_infer(plane, scope, receive, send, *target)
                    except Exception:
                        # Outside FastAPI's error middleware: keep its contract (log, 500, JSON body).
                        log.exception("unhandled error on POST %s", scope["path"])
                        await _send_json(send, 500, b'{"error":"internal error"}')
                finally:
                    plane.busy -= 1
                return
        await super().__call__(scope, receive, send)


RETRY = [(b"retry-after", b"1")]
PROXIED = "modelapp.proxied"
"""Scope key of a request that went through the X-Forwarded-* middleware (it comes back to the app)."""


async def _send_json(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # response already started: nothing more can be said to this client
        log.debug("could not send the %d response", status, exc_info=True)


def create_ops_app(serving: FastAPI, metrics: Metrics) -> Starlette:
    """/metrics, and the serving app's OpenAPI document and Swagger UI, for the operations port."""

    async def render_metrics(_: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(_: Request) -> Response:
        return JSONResponse(serving.openapi())

    async def docs(_: Request) -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{serving.title} - docs")

    routes = [Route("/metrics", render_metrics), Route("/openapi.json", openapi), Route("/docs", docs)]
    return Starlette(routes=routes, exception_handlers={StarletteHTTPException: _http_error})


def create_app(settings: Settings | None = None, serve_grpc: bool = False) -> FastAPI:
    """The app; with `serve_grpc` (`serve` only: tests and `smoke` bind nothing) its lifespan also runs
    the gRPC server on `settings.grpc_port`, unless that is 0."""
    settings = settings or get_settings()
    metrics = Metrics()
    repository = ModelRepository(settings, metrics)
    dataplane = DataPlane(settings, repository, metrics)
    shadow = Shadow(settings, metrics, dataplane)
    grpc_server = GrpcServer(settings, dataplane) if serve_grpc and settings.grpc_port else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in a thread: hashing and session creation block, and the loop should stay responsive.
        await anyio.to_thread.run_sync(repository.load_all)
        if grpc_server is not None:
            await grpc_server.start()  # after loading: its health service says whether the models are ready
        # Everything alive now (imports, sessions, metadata) lives as long as the process: freeze it
        # out of the collector's generations so collections during requests stay short (p99).
        gc.collect()
        gc.freeze()
        log.info(
            "scorer started",
            extra={"ready": repository.ready, "models": [f"{m.name}:{m.version}" for m in repository.all()]},
        )
        await shadow.start()
        yield
        await shadow.stop()
        if grpc_server is not None:
            await grpc_server.stop(GRPC_GRACE_SECONDS)
        dataplane.close()

    app = ScoringApp(
        title="ModelApp scoring service",
        version=__version__,
        description="ONNX models over the Open Inference Protocol (KServe V2 REST) and the seeds' API.",
        lifespan=lifespan,
        openapi_url=None,  # /openapi.json and /docs are on the operations port
        docs_url=None,
        redoc_url=None,
    )
    if settings.metrics_port:
        app.ops, app.ops_port = create_ops_app(app, metrics), settings.metrics_port
    app.plane = dataplane
    app.state.settings = settings
    app.state.dataplane = dataplane
    app.state.shadow = shadow
    app.include_router(router)
    app.add_exception_handler(ScoringError, _scoring_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (multi-worker serving): settings come from SCORING_* variables."""
    from scoring_service.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, settings.access_log)
    return create_app(settings, serve_grpc=True)
