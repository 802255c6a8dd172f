"""A Prometheus that cannot be asked gives no figures (the canary step waits), never an exception: a real
HTTP server on loopback plays the broken ones."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from integration.prometheus.conftest import free_port
from modelapp_operator import prometheus

SEEN: list[dict[str, str]] = []


async def _answer(request: web.Request) -> web.StreamResponse:
    SEEN.append(dict(request.headers))
    kind = request.match_info["kind"]
    if kind == "error":
        body = {"status": "error", "errorType": "execution", "error": "query timed out"}
        return web.json_response(body, status=422)
    if kind == "junk":
        return web.Response(text="<html>login</html>", content_type="text/html")
    if kind == "huge":
        # One good sample, but a MiB of it.
        data = {"resultType": "vector", "result": [{"metric": {"x": "y" * 2**20}, "value": [0, "1"]}]}
        return web.json_response({"status": "success", "data": data})
    if kind == "redirect":
        raise web.HTTPTemporaryRedirect("/ok/api/v1/query")  # 307: the POST would go again
    data = {"resultType": "vector", "result": [{"metric": {}, "value": [0, "3"]}]}
    return web.json_response({"status": "success", "data": data})


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{kind}/api/v1/query", _answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_good_answer_gives_figures(fake: str) -> None:
    got = await prometheus.canary_figures(fake + "/ok", "ns1", "m", "1")
    assert got is not None
    assert (got.requests, got.errors, got.p99_seconds) == (3, 6, 3.0)


@pytest.mark.parametrize("kind", ["error", "junk", "huge", "redirect"])
async def test_an_unusable_answer_gives_none(fake: str, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    assert await prometheus.canary_figures(f"{fake}/{kind}", "ns1", "m", "1") is None
    assert "from Prometheus" in caplog.text


async def test_an_unreachable_prometheus_gives_none() -> None:
    assert await prometheus.canary_figures(f"http://127.0.0.1:{free_port()}", "ns1", "m", "1") is None


async def test_no_credentials_are_sent(fake: str) -> None:
    SEEN.clear()
    with_credentials = fake.replace("//", "//user:secret@") + "/ok"
    assert await prometheus.canary_figures(with_credentials, "ns1", "m", "1") is None
    assert SEEN == []
    await prometheus.canary_figures(fake + "/ok", "ns1", "m", "1")
    assert SEEN
    assert not any("Authorization" in h or "Cookie" in h for h in SEEN)
