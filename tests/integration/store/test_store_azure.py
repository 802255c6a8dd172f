"""AzureBlobStore against a real Azurite: versions, verification, call counts, auth and outages."""

from __future__ import annotations

import dataclasses
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas
from modelapp_bundle import ChecksumMismatch, Manifest, manifest_for_directory
from modelapp_operator.store import (
    DEFAULT_ACCOUNT_HOSTS,
    AzureBlobStore,
    BlobCredentials,
    ContainerNotFound,
    HostNotAllowed,
    ModelStore,
    StoreAuthError,
    StoreOptions,
    StoreUnavailable,
    VersionExists,
    VersionNotFound,
    download_verified,
    store_from_credentials,
    versions_in,
)
from testbed import Azurite

pytestmark = pytest.mark.integration

# Fail fast: these tests expect errors, and the SDK's default retries take minutes.
FAST = StoreOptions(connection_timeout=2, read_timeout=10, retry_total=1, retry_initial_backoff=0.1)


async def publish(store: AzureBlobStore, bundle_dir: Path, prefix: str, version: str) -> Manifest:
    manifest = manifest_for_directory(bundle_dir, version=version, metrics={"r2": float(len(version))})
    await store.upload_version(prefix, bundle_dir, manifest)
    return manifest


def sas_for(azurite: Azurite, container: str, permission: ContainerSasPermissions) -> str:
    return generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=permission,
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


async def test_round_trip(store: AzureBlobStore, bundle_dir: Path, tmp_path: Path) -> None:
    assert isinstance(store, ModelStore)
    manifest = await publish(store, bundle_dir, "diabetes/", "1.0.0")
    [ref] = await store.list_versions("diabetes")
    assert ref.version == "1.0.0"
    assert ref.etag.startswith('"')
    assert await store.version_exists("diabetes", "1.0.0")
    assert await store.read_manifest("diabetes", "1.0.0") == manifest
    out = tmp_path / "out"
    assert await download_verified(store, "diabetes", "1.0.0", out) == manifest
    assert (out / "model.onnx").read_bytes() == (bundle_dir / "model.onnx").read_bytes()
    assert (out / "extra" / "labels.txt").read_text() == "no\nyes\n"
    assert store.location("diabetes", "1.0.0").endswith(f"/{store.container}/diabetes/1.0.0/")


async def test_half_uploaded_version_is_invisible(
    store: AzureBlobStore, raw_container: ContainerClient, bundle_dir: Path
) -> None:
    await publish(store, bundle_dir, "diabetes", "1")
    raw_container.upload_blob("diabetes/2/model.onnx", b"partial upload")
    assert [r.version for r in await store.list_versions("diabetes")] == ["1"]
    assert [r.version for r in versions_in(await store.snapshot(), "diabetes")] == ["1"]
    assert not await store.version_exists("diabetes", "2")
    with pytest.raises(VersionNotFound):
        await store.read_manifest("diabetes", "2")


async def test_conditional_manifest_read(
    store: AzureBlobStore, raw_container: ContainerClient, bundle_dir: Path
) -> None:
    manifest = await publish(store, bundle_dir, "diabetes", "1")
    [ref] = await store.list_versions("diabetes")
    before = store.calls
    assert await store.read_manifest("diabetes", "1", etag=ref.etag) is None
    assert store.calls - before == 1
    # Listing etags and single-blob etags are the same value whatever quoting the service used.
    assert ref.etag.strip('"') == raw_container.get_blob_client(
        "diabetes/1/modelapp.json"
    ).get_blob_properties().etag.strip('"')
    assert await store.read_manifest("diabetes", "1", etag='"0xstale"') == manifest


async def test_one_snapshot_is_one_list_call(
    store: AzureBlobStore, raw_container: ContainerClient, bundle_dir: Path
) -> None:
    for version in ("1", "2", "3"):
        await publish(store, bundle_dir, "diabetes", version)
    await publish(store, bundle_dir, "team/mnist", "7")
    raw_container.upload_blob("diabetes/4/model.onnx", b"partial")
    before = store.calls
    snapshot = await store.snapshot()
    assert store.calls - before == 1
    assert snapshot.calls == 1
    assert [r.version for r in versions_in(snapshot, "diabetes")] == ["1", "2", "3"]
    assert [r.version for r in versions_in(snapshot, "team/mnist/")] == ["7"]
    before = store.calls
    assert [r.version for r in await store.list_versions("diabetes")] == ["1", "2", "3"]
    assert store.calls - before == 1


async def test_a_snapshot_of_folders_lists_each_folder_and_nothing_else(
    store: AzureBlobStore, bundle_dir: Path
) -> None:
    for prefix in ("a", "b", "a/nested", "elsewhere"):
        await publish(store, bundle_dir, prefix, "1")
    before = store.calls
    snapshot = await store.snapshot(["b", "a/", "a/nested/"])
    assert snapshot.prefixes == ("a/", "b/")
    assert store.calls - before == 2
    assert {blob.name.split("/")[0] for blob in snapshot.blobs} == {"a", "b"}
    assert [r.version for r in versions_in(snapshot, "a/nested")] == ["1"]
    assert snapshot.covers("a/nested/")
    assert not snapshot.covers("elsewhere/")


