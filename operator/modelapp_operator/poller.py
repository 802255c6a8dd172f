"""Shared store pollers: one per (endpoint, container, credential), listing it once per interval for every
ModelApp that reads from it, and waking only those whose versions changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from modelapp_operator import metrics
from modelapp_operator.names import Reason
from modelapp_operator.snapshot import ManifestInfo, Published, Stalled, Waiting
from modelapp_operator.store import (
    ContainerNotFound,
    ContainerSnapshot,
    ManifestInvalid,
    ModelStore,
    StoreAuthError,
    StoreConfigError,
    StoreError,
    VersionNotFound,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Endpoint:
    """What a poller lists. ``credential`` identifies the credential without holding it (a fingerprint)."""

    account_url: str
    container: str
    credential: str


@dataclass(frozen=True)
class Subscription:
    prefix: str
    interval: float


Problem = Stalled | Waiting


def classify(exc: BaseException) -> Problem:
    """What a store failure means: refused credentials or a wrong container need a person (Stalled);
    an outage passes (Waiting). Messages come scrubbed from the store layer."""
    if isinstance(exc, StoreAuthError):
        return Stalled(Reason.STORE_AUTH_FAILED, f"the model store refused the credentials: {exc}")
    if isinstance(exc, ContainerNotFound | StoreConfigError):
        return Stalled(Reason.STORE_MISCONFIGURED, str(exc))
    return Waiting(Reason.STORE_UNAVAILABLE, f"the model store cannot be reached: {exc}")


class ContainerPoller:
    def __init__(self, endpoint: Endpoint, store: ModelStore, wake: Callable[[AppKey], None]) -> None:
        self.endpoint = endpoint
        self.store = store
        self._wake = wake
        self.subscribers: dict[AppKey, Subscription] = {}
        self.snapshot: ContainerSnapshot | None = None
        self.problem: Problem | None = None
        self._seen: dict[AppKey, object] = {}
        self._manifests: dict[tuple[str, str, str], ManifestInfo | str] = {}
        self._listed = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._calls_reported = 0

    @property
    def interval(self) -> float:
        return min((s.interval for s in self.subscribers.values()), default=60.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"poller {self.endpoint.container}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.close()

    def subscribe(self, key: AppKey, sub: Subscription) -> None:
        previous = self.subscribers.get(key)
        self.subscribers[key] = sub
        if previous is None or sub.interval < previous.interval:
            # A shorter interval than the poller sleeps on: list now rather than after the old one.
            self._kick.set()

    def unsubscribe(self, key: AppKey) -> None:
        self.subscribers.pop(key, None)
        self._seen.pop(key, None)

    async def first_listing(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listed.wait(), within)

    def view(self, key: AppKey, prefix: str) -> tuple[tuple[Published, ...] | None, Problem | None]:
        """The versions under ``prefix`` as of the last listing, and the last listing's problem if any."""
        if self.snapshot is None:
            return None, self.problem or Waiting(
                Reason.STORE_UNAVAILABLE, "the model store has not been listed yet"
            )
        seen = self._peek(prefix)
        self._seen[key] = seen
        versions, problem = seen
        return (versions if problem is None else None), problem

    async def manifest(self, prefix: str, version: Published) -> ManifestInfo | str:
        """The version's manifest summary, or the reason it is unusable; one read per (version, ETag)."""
        cache_key = (prefix, version.version, version.etag)
        cached = self._manifests.get(cache_key)
        if cached is not None:
            return cached
        result: ManifestInfo | str
        try:
            manifest = await self.store.read_manifest(prefix, version.version)
        except (ManifestInvalid, VersionNotFound) as exc:
            result = f"version {version.version}: {exc}"
        else:
            if manifest is None:  # not asked conditionally, so never None; keeps mypy honest
                result = f"version {version.version}: manifest missing"
            else:
                result = ManifestInfo(
                    manifest.version, manifest.sha256, version.etag, dict(manifest.metrics or {})
                )
        finally:
            self._report_calls()
        self._manifests[cache_key] = result
        return result

    def _report_calls(self) -> None:
        delta = self.store.calls - self._calls_reported
        if delta:
            metrics.STORE_CALLS.labels(self.endpoint.container).inc(delta)
            self._calls_reported = self.store.calls

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            await self._poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)

    async def _poll_once(self) -> None:
        container = self.endpoint.container
        try:
            self.snapshot = await self.store.snapshot()
            if self.problem is not None:
                log.info("model store %s/%s is reachable again", self.endpoint.account_url, container)
            self.problem = None
            metrics.STORE_POLLS.labels(container, "ok").inc()
        except StoreError as exc:
            problem = classify(exc)
            if problem != self.problem:
                log.warning("listing %s/%s failed: %s", self.endpoint.account_url, container, problem.message)
            self.problem = problem
            metrics.STORE_POLLS.labels(container, "error").inc()
        finally:
            self._report_calls()
        self._listed.set()
        # Wake only the ModelApps whose view changed: unchanged ones cost nothing per cycle.
        for key, sub in list(self.subscribers.items()):
            if self._seen.get(key) != self._peek(sub.prefix):
                self._wake(key)
        # Manifests of versions that left the store are no longer worth keeping.
        if self.snapshot is not None and len(self._manifests) > 4 * max(1, len(self.subscribers)):
            prefixes = {prefix for prefix, _, _ in self._manifests}
            live = {(p, r.version, r.etag) for p in prefixes for r in self.snapshot.versions(p)}
            self._manifests = {k: v for k, v in self._manifests.items() if k in live}

    def _peek(self, prefix: str) -> tuple[tuple[Published, ...] | None, Problem | None]:
        """What an app reading ``prefix`` would see now; compared with what it last saw to decide wakes."""
        if self.snapshot is None:
            return (None, self.problem)
        refs = self.snapshot.versions(prefix)
        return (tuple(Published(r.version, r.etag, r.last_modified) for r in refs), self.problem)


class PollerRegistry:
    """Pollers by endpoint; a poller lives while some ModelApp subscribes to it."""

    def __init__(
        self, store_factory: Callable[[Endpoint], ModelStore], wake: Callable[[AppKey], None]
    ) -> None:
        self._factory = store_factory
        self._wake = wake
        self.pollers: dict[Endpoint, ContainerPoller] = {}
        self._where: dict[AppKey, Endpoint] = {}

    def subscribe(self, key: AppKey, endpoint: Endpoint, sub: Subscription) -> ContainerPoller:
        old = self._where.get(key)
        if old is not None and old != endpoint:
            self.unsubscribe(key)
        poller = self.pollers.get(endpoint)
        if poller is None:
            poller = ContainerPoller(endpoint, self._factory(endpoint), self._wake)
            self.pollers[endpoint] = poller
            poller.start()
            metrics.POLLERS.set(len(self.pollers))
        poller.subscribe(key, sub)
        self._where[key] = endpoint
        return poller

    def unsubscribe(self, key: AppKey) -> None:
        endpoint = self._where.pop(key, None)
        poller = self.pollers.get(endpoint) if endpoint else None
        if poller is None or endpoint is None:
            return
        poller.unsubscribe(key)
        if not poller.subscribers:
            del self.pollers[endpoint]
            metrics.POLLERS.set(len(self.pollers))
            asyncio.get_running_loop().create_task(poller.stop())

    async def close(self) -> None:
        pollers, self.pollers = list(self.pollers.values()), {}
        self._where.clear()
        await asyncio.gather(*(p.stop() for p in pollers), return_exceptions=True)
