"""The wake loop around the store: a slow store holds up only its own apps, never another tenant's
reconcile; a store the SDK refuses to build becomes a condition, not a traceback per retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from modelapp_bundle import manifest_for_directory
from modelapp_operator.loop import Reconciler
from modelapp_operator.names import Reason
from modelapp_operator.poller import AppKey, Endpoint
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.store import BlobCredentials, InMemoryStore, ModelStore
from unit.operator.conftest import make_app
from unit.operator.kube_fakes import FakeKube, api_client, no_events, wire

pytestmark = pytest.mark.unit


def app_reading(name: str, account_url: str, container: str) -> dict[str, Any]:
    """A ModelApp in namespace ml reading ``container`` with the operator's own identity (no Secret)."""
    app = make_app()
    app["metadata"]["name"] = name
    blob = app["spec"]["model"]["source"]["azureBlob"]
    blob.update(accountUrl=account_url, container=container)
    blob.pop("auth")
    return app


class StuckStore(InMemoryStore):
    """Answers listings at once; a manifest read hangs until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__("stuck")
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def _get(self, name: str, if_none_match: str | None) -> tuple[bytes, str] | None:
        self.entered.set()
        await self.release.wait()
        return await super()._get(name, if_none_match)


@pytest.fixture
async def stores(bundle_dir: Path) -> AsyncIterator[dict[str, InMemoryStore]]:
    manifest = manifest_for_directory(bundle_dir, version="1.0.0").to_json()
    found: dict[str, InMemoryStore] = {"stuck": StuckStore(), "fine": InMemoryStore("fine")}
    for store in found.values():
        store.put_blob("diabetes/1.0.0/modelapp.json", manifest)
    yield found
    found["stuck"].release.set()  # type: ignore[attr-defined]


async def test_a_stuck_manifest_read_does_not_hold_the_only_reconcile_slot(
    stores: dict[str, InMemoryStore],
) -> None:
    settings = OperatorSettings(max_concurrent_reconciles=1, first_listing_timeout=5)

    def factory(endpoint: Endpoint, _creds: BlobCredentials) -> ModelStore:
        return stores[endpoint.container]

    reconciler = Reconciler(api_client(), settings, no_events, store_factory=factory)
    url = "https://acct.blob.core.windows.net"
    kube = FakeKube({("ml", n): app_reading(n, url, n) for n in ("stuck", "fine")})
    applier = wire(reconciler, kube)
    stuck = asyncio.create_task(reconciler.reconcile_guarded(AppKey("ml", "stuck")))
    try:
        await asyncio.wait_for(stores["stuck"].entered.wait(), 5)  # type: ignore[attr-defined]
        # The other tenant's reconcile runs to its end while the stuck read still waits.
        await asyncio.wait_for(reconciler.reconcile_guarded(AppKey("ml", "fine")), 3)
        assert "fine" in applier.plans
        assert not stuck.done()
    finally:
        stores["stuck"].release.set()  # type: ignore[attr-defined]
        await stuck
        await reconciler.close()
    assert "stuck" in applier.plans


async def test_a_token_over_http_is_a_store_misconfigured_condition() -> None:
    # The SDK refuses a token credential on an http URL while building the client; that used to
    # escape the reconcile as a traceback, retried with backoff, and no status ever said why.
    settings = OperatorSettings(allowed_account_hosts=["127.0.0.1:10000"])
    reconciler = Reconciler(api_client(), settings, no_events)
    app = app_reading("plain", "http://127.0.0.1:10000/devstoreaccount1", "models")
    applier = wire(reconciler, FakeKube({("ml", "plain"): app}))
    try:
        await asyncio.wait_for(reconciler.reconcile_guarded(AppKey("ml", "plain")), 10)
    finally:
        await reconciler.close()
    conditions = applier.plans["plain"].body["conditions"]
    store_conditions = [c for c in conditions if c["reason"] == Reason.STORE_MISCONFIGURED]
    assert store_conditions, conditions
    assert "https" in store_conditions[0]["message"]
