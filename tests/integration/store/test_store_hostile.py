"""The operator's store path against a hostile blob endpoint on 127.0.0.1 (tests/hostile_blob.py), through
the real azure-storage-blob client: no credential for a host outside the allow-list, no token for another
audience, caps and deadlines on what an endpoint sends, a poller that survives a malformed listing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hostile_blob import (
    HostileBlob,
    endless_listing,
    entry,
    listing_of,
    operator_poller,
    run_scenario,
    self_signed,
    trickled_blob,
)
from modelapp_operator.names import Reason
from modelapp_operator.poller import AppKey, Problem
from modelapp_operator.snapshot import Published, Stalled
from modelapp_operator.store import BlobCredentials, StoreUnavailable

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1:*"  # the hostile endpoint's port is random
SAS = BlobCredentials(sas_token="sv=2024-01-01&sig=SECRETSIGNATURE")
KEY = BlobCredentials(account_key="c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs=", account_name="devstoreaccount1")
STORAGE_SCOPE = "https://storage.azure.com/.default"


@pytest.fixture
async def hostile() -> AsyncIterator[HostileBlob]:
    server = await HostileBlob().start()
    yield server
    await server.stop()


def published(version: str) -> Published:
    return Published(version, '"0x8DE000000000001"', datetime.now(UTC))


# --- item 1: no credential for a host outside the allow-list; tokens for storage only --------------------


@pytest.mark.parametrize("creds", [SAS, KEY], ids=["sas", "account-key"])
async def test_a_host_outside_the_allow_list_gets_no_request_and_no_secret(
    hostile: HostileBlob, creds: BlobCredentials
) -> None:
    versions, problem = await first_view(hostile, creds)
    assert hostile.seen == []
    assert versions is None
    assert isinstance(problem, Stalled)
    assert problem.reason == Reason.STORE_MISCONFIGURED
    assert f"127.0.0.1:{hostile.port}" in problem.message
    assert "allowed_account_hosts" in problem.message


async def test_a_redirect_to_another_host_carries_no_credential(hostile: HostileBlob) -> None:
    elsewhere = await HostileBlob().start()
    try:
        hostile.redirect = f"http://localhost:{elsewhere.port}"
        versions, problem = await first_view(
            hostile, SAS, allowed_account_hosts=[f"127.0.0.1:{hostile.port}"]
        )
    finally:
        await elsewhere.stop()
    assert len(hostile.seen) == 1
    assert elsewhere.seen == []
    assert versions is None
    assert isinstance(problem, Stalled)
    assert f"localhost:{elsewhere.port}" in problem.message


def test_a_401_challenge_cannot_choose_the_token_audience(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    got = run_scenario("challenge", cert, key, env={"SSL_CERT_FILE": cert})
    assert got["scopes"] == [STORAGE_SCOPE], got
    assert all("management" not in a for a in got["authorizations"]), got
    assert "management.azure.com" in got["outcome"]


# --- item 7: caps and deadlines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_page", "settings", "said"),
    [
        (1000, {"store_max_list_entries": 5000}, "5000 entries"),
        (0, {"store_max_list_pages": 20}, "20 pages"),
    ],
    ids=["entries", "empty-pages"],
)
async def test_a_listing_that_never_ends_stops_at_its_cap(
    hostile: HostileBlob, per_page: int, settings: dict[str, int], said: str
) -> None:
    hostile.list_handler = endless_listing(per_page)
    start = time.monotonic()
    versions, problem = await first_view(hostile, SAS, allowed_account_hosts=[LOOPBACK], **settings)
    assert versions is None
    assert isinstance(problem, Stalled), problem
    assert said in problem.message
    assert time.monotonic() - start < 15


async def test_a_trickled_manifest_read_ends_at_the_call_deadline(hostile: HostileBlob) -> None:
    hostile.get_handler = trickled_blob(b'{"version": "1", "files": {}}xx', every=1.0)
    reconciler, poller = await operator_poller(
        hostile.account_url, "models", SAS, allowed_account_hosts=[LOOPBACK], store_call_timeout=2
    )
    start = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match="2 s"):
            await poller.manifest("m/", published("1"))
    finally:
        took = time.monotonic() - start
        await reconciler.close()
    assert took < 4, f"a trickled read held for {took:.1f} s"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_400_mib_manifest_is_refused_without_reading_it_whole(framing: str) -> None:
    env = {"MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS": LOOPBACK}
    got = run_scenario("huge-manifest", "400", framing, env=env)
    grew = got["peak_rss_mib"] - got["rss_before_mib"]
    assert grew < 64, got
    assert "larger than" in got["outcome"], got


# --- item 8: a malformed listing is a problem, not the poller's death ---------------------------------------


async def test_an_entry_without_properties_is_reported_and_the_poller_lives_on(hostile: HostileBlob) -> None:
    hostile.list_handler = listing_of([entry("m/1/modelapp.json", properties=False)])
    reconciler, poller = await operator_poller(
        hostile.account_url,
        "models",
        SAS,
        interval=0.2,
        allowed_account_hosts=[LOOPBACK],
        poll_interval_floor_seconds=0,
    )
    try:
        await poller.first_listing(10)
        versions, problem = poller.view(poller_key(), "m/")
        assert versions is None
        assert problem is not None
        assert "properties" in problem.message
        # The endpoint mends its ways: the same poller, still running, sees the version.
        hostile.list_handler = None
        hostile.manifests["m/2/modelapp.json"] = b"{}"
        versions = await eventually_versions(poller)
    finally:
        await reconciler.close()
    assert [v.version for v in versions] == ["2"]


# --- item 10: listing by prefix --------------------------------------------------------------------------


async def test_the_poller_asks_the_blob_service_for_its_prefix_only(hostile: HostileBlob) -> None:
    hostile.manifests.update({"m/1/modelapp.json": b"{}", "other/1/modelapp.json": b"{}"})
    versions, problem = await first_view(hostile, SAS, allowed_account_hosts=[LOOPBACK])
    assert problem is None
    assert [v.version for v in versions or ()] == ["1"]
    lists = [s.query for s in hostile.seen if s.query.get("comp") == "list"]
    assert lists
    assert all(q.get("prefix") == "m/" for q in lists), lists


# --- helpers ---------------------------------------------------------------------------------------------


def poller_key() -> AppKey:
    return AppKey("ns", "app")


async def first_view(
    server: HostileBlob, creds: BlobCredentials, **settings: object
) -> tuple[tuple[Published, ...] | None, Problem | None]:
    """What the app reading ``m/`` sees after the operator's poller first listed ``server``."""
    reconciler, poller = await operator_poller(server.account_url, "models", creds, **settings)
    try:
        await poller.first_listing(20)
        view: tuple[tuple[Published, ...] | None, Problem | None] = poller.view(poller_key(), "m/")
        return view
    finally:
        await reconciler.close()


async def eventually_versions(poller: object, within: float = 10) -> tuple[Published, ...]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        versions, problem = poller.view(poller_key(), "m/")  # type: ignore[attr-defined]
        if versions:
            return tuple(versions)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no versions within {within} s (last problem: {problem})")
