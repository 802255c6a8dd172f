"""uvicorn wiring for `serve`: read deadlines, the serving and operations sockets, the workers."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Iterable
from typing import Any

import orjson
import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from scoring_service.settings import Settings

log = logging.getLogger(__name__)

STARTUP_FAILURE = 3  # uvicorn's exit code when the app's startup fails


class ScorerConfig(uvicorn.Config):
    """uvicorn's config plus the read limits `GuardedProtocol` enforces (it travels to each worker)."""

    def __init__(
        self, app: Any, *, header_timeout: float, body_timeout: float, max_header_bytes: int, **kw: Any
    ):
        super().__init__(app, **kw)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes

    def load(self) -> None:
        """uvicorn's load, then its X-Forwarded-* middleware moved inside the app.

        uvicorn puts ProxyHeadersMiddleware in front of every request (a frame, a trust check, a scan
        of the headers: ~5% of a small model's request); it changes a request only when that carries
        X-Forwarded-For or X-Forwarded-Proto. The app calls it for those requests alone.
        """
        super().load()
        from scoring_service.app import ScoringApp

        loaded = self.loaded_app
        if isinstance(loaded, ProxyHeadersMiddleware) and isinstance(loaded.app, ScoringApp):
            loaded.app.proxy = loaded
            self.loaded_app = loaded.app


class CoalescingTransport(asyncio.Transport):
    """A connection's transport that sends a response's head and body in one system call.

    uvicorn writes the status line and headers when the app starts its response and the body when
    it comes: two send() calls (two TCP segments) for an answer that was ready at once, one of them
    a few microseconds of kernel time per request for nothing. A write is held until the next one
    (the body, in the same step of the event loop for every response here), which goes out with it
    in one writev; or, if none comes, until the loop's next iteration. Everything else is the
    wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            self._transport.writelines((held, data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._flush()
        self._transport.writelines(list_of_data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():  # closed meanwhile (aborted, lost): nobody to send to
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and the head limit it lacks.

    uvicorn closes idle keep-alive connections, but a request's head and body may take for ever:
    300 connections sending a header line every 2 s were held 70 s and more (slowloris), and a head
    without end is buffered without limit. A deadline is armed only when a read leaves a request
    unfinished, and checked from uvicorn's own state after each read, so a request that arrives in
    one read (every ordinary one) pays four attribute reads.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        assert isinstance(config, ScorerConfig)
        self.limits = config
        self.deadline: asyncio.TimerHandle | None = None
        self.deadline_for: object = None  # the scope (head) or cycle (body) the deadline is for
        self.head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))
        self._arm(self.limits.header_timeout, None)  # a connection that never sends a head

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        HttpToolsProtocol.data_received(self, data)  # not super(): this runs for every read
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and not cycle.more_body:  # request complete
            if self.deadline is not None:
                self._disarm()
        else:
            self._unfinished(cycle, len(data))

    def _unfinished(self, cycle: Any, size: int) -> None:
        """After a read that left a request unfinished: arm its deadline, count its head."""
        if cycle is not None and cycle.scope is self.scope:  # the head is in, the body is not
            if cycle.response_complete:
                # Answered before its body arrived (413, 503, a route that reads no body): the rest
                # of the body would hold the connection for ever.
                self.transport.close()
            elif self.deadline_for is not cycle:
                self._arm(self.limits.body_timeout, cycle)
        elif self.scope is not None and not self.transport.is_closing():  # a head is being read
            if self.deadline_for is not self.scope:
                self.head_bytes = 0
                if self.deadline is None or self.deadline_for is not None:  # keep the connection's first one
                    self._arm(self.limits.header_timeout, self.scope)
                self.deadline_for = self.scope
            self.head_bytes += size
            if self.head_bytes > self.limits.max_header_bytes:
                self._refuse(431, f"request headers exceed {self.limits.max_header_bytes} bytes")

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers a request it cannot parse in text/plain; every error here is JSON.
        self._refuse(400, msg)

    def _arm(self, delay: float, target: object) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(delay, self._expire)
        self.deadline_for = target

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.deadline_for = None

    def _expire(self) -> None:
        self.deadline = None
        cycle = self.cycle
        if cycle is None or self.deadline_for is not cycle:
            self._refuse(408, f"request headers not received within {self.limits.header_timeout:g} s")
        elif not cycle.response_started:
            self._refuse(408, f"request body not received within {self.limits.body_timeout:g} s")
            cycle.disconnected = True  # the app, waiting for the body, hears that the client left
            cycle.message_event.set()
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a JSON error and close: the request never reaches the app."""
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        head = [STATUS_LINE[status]]
        for name, value in [*self.server_state.default_headers, (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]:  # fmt: skip
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """One uvicorn config for both sockets: the app tells them apart by the port a request came in on."""
    if settings.workers == 1:
        from scoring_service.app import create_app

        app: object = create_app(settings, serve_grpc=True)
    else:
        app = "scoring_service.app:app_from_env"  # each worker builds its app from SCORING_* variables
    return ScorerConfig(
        app,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_timeout,
        factory=settings.workers > 1,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,  # keep our structured handlers
        log_level=settings.log_level,
        access_log=settings.access_log,
        server_header=False,  # no "server: uvicorn" on every answer: nothing to tell a scanner, one header less
        loop="uvloop",
        http=GuardedProtocol,
        timeout_graceful_shutdown=20,
    )


def bind(host: str, port: int) -> socket.socket:
    """A socket bound as uvicorn binds its own, for the operations port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        log.error("cannot bind the operations port %s:%d: %s", host, port, exc)
        sys.exit(1)
    sock.set_inheritable(True)
    log.info("operations endpoints (/metrics, /docs, /openapi.json) on http://%s:%d", host, port)
    return sock


def run(settings: Settings) -> int:
    """Serve until a signal; the exit code."""
    config = uvicorn_config(settings)
    sockets = [config.bind_socket()]
    if settings.metrics_port:
        sockets.append(bind(settings.host, settings.metrics_port))
    if settings.workers > 1:
        # Workers rebuild settings from the environment: pass every value `serve` may have overridden.
        for name in ("model_dir", "host", "port", "workers", "grpc_port", "metrics_port"):
            os.environ[f"SCORING_{name.upper()}"] = str(getattr(settings, name))
        Multiprocess(config, sockets=sockets).run()
        return 0
    server = uvicorn.Server(config)
    server.run(sockets=sockets)
    return 0 if server.started else STARTUP_FAILURE
