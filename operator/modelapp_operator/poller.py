"""Shared store pollers: one per (endpoint, container, credential), listing the folders its ModelApps read
(never more often than the operator's floor) and waking only those whose versions changed. Whatever a
cycle throws becomes those apps' store problem, and the poller restarts after a jittered backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modelapp_operator import metrics
from modelapp_operator.names import Reason
from modelapp_operator.retry import BACKOFF_CAP, backoff
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
    covering_prefixes,
    scrub,
)

log = logging.getLogger(__name__)

# With more folders than this to list per cycle, one listing of the whole container is the cheaper one.
MAX_PREFIX_LISTINGS = 16
IDLE_INTERVAL = 60.0
RESTART_CAP = BACKOFF_CAP


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


def listing_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    """The folders one cycle lists for its subscribers' prefixes: each folder nobody's folder contains,
    or the whole container (``""``) when a subscriber reads the root or there are too many folders."""
    folders = covering_prefixes(prefixes)
    return folders if len(folders) <= MAX_PREFIX_LISTINGS else ("",)


# A poller that failed ``failures`` times in a row starts again after the shared jittered backoff.
restart_delay = backoff


class ContainerPoller:
    """Lists one container for its subscribers. ``open_store`` builds the store on the first cycle (and
    again after a restart): a store that cannot be built is a problem like a failed listing."""

    def __init__(
        self,
        endpoint: Endpoint,
        open_store: Callable[[], ModelStore],
        wake: Callable[[AppKey], None],
        *,
        floor: float = 0.0,
        restart_delay: Callable[[int], float] = restart_delay,
    ) -> None:
        self.endpoint = endpoint
        self.store: ModelStore | None = None
        self._open_store = open_store
        self._wake = wake
        self._floor = floor
        self._restart_delay = restart_delay
        self.subscribers: dict[AppKey, Subscription] = {}
        self.snapshot: ContainerSnapshot | None = None
        self.problem: Problem | None = None
        self.restarts = 0
        self._failures = 0
        self._seen: dict[AppKey, object] = {}
        self._manifests: dict[tuple[str, str, str], ManifestInfo | str] = {}
        self._listed = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._calls_reported = 0
        self._listed_at = float("-inf")

    @property
    def interval(self) -> float:
        """The shortest pollInterval of the subscribers, but never shorter than the operator's floor."""
        asked = min((s.interval for s in self.subscribers.values()), default=IDLE_INTERVAL)
        return max(self._floor, asked)

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"poller {self.endpoint.container}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.store is not None:
            await self.store.close()

    def subscribe(self, key: AppKey, sub: Subscription) -> None:
        previous = self.subscribers.get(key)
        self.subscribers[key] = sub
        uncovered = self.snapshot is not None and not self.snapshot.covers(sub.prefix)
        if uncovered:
            # Its folder was not listed: its first reconcile waits for a listing that has it.
            self._listed.clear()
        if uncovered or (previous is not None and sub.interval < previous.interval):
            self._kick.set()

    def unsubscribe(self, key: AppKey) -> None:
        self.subscribers.pop(key, None)
        self._seen.pop(key, None)

    async def first_listing(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listed.wait(), within)

    def view(self, key: AppKey, prefix: str) -> tuple[tuple[Published, ...] | None, Problem | None]:
        """The versions under ``prefix`` as of the last listing, and the last listing's problem if any."""
        if self.snapshot is None or not self.snapshot.covers(prefix):
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
            manifest = await self._connected().read_manifest(prefix, version.version)
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

    def _connected(self) -> ModelStore:
        """The store, built on first use (and again after a restart). Raises StoreError if it cannot be."""
        if self.store is None:
            self.store = self._open_store()
        return self.store

    def _report_calls(self) -> None:
        if self.store is None:
            return
        delta = self.store.calls - self._calls_reported
        if delta:
            metrics.STORE_CALLS.labels(self.endpoint.container).inc(delta)
            self._calls_reported = self.store.calls

    async def _supervise(self) -> None:
        """Runs the polling loop; whatever escapes it is reported, and the loop starts again after a
        jittered backoff with a fresh store."""
        while True:
            try:
                await self._run()
            except Exception as exc:  # the supervisor's job: nothing kills the poller
                self._failures += 1
                self.restarts += 1
                delay = self._restart_delay(self._failures)
                await self._failed(exc, delay)
                await asyncio.sleep(delay)

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            await self._poll_once()
            self._failures = 0
            await self._wait_next()

    async def _wait_next(self) -> None:
        """Until the interval passes or a kick comes (a folder to list, a shorter interval), but never
        sooner than the floor after the last listing started."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), self.interval)
        rest = self._listed_at + self._floor - asyncio.get_running_loop().time()
        if rest > 0:
            await asyncio.sleep(rest)

    async def _poll_once(self) -> None:
        container = self.endpoint.container
        self._listed_at = asyncio.get_running_loop().time()
        prefixes = listing_prefixes(s.prefix for s in self.subscribers.values())
        try:
            self.snapshot = await self._connected().snapshot(prefixes)
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
        self._after_listing()

    async def _failed(self, exc: Exception, delay: float) -> None:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        what = scrub(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
        log.error(
            "store poller %s/%s failed; restarting in %.1f s",
            self.endpoint.account_url,
            self.endpoint.container,
            delay,
            exc_info=exc,
        )
        metrics.STORE_POLLS.labels(self.endpoint.container, "error").inc()
        self.problem = Waiting(
            Reason.STORE_UNAVAILABLE, f"the store poller failed ({what}); it restarts in {delay:.0f} s"
        )
        self._after_listing()
        # The store may be in any state after the unexpected: the restart builds a fresh one.
        store, self.store, self._calls_reported = self.store, None, 0
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()

    def _after_listing(self) -> None:
        """Tell waiting reconciles, and wake only the ModelApps whose view changed."""
        if self.problem is not None or self._covers_subscribers():
            self._listed.set()
        for key, sub in list(self.subscribers.items()):
            if self._seen.get(key) != self._peek(sub.prefix):
                self._wake(key)
        # Manifests of versions that left the store are no longer worth keeping.
        if self.snapshot is not None and len(self._manifests) > 4 * max(1, len(self.subscribers)):
            prefixes = {prefix for prefix, _, _ in self._manifests}
            live = {(p, r.version, r.etag) for p in prefixes for r in self.snapshot.versions(p)}
            self._manifests = {k: v for k, v in self._manifests.items() if k in live}

    def _covers_subscribers(self) -> bool:
        snapshot = self.snapshot
        return snapshot is not None and all(snapshot.covers(s.prefix) for s in self.subscribers.values())

    def _peek(self, prefix: str) -> tuple[tuple[Published, ...] | None, Problem | None]:
        """What an app reading ``prefix`` would see now; compared with what it last saw to decide wakes."""
        if self.snapshot is None or not self.snapshot.covers(prefix):
            return (None, self.problem)
        refs = self.snapshot.versions(prefix)
        return (tuple(Published(r.version, r.etag, r.last_modified) for r in refs), self.problem)


class PollerRegistry:
    """Pollers by endpoint; a poller lives while some ModelApp subscribes to it."""

    def __init__(
        self,
        store_factory: Callable[[Endpoint], ModelStore],
        wake: Callable[[AppKey], None],
        *,
        floor: float = 0.0,
    ) -> None:
        self._factory = store_factory
        self._wake = wake
        self._floor = floor
        self.pollers: dict[Endpoint, ContainerPoller] = {}
        self._where: dict[AppKey, Endpoint] = {}

    def subscribe(self, key: AppKey, endpoint: Endpoint, sub: Subscription) -> ContainerPoller:
        old = self._where.get(key)
        if old is not None and old != endpoint:
            self.unsubscribe(key)
        poller = self.pollers.get(endpoint)
        if poller is None:
            poller = ContainerPoller(endpoint, lambda: self._factory(endpoint), self._wake, floor=self._floor)
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
