"""HTTP routes: read the request, call the data plane, write the response. Nothing else."""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from scoring_service.errors import BadRequest, PayloadTooLarge, ScoringError, UnsupportedMediaType
from scoring_service.service import HEADER_LENGTH, SERVER_TIMING, SHADOW_HEADER, DataPlane, Reply

JSON = "application/json"
HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode()
SHADOW_HEADER_KEY = SHADOW_HEADER.lower().encode()

Headers = Mapping[bytes, bytes]
"""A request's headers as ASGI gives them (lower-case names, raw values), the last of a repeated name:
`dict(scope["headers"])` builds it in C, and values are decoded only when one is used."""

router = APIRouter()

# The request bodies are parsed by hand (orjson + explicit checks) for speed, so FastAPI cannot
# derive their schema; these describe them for /docs (on the operations port) and the schemathesis fuzz test.
_TENSOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "parameters": {"type": "object"},
        "data": {},
    },
}
_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {"type": "array", "items": _TENSOR_SCHEMA},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                            },
                        },
                    },
                }
            }
        },
    }
}
_SCORE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "properties": {"data": {}, "input": {}, "top_k": {"type": "integer"}},
                }
            }
        },
    }
}


def _plane(request: Request) -> DataPlane:
    # Read from app state rather than Depends(): dependency resolution costs measurable time per
    # request on the inference hot path, and the data plane is a per-app singleton anyway.
    plane: DataPlane = request.app.state.dataplane
    return plane


def _response(reply: Reply) -> Response:
    headers = {SERVER_TIMING: timing} if (timing := reply.server_timing()) else {}
    if reply.header_length is None:
        return Response(reply.body, reply.status, headers=headers, media_type=JSON)
    headers[HEADER_LENGTH] = str(reply.header_length)
    return Response(reply.body, reply.status, headers=headers, media_type="application/octet-stream")


async def read_body(receive: Receive, headers: Headers, plane: DataPlane, json_only: bool) -> bytes:
    """The whole request body, refusing more than the limit before buffering it; inflated off the loop.

    A body that is all JSON (no binary tensor data) may not exceed the JSON budget either: refusing
    it here, before it is read, keeps it out of memory altogether.
    """
    limit = plane.json_body_limit if json_only else plane.body_limit
    length = headers.get(b"content-length")
    if length is not None:
        if not _is_uint(length):
            raise BadRequest("invalid Content-Length")
        if int(length) > limit:
            raise _too_large(limit, json_only)
    message = await receive()
    body = _chunk(message, 0, limit, json_only)
    if message.get("more_body", False):  # chunked bodies have no Content-Length: the limit holds as they come
        body = await _read_rest(receive, body, limit, json_only)
    encoding = headers.get(b"content-encoding")
    if encoding is not None and encoding != b"identity":
        limit = plane.settings.max_decompressed_bytes
        body = await plane.offload(_decompress, body, encoding.decode("latin-1"), limit)
    return body


def _chunk(message: Message, size: int, limit: int, json_only: bool) -> bytes:
    """The body bytes of `message`, after `size` bytes already read."""
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    chunk: bytes = message.get("body", b"")
    if size + len(chunk) > limit:
        raise _too_large(limit, json_only)
    return chunk


async def _read_rest(receive: Receive, first: bytes, limit: int, json_only: bool) -> bytes:
    """The body after its `first` message, which said more was coming."""
    parts, size, more = [first], len(first), True
    while more:
        message = await receive()
        chunk = _chunk(message, size, limit, json_only)
        parts.append(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
    return b"".join(parts)


def _too_large(limit: int, json_only: bool) -> PayloadTooLarge:
    if json_only:
        return PayloadTooLarge(
            f"a JSON request body may have {limit} bytes at most; send large tensors with the binary tensor data extension"
        )
    return PayloadTooLarge(f"request body exceeds {limit} bytes")


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    # tritonclient's request_compression_algorithm sends gzip or deflate (zlib framing).
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.lower())
    if wbits is None:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"cannot decompress the {encoding} body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds {limit} bytes")
    return out


def _is_uint(value: bytes) -> bool:
    # bytes.isdigit() is ASCII only (str.isdigit() accepts "²", which int() then rejects).
    return value.isdigit()


def _header_length(headers: Headers) -> int | None:
    value = headers.get(HEADER_LENGTH_KEY)
    if value is None:
        return None
    if not _is_uint(value):
        raise BadRequest(f"invalid {HEADER_LENGTH}: {value.decode('latin-1')!r}")
    return int(value)


