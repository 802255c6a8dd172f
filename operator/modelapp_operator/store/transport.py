"""The Azure store's HTTP transport: a call can cap the bodies of the responses it reads, so that what an
endpoint sends (a listing page, a manifest) is bounded before it is in memory, whatever the endpoint says."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport

# The cap of the store call running in this task; None for calls that stream (model files) or send.
_CAP: contextvars.ContextVar[int | None] = contextvars.ContextVar("modelapp_response_cap", default=None)
_READ = 64 * 1024


class ResponseTooLarge(Exception):
    """A response body went past the cap of the call reading it."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"larger than {cap} bytes")
        self.cap = cap


class EncodedResponse(Exception):
    """A capped call was sent a compressed body, whose decoded size nothing bounds while it is read."""


@contextlib.contextmanager
def response_cap(limit: int | None) -> Iterator[None]:
    """Responses received inside this block carry at most ``limit`` body bytes (None: no cap)."""
    token = _CAP.set(limit)
    try:
        yield
    finally:
        _CAP.reset(token)


class _CappedStream:
    """The response's byte stream, counting: past the cap, a read raises instead of returning more."""

    def __init__(self, inner: aiohttp.StreamReader, cap: int) -> None:
        self._inner = inner
        self._cap = cap
        self._seen = 0

    async def read(self, n: int = -1) -> bytes:
        if n >= 0:
            return self._count(await self._inner.read(n))
        parts = []
        while chunk := await self._inner.read(_READ):
            parts.append(self._count(chunk))
        return b"".join(parts)

    def _count(self, chunk: bytes) -> bytes:
        self._seen += len(chunk)
        if self._seen > self._cap:
            raise ResponseTooLarge(self._cap)
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CappedResponse(aiohttp.ClientResponse):
    async def start(self, connection: Any) -> aiohttp.ClientResponse:
        await super().start(connection)
        cap = _CAP.get()
        if cap is not None:
            encoding = self.headers.get("Content-Encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise EncodedResponse(f"Content-Encoding {encoding}")
            if (self.content_length or 0) > cap:
                raise ResponseTooLarge(cap)
            self.content = _CappedStream(self.content, cap)  # type: ignore[assignment]
        return self


class CappedTransport(AioHttpTransport):  # type: ignore[misc]  # azure.core exports it lazily (untyped)
    """azure-core's aiohttp transport, its session built with the capping response class."""

    session: aiohttp.ClientSession | None
    _session_owner: bool
    _has_been_opened: bool
    _use_env_settings: bool

    async def open(self) -> None:
        if self.session is None and self._session_owner and not self._has_been_opened:
            # What AioHttpTransport.open builds, plus the response class.
            self.session = aiohttp.ClientSession(
                trust_env=self._use_env_settings,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                response_class=_CappedResponse,
            )
        await super().open()
