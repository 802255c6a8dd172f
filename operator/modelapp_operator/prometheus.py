"""Asks a Prometheus's HTTP API for the canary figures (``analysis.prometheusUrl``); promql.py builds the
queries and reads the answers. Only this module talks to a Prometheus."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from modelapp_operator.figures import CanaryFigures
from modelapp_operator.promql import QueryError, answer, canary_queries, query_url, reduce
from modelapp_operator.scrape import TooLarge, read_capped

log = logging.getLogger(__name__)

# An instant query of ours answers with one sample in a few hundred bytes.
MAX_BYTES = 256 * 1024
TIMEOUT_SECONDS = 3.0


async def _read(resp: aiohttp.ClientResponse) -> bytes:
    try:
        return await read_capped(resp, MAX_BYTES)
    except TooLarge as exc:
        raise QueryError(str(exc)) from None


async def _query(session: aiohttp.ClientSession, url: str, query: str) -> object:
    # A form body rather than the URL: no length limit on the query, and form encoding for its "+" and quotes.
    async with session.post(url, data={"query": query}, allow_redirects=False) as resp:
        return answer(resp.status, await _read(resp))


async def canary_figures(base_url: str, namespace: str, model: str, version: str) -> CanaryFigures | None:
    """The candidate's figures since its pods started, or None (logged) when the Prometheus cannot be asked
    or does not answer as expected: the step then waits, as when no canary pod answers a scrape."""
    try:
        url = query_url(base_url)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
        # No cookies kept, no proxy or netrc from the environment (trust_env is off): nothing but the query goes.
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
            answers = await asyncio.gather(
                *(_query(session, url, q) for q in canary_queries(namespace, model, version).all())
            )
        return reduce(*answers)
    except (QueryError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning(
            "canary figures of %s %s from Prometheus %s: %s",
            model,
            version,
            base_url,
            str(exc) or type(exc).__name__,
        )
        return None