async def handle_infer(
    plane: DataPlane, headers: Headers, receive: Receive, name: str, version: str | None
) -> Reply:
    """POST .../infer for both the FastAPI route and the fast path: one implementation."""
    header_length = _header_length(headers)
    body = await read_body(receive, headers, plane, json_only=header_length is None)
    mirror = plane.mirror
    timed = SHADOW_HEADER_KEY in headers  # a serving pod mirrors this request here: say how long it took
    if mirror is None and not timed:  # shadow mirroring off: these checks are all it costs
        return await plane.infer(name, version, body, header_length)
    start = time.perf_counter()
    reply = await plane.infer(name, version, body, header_length)  # raises unless 2xx
    took = time.perf_counter() - start
    if mirror is not None:
        content_type = headers.get(b"content-type")
        text = None if content_type is None else content_type.decode("latin-1")
        mirror(name, version, body, text, header_length, reply, took)
    return replace(reply, server_seconds=took) if timed else reply


# -- inference first: the router matches in order and these are the hot paths ---------------


async def _infer(request: Request, name: str, version: str | None) -> Response:
    headers = dict(request.scope["headers"])
    return _response(await handle_infer(_plane(request), headers, request.receive, name, version))


@router.post("/v2/models/{name}/infer", tags=["inference"], openapi_extra=_INFER_BODY)
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer", tags=["inference"], openapi_extra=_INFER_BODY)
async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)


@router.post("/score", tags=["seed API"], openapi_extra=_SCORE_BODY)
async def score(request: Request) -> Response:
    plane = _plane(request)
    return _response(
        await plane.score(
            await read_body(request.receive, dict(request.scope["headers"]), plane, json_only=True)
        )
    )


# -- health, metadata ------------------------------------------------------------------------


@router.get("/v2/health/live", tags=["health"])
async def live(request: Request) -> Response:
    return _response(_plane(request).live())


@router.get("/v2/health/ready", tags=["health"])
async def ready(request: Request) -> Response:
    return _response(_plane(request).ready())


@router.get("/v2", tags=["metadata"])
async def server_metadata(request: Request) -> Response:
    return _response(_plane(request).server_metadata())


@router.get("/v2/models/{name}", tags=["metadata"])
async def model_metadata(request: Request, name: str) -> Response:
    return _response(_plane(request).model_metadata(name, None))


@router.get("/v2/models/{name}/versions/{version}", tags=["metadata"])
async def model_version_metadata(request: Request, name: str, version: str) -> Response:
    return _response(_plane(request).model_metadata(name, version))


@router.get("/v2/models/{name}/ready", tags=["health"])
async def model_ready(request: Request, name: str) -> Response:
    return _response(_plane(request).model_ready(name, None))


@router.get("/v2/models/{name}/versions/{version}/ready", tags=["health"])
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    return _response(_plane(request).model_ready(name, version))


@router.get("/version", tags=["seed API"])
async def version(request: Request) -> Response:
    return _response(_plane(request).version())


# -- fast path -------------------------------------------------------------------------------

INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_INFER_TARGETS: dict[str, tuple[str, str | None]] = {}
_INFER_TARGETS_MAX = 1024  # paths come from clients: remember a bounded number


def infer_target(path: str) -> tuple[str, str | None] | None:
    """(model name, version or None) if `path` is an infer path; a path seen before is looked up,
    not matched again (the regex costs more than the rest of the routing)."""
    target = _INFER_TARGETS.get(path)
    if target is None:
        match = INFER_PATH.fullmatch(path)
        if match is None:
            return None
        target = (match[1], match[2])
        if len(_INFER_TARGETS) < _INFER_TARGETS_MAX:
            _INFER_TARGETS[path] = target
    return target


_OCTET = b"application/octet-stream"
_JSON = JSON.encode()
SERVER_TIMING_KEY = SERVER_TIMING.lower().encode()


async def fast_infer(
    plane: DataPlane, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
) -> None:
    """Serve POST .../infer straight from ASGI, without FastAPI's per-request machinery.

    FastAPI's work around a routed endpoint (telemetry probe, middleware, route scan, dependency
    solving, Request/Response objects) costs about as much as running a small model. The route
    declarations stay (OpenAPI, docs) and call the same `handle_infer`.
    """
    try:
        reply = await handle_infer(plane, dict(scope["headers"]), receive, name, version)
    except ScoringError as exc:
        reply = Reply(exc.status_code, orjson.dumps({"error": exc.message}))
    except ClientDisconnect:
        return
    if reply.header_length is None:
        response_headers = [(b"content-type", _JSON), (b"content-length", str(len(reply.body)).encode())]
    else:
        response_headers = [
            (b"content-type", _OCTET),
            (b"content-length", str(len(reply.body)).encode()),
            (HEADER_LENGTH_KEY, str(reply.header_length).encode()),
        ]
    if reply.server_seconds is not None and (timing := reply.server_timing()):  # a mirrored request's
        response_headers.append((SERVER_TIMING_KEY, timing.encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": response_headers})
    await send({"type": "http.response.body", "body": reply.body})
