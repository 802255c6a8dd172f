"""Reads the scorer pods' own metrics endpoints (the operations port, named ``metrics``) for the canary and
shadow gates. Only this module talks to pods."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from modelapp_operator.builders import METRICS_PORT_NAME

# A scorer's /metrics is a few KiB; anything far larger is not what we read.
MAX_BYTES = 4 * 1024 * 1024
TIMEOUT_SECONDS = 3.0


def _metrics_url(pod: Any) -> str | None:
    if pod.status is None or pod.status.phase != "Running" or not pod.status.pod_ip:
        return None
    for container in pod.spec.containers:
        for port in container.ports or []:
            if port.name == METRICS_PORT_NAME:
                return f"http://{pod.status.pod_ip}:{port.container_port}/metrics"
    return None


class TooLarge(ValueError):
    pass


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, as it arrives in chunks, refused past ``limit`` bytes."""
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"answer larger than {limit} bytes")
    return bytes(body)


async def _get(session: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                return None
            return (await read_capped(resp, MAX_BYTES)).decode("utf-8", errors="replace")
    except (aiohttp.ClientError, TimeoutError, OSError, TooLarge):
        return None


async def scrape(
    core: client.CoreV1Api, namespace: str, selector: str, api_timeout: float
) -> list[str] | None:
    """The metrics text of every running pod the selector picks; None when no pod answered at all."""
    pods = await core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=api_timeout)
    urls = [u for u in (_metrics_url(p) for p in pods.items) if u]
    if not urls:
        return None
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        texts = await asyncio.gather(*(_get(session, u) for u in urls))
    found = [t for t in texts if t is not None]
    return found or None
