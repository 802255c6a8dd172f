"""The wake loop around the store: a store the SDK refuses to build becomes a condition, not a traceback
per retry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from modelapp_operator.loop import Reconciler
from modelapp_operator.names import Reason
from modelapp_operator.poller import AppKey
from modelapp_operator.settings import OperatorSettings
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
