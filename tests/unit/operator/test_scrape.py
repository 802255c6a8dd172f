"""Reading a scorer pod's metrics: the whole body however it is chunked, and nothing past the cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from modelapp_operator import scrape

pytestmark = pytest.mark.unit


async def _serve(size: int) -> AsyncIterator[str]:
    async def metrics(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for start in range(0, size, 7000):  # many small chunks, with pauses between them
            await resp.write(b"#" * min(7000, size - start))
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("size", "whole"), [(200_000, True), (scrape.MAX_BYTES + 1, False)])
async def test_a_chunked_body_is_read_whole_up_to_the_cap(size: int, whole: bool) -> None:
    async for url in _serve(size):
        async with aiohttp.ClientSession() as session:
            text = await scrape._get(session, url)
        assert (len(text) if text is not None else None) == (size if whole else None)
