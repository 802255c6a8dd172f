"""The uvicorn wiring's own parts: one send per response, uvicorn's X-Forwarded-* middleware only when used."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from scoring_service.app import ScoringApp
from scoring_service.asgi import request
from scoring_service.server import CoalescingTransport, uvicorn_config
from scoring_service.settings import Settings
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[bytes]]] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", [bytes(data)]))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", [bytes(d) for d in list_of_data]))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_head_and_its_body_go_out_in_one_call() -> None:
    async def scenario() -> list[tuple[str, list[bytes]]]:
        inner = Recorder()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"head")
        transport.write(b"body")
        await asyncio.sleep(0)  # the flush scheduled by the first write finds nothing held
        transport.write(b"lone")  # nothing follows: out on the loop's next iteration
        assert inner.calls == [("writelines", [b"head", b"body"])]
        await asyncio.sleep(0)
        transport.write(b"last")
        transport.close()  # what is held goes out before the close
        assert inner.closed
        return inner.calls

    calls = asyncio.run(scenario())
    assert calls == [("writelines", [b"head", b"body"]), ("write", [b"lone"]), ("write", [b"last"])]


def test_nothing_is_written_to_a_transport_closed_meanwhile() -> None:
    async def scenario() -> Recorder:
        inner = Recorder()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"head")
        inner.closed = True  # the peer went away
        await asyncio.sleep(0)
        return inner

    assert asyncio.run(scenario()).calls == []


def test_forwarded_headers_middleware_runs_only_for_requests_that_carry_them(linear_bundle: Path) -> None:
    config = uvicorn_config(Settings(model_dir=linear_bundle, grpc_port=0, metrics_port=0))
    config.load()
    app = config.loaded_app
    assert isinstance(app, ScoringApp)  # not uvicorn's middleware in front of every request
    assert isinstance(app.proxy, ProxyHeadersMiddleware)
    assert app.proxy.app is app
    seen: list[Any] = []

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope.get("client"), scope.get("scheme")))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app.ops, app.ops_port = spy, 80  # the in-process client's requests come in on port 80
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    asyncio.run(request(app, "GET", "/metrics", headers=forwarded))
    asyncio.run(request(app, "GET", "/metrics"))
    assert seen == [(("203.0.113.7", 0), "https"), (("127.0.0.1", 0), "http")]