async def test_the_test_beds_azurite_is_sent_credentials_only_once_allowed(
    azurite: Azurite, raw_container: ContainerClient
) -> None:
    creds = BlobCredentials(connection_string=azurite.connection_string)
    name = raw_container.container_name
    refused = dataclasses.replace(FAST, allowed_hosts=DEFAULT_ACCOUNT_HOSTS)
    with pytest.raises(HostNotAllowed, match=r"127\.0\.0\.1:10000"):
        store_from_credentials(None, name, creds, options=refused)
    allowed = dataclasses.replace(FAST, allowed_hosts=("127.0.0.1:10000",))
    async with store_from_credentials(None, name, creds, options=allowed) as store:
        assert (await store.snapshot()).blobs == ()


async def test_publish_counts_one_call_per_file_plus_check_and_manifest(
    store: AzureBlobStore, bundle_dir: Path
) -> None:
    before = store.calls
    await publish(store, bundle_dir, "diabetes", "1")
    # existence check + 3 files + manifest
    assert store.calls - before == 5


async def test_existing_version_needs_overwrite(
    store: AzureBlobStore, raw_container: ContainerClient, bundle_dir: Path
) -> None:
    first = await publish(store, bundle_dir, "diabetes", "1")
    (bundle_dir / "extra" / "labels.txt").unlink()
    (bundle_dir / "model.onnx").write_bytes(b"retrained")
    with pytest.raises(VersionExists):
        await publish(store, bundle_dir, "diabetes", "1")
    assert await store.read_manifest("diabetes", "1") == first
    second = manifest_for_directory(bundle_dir, version="1")
    await store.upload_version("diabetes", bundle_dir, second, overwrite=True)
    assert await store.read_manifest("diabetes", "1") == second
    names = sorted(b.name for b in raw_container.list_blobs(name_starts_with="diabetes/1/"))
    assert names == ["diabetes/1/contract.json", "diabetes/1/model.onnx", "diabetes/1/modelapp.json"]


async def test_tampered_blob_fails_verification_and_leaves_nothing(
    store: AzureBlobStore, raw_container: ContainerClient, bundle_dir: Path, tmp_path: Path
) -> None:
    manifest = await publish(store, bundle_dir, "diabetes", "1")
    raw_container.upload_blob("diabetes/1/model.onnx", b"evil weights", overwrite=True)
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumMismatch) as info:
        await download_verified(store, "diabetes", "1", dest)
    assert info.value.file == "model.onnx"
    assert info.value.expected == manifest.files["model.onnx"].sha256
    assert not (dest / "model.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diabetes"]  # noqa: ASYNC240 - no staging left


async def test_account_key_and_sas_credentials(
    azurite: Azurite, store: AzureBlobStore, raw_container: ContainerClient, bundle_dir: Path
) -> None:
    await publish(store, bundle_dir, "diabetes", "1")
    name = raw_container.container_name
    by_key = store_from_credentials(
        azurite.account_url, name, BlobCredentials(account_key=azurite.account_key)
    )
    async with by_key:
        assert [r.version for r in await by_key.list_versions("diabetes")] == ["1"]
    read_only = sas_for(azurite, name, ContainerSasPermissions(read=True, list=True))
    by_sas = store_from_credentials(
        azurite.account_url, name, BlobCredentials(sas_token=read_only), options=FAST
    )
    async with by_sas:
        assert [r.version for r in await by_sas.list_versions("diabetes")] == ["1"]
        assert by_sas.location("diabetes", "1").startswith(azurite.account_url)
        assert "sig=" not in by_sas.location("diabetes", "1")
        with pytest.raises(StoreAuthError) as info:
            await publish(by_sas, bundle_dir, "diabetes", "2")
    assert read_only not in str(info.value)


async def test_wrong_account_key_is_an_auth_error(azurite: Azurite, raw_container: ContainerClient) -> None:
    wrong = "d3Jvbmcta2V5LWJ1dC1iYXNlNjQtZW5jb2RlZC1hbmQtbG9uZy1lbm91Z2g="
    creds = BlobCredentials(account_key=wrong)
    async with store_from_credentials(
        azurite.account_url, raw_container.container_name, creds, options=FAST
    ) as s:
        with pytest.raises(StoreAuthError, match="403") as info:
            await s.snapshot()
    assert wrong not in str(info.value)
    assert info.value.__cause__ is None


async def test_missing_container(azurite: Azurite) -> None:
    creds = BlobCredentials(connection_string=azurite.connection_string)
    async with store_from_credentials(None, "no-such-container-x1", creds, options=FAST) as s:
        with pytest.raises(ContainerNotFound, match="no-such-container-x1"):
            await s.list_versions("diabetes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_store_fails_fast(azurite: Azurite) -> None:
    url = f"http://127.0.0.1:{free_port()}/{azurite.account_name}"
    options = StoreOptions(connection_timeout=1, retry_total=1, retry_initial_backoff=0.1, retry_jitter=0)
    creds = BlobCredentials(account_key=azurite.account_key)
    started = time.monotonic()
    async with store_from_credentials(url, "models", creds, options=options) as s:
        with pytest.raises(StoreUnavailable, match="unreachable") as info:
            await s.snapshot()
        assert s.calls == 2  # the first try and one retry
    assert time.monotonic() - started < 10
    assert azurite.account_key not in str(info.value)
