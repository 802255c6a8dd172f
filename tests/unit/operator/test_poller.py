"""The shared store poller: listing rate (the operator's floor, not a tenant's pollInterval), listing by
prefix, and surviving whatever a cycle throws (reported as a problem, restarted with backoff)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from modelapp_operator.loop import Reconciler
from modelapp_operator.names import Reason
from modelapp_operator.poller import (
    RESTART_CAP,
    AppKey,
    ContainerPoller,
    Endpoint,
    Subscription,
    listing_prefixes,
    restart_delay,
)
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.snapshot import Waiting
from modelapp_operator.store import BlobCredentials, ContainerSnapshot, InMemoryStore, ModelStore
from unit.operator.kube_fakes import api_client, no_events

pytestmark = pytest.mark.unit

ENDPOINT = Endpoint("https://acct.blob.core.windows.net", "models", "test")


class CountingStore(InMemoryStore):
    """Counts listings, and which prefixes each listed."""

    def __init__(self) -> None:
        super().__init__("models")
        self.listed: list[str] = []
        self.snapshots = 0

    async def snapshot(self, prefixes: Sequence[str] = ("",)) -> ContainerSnapshot:
        self.snapshots += 1
        return await super().snapshot(prefixes)

    async def _list(self, prefix: str) -> list:  # type: ignore[type-arg]
        self.listed.append(prefix)
        return await super()._list(prefix)


def publish(store: InMemoryStore, *folders: str) -> None:
    for folder in folders:
        store.put_blob(f"{folder}modelapp.json", b"{}")
        store.put_blob(f"{folder}model.onnx", b"\0" * 10)


def registry_of(store: ModelStore, **settings: object) -> Reconciler:
    def factory(_endpoint: Endpoint, _creds: BlobCredentials) -> ModelStore:
        return store

    reconciler = Reconciler(api_client(), OperatorSettings(**settings), no_events, store_factory=factory)  # type: ignore[arg-type]
    reconciler.gather.credentials[ENDPOINT] = BlobCredentials()
    return reconciler


async def test_no_container_is_listed_more_often_than_the_operator_floor() -> None:
    store = CountingStore()
    publish(store, "a/1/", "b/1/")
    reconciler = registry_of(store, poll_interval_floor_seconds=0.5)
    try:
        # Two tenants ask for a listing every 50 ms; the operator's floor says every 500 ms at most.
        reconciler.registry.subscribe(AppKey("t1", "a"), ENDPOINT, Subscription("a/", 0.05))
        reconciler.registry.subscribe(AppKey("t2", "b"), ENDPOINT, Subscription("b/", 0.05))
        await asyncio.sleep(1.2)
    finally:
        await reconciler.close()
    assert 1 <= store.snapshots <= 3


async def test_the_poller_lists_its_subscribers_prefixes_not_the_whole_container() -> None:
    store = CountingStore()
    publish(store, "a/1/", "b/1/", "b/2/", "someone-else/9/", "big/1/")
    reconciler = registry_of(store, poll_interval_floor_seconds=0.0)
    try:
        poller = reconciler.registry.subscribe(AppKey("t1", "a"), ENDPOINT, Subscription("a", 60))
        reconciler.registry.subscribe(AppKey("t2", "b"), ENDPOINT, Subscription("/b/", 60))
        await poller.first_listing(5)
        assert poller.snapshot is not None
        assert sorted({b.name.split("/")[0] for b in poller.snapshot.blobs}) == ["a", "b"]
        assert sorted(set(store.listed)) == ["a/", "b/"]
        versions, problem = poller.view(AppKey("t2", "b"), "b/")
        assert problem is None
        assert versions is not None
        assert [v.version for v in versions] == ["1", "2"]
    finally:
        await reconciler.close()


async def test_a_new_prefix_is_listed_before_its_app_reads_the_view() -> None:
    store = CountingStore()
    publish(store, "a/1/", "c/7/")
    reconciler = registry_of(store, poll_interval_floor_seconds=0.2)
    try:
        poller = reconciler.registry.subscribe(AppKey("t1", "a"), ENDPOINT, Subscription("a/", 60))
        await poller.first_listing(5)
        reconciler.registry.subscribe(AppKey("t3", "c"), ENDPOINT, Subscription("c/", 60))
        # Not covered by the last listing: no stale "no versions", but "not listed yet" until it is.
        versions, problem = poller.view(AppKey("t3", "c"), "c/")
        assert versions is None
        assert isinstance(problem, Waiting)
        await poller.first_listing(5)
        versions, problem = poller.view(AppKey("t3", "c"), "c/")
        assert problem is None
        assert [v.version for v in versions or ()] == ["7"]
    finally:
        await reconciler.close()


@pytest.mark.parametrize(
    ("prefixes", "listed"),
    [
        (["a", "b/"], ("a/", "b/")),
        (["team/", "team/x/", "team/y"], ("team/",)),
        (["diabetes", "diabetes2"], ("diabetes/", "diabetes2/")),
        (["a/", ""], ("",)),
        ([], ("",)),
        ([f"p{i}/" for i in range(40)], ("",)),  # too many listings per cycle: one of the container
    ],
)
def test_listing_prefixes(prefixes: list[str], listed: tuple[str, ...]) -> None:
    assert listing_prefixes(prefixes) == listed


class FailingStore(InMemoryStore):
    """Raises something no store layer translates, ``failures`` times, then lists normally."""

    def __init__(self, failures: int) -> None:
        super().__init__("models")
        self.failures = failures

    async def snapshot(self, prefixes: Sequence[str] = ("",)) -> ContainerSnapshot:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("listing entry without properties")
        return await super().snapshot(prefixes)


async def test_an_unexpected_poller_failure_is_reported_then_the_poller_restarts() -> None:
    store = FailingStore(failures=2)
    publish(store, "a/1/")
    woken: list[AppKey] = []
    delays: list[int] = []

    def delay(failures: int) -> float:
        delays.append(failures)
        return 0.05

    poller = ContainerPoller(ENDPOINT, lambda: store, woken.append, floor=0.0, restart_delay=delay)
    key = AppKey("t1", "a")
    poller.subscribe(key, Subscription("a/", 60))
    poller.start()
    try:
        await poller.first_listing(5)
        versions, problem = poller.view(key, "a/")
        assert versions is None
        assert isinstance(problem, Waiting)
        assert problem.reason == Reason.STORE_UNAVAILABLE
        assert "RuntimeError: listing entry without properties" in problem.message
        for _ in range(100):
            if poller.problem is None and poller.snapshot is not None:
                break
            await asyncio.sleep(0.05)
        versions, problem = poller.view(key, "a/")
        assert problem is None
        assert [v.version for v in versions or ()] == ["1"]
        assert delays == [1, 2]  # backed off once per failure in a row
        assert poller.restarts == 2
        assert key in woken
    finally:
        await poller.stop()


def test_restart_delay_doubles_is_jittered_and_capped() -> None:
    assert restart_delay(1, lambda: 0.0) == 0.5
    assert restart_delay(1, lambda: 1.0) == 1.0
    assert restart_delay(3, lambda: 1.0) == 4.0
    assert restart_delay(50, lambda: 1.0) == RESTART_CAP
    assert len({restart_delay(4) for _ in range(20)}) > 1
