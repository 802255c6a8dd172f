"""ModelStore semantics, exercised through the in-memory store the planner tests use."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelapp_bundle import ChecksumMismatch, Manifest, manifest_for_directory
from modelapp_operator.store import (
    InMemoryStore,
    ManifestInvalid,
    ModelStore,
    VersionExists,
    VersionNotFound,
    download_verified,
    versions_in,
)

pytestmark = pytest.mark.unit


async def publish(store: InMemoryStore, bundle_dir: Path, version: str, **kw: object) -> Manifest:
    manifest = manifest_for_directory(bundle_dir, version=version)
    await store.upload_version("diabetes/", bundle_dir, manifest, **kw)  # type: ignore[arg-type]
    return manifest


def test_in_memory_store_satisfies_the_protocol() -> None:
    assert isinstance(InMemoryStore(), ModelStore)


async def test_round_trip(bundle_dir: Path, tmp_path: Path) -> None:
    store = InMemoryStore()
    manifest = await publish(store, bundle_dir, "1.0")
    assert store.blob_names()[-1] == "diabetes/1.0/modelapp.json"
    refs = await store.list_versions("diabetes")
    assert [r.version for r in refs] == ["1.0"]
    assert await store.read_manifest("diabetes", "1.0") == manifest
    out = tmp_path / "out"
    assert await store.download_version("diabetes", "1.0", out) == manifest
    assert (out / "extra" / "vocab.txt").read_text() == "a\nb\n"
    assert Manifest.parse((out / "modelapp.json").read_bytes()) == manifest
    assert await store.version_exists("diabetes", "1.0")
    assert not await store.version_exists("diabetes", "2.0")


async def test_manifest_is_written_last(bundle_dir: Path) -> None:
    store = InMemoryStore()
    order: list[str] = []
    put_blob = store.put_blob

    def recording(name: str, data: bytes):  # type: ignore[no-untyped-def]
        order.append(name)
        return put_blob(name, data)

    store.put_blob = recording  # type: ignore[method-assign]
    await publish(store, bundle_dir, "1.0")
    assert order[-1] == "diabetes/1.0/modelapp.json"
    assert len(order) == 4


async def test_half_uploaded_version_is_invisible(bundle_dir: Path) -> None:
    store = InMemoryStore()
    await publish(store, bundle_dir, "1.0")
    store.put_blob("diabetes/2.0/model.onnx", b"partial")
    assert [r.version for r in await store.list_versions("diabetes")] == ["1.0"]
    with pytest.raises(VersionNotFound, match=r"'2.0'"):
        await store.read_manifest("diabetes", "2.0")


async def test_snapshot_is_one_call_for_any_number_of_versions(bundle_dir: Path) -> None:
    store = InMemoryStore()
    for version in ("1", "2", "3"):
        await publish(store, bundle_dir, version)
    before = store.calls
    snapshot = await store.snapshot()
    assert store.calls - before == 1
    assert snapshot.calls == 1
    assert [r.version for r in versions_in(snapshot, "diabetes")] == ["1", "2", "3"]


async def test_existing_version_is_not_overwritten_without_force(bundle_dir: Path) -> None:
    store = InMemoryStore()
    first = await publish(store, bundle_dir, "1.0")
    (bundle_dir / "model.onnx").write_bytes(b"new weights")
    with pytest.raises(VersionExists, match=r"already exists"):
        await publish(store, bundle_dir, "1.0")
    assert await store.read_manifest("diabetes", "1.0") == first


async def test_overwrite_replaces_files_and_drops_stale_ones(bundle_dir: Path) -> None:
    store = InMemoryStore()
    await publish(store, bundle_dir, "1.0")
    [old] = await store.list_versions("diabetes")
    (bundle_dir / "extra" / "vocab.txt").unlink()
    (bundle_dir / "model.onnx").write_bytes(b"new weights")
    second = await publish(store, bundle_dir, "1.0", overwrite=True)
    [new] = await store.list_versions("diabetes")
    assert new.etag != old.etag
    assert await store.read_manifest("diabetes", "1.0") == second
    assert "diabetes/1.0/extra/vocab.txt" not in store.blob_names()


async def test_conditional_read(bundle_dir: Path) -> None:
    store = InMemoryStore()
    manifest = await publish(store, bundle_dir, "1.0")
    [ref] = await store.list_versions("diabetes")
    assert await store.read_manifest("diabetes", "1.0", etag=ref.etag) is None
    assert await store.read_manifest("diabetes", "1.0", etag='"stale"') == manifest


async def test_tampered_file_fails_and_leaves_nothing(bundle_dir: Path, tmp_path: Path) -> None:
    store = InMemoryStore()
    manifest = await publish(store, bundle_dir, "1.0")
    store.put_blob("diabetes/1.0/model.onnx", b"evil")
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumMismatch) as info:
        await download_verified(store, "diabetes", "1.0", dest)
    assert info.value.file == "model.onnx"
    assert info.value.expected == manifest.files["model.onnx"].sha256
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diabetes"]  # noqa: ASYNC240


async def test_missing_file_is_a_checksum_failure(bundle_dir: Path, tmp_path: Path) -> None:
    store = InMemoryStore()
    await publish(store, bundle_dir, "1.0")
    store.delete_blob("diabetes/1.0/contract.json")
    with pytest.raises(ChecksumMismatch, match=r"contract.json.*missing"):
        await download_verified(store, "diabetes", "1.0", tmp_path / "dest")


async def test_download_verified_moves_files_into_an_existing_directory(
    bundle_dir: Path, tmp_path: Path
) -> None:
    store = InMemoryStore()
    await publish(store, bundle_dir, "1.0")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    await download_verified(store, "diabetes", "1.0", dest)
    names = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert names == ["contract.json", "extra/vocab.txt", "keep.txt", "model.onnx", "modelapp.json"]


async def test_invalid_manifests_are_reported(bundle_dir: Path) -> None:
    store = InMemoryStore()
    store.put_blob("diabetes/1.0/modelapp.json", b"{oops")
    with pytest.raises(ManifestInvalid, match=r"diabetes/1.0/modelapp.json: manifest is not valid JSON"):
        await store.read_manifest("diabetes", "1.0")
    manifest = await publish(store, bundle_dir, "2.0")
    store.put_blob("diabetes/3.0/modelapp.json", manifest.to_json())
    with pytest.raises(ManifestInvalid, match=r"manifest says version '2.0', folder is '3.0'"):
        await store.read_manifest("diabetes", "3.0")


async def test_upload_refuses_files_changed_after_the_manifest(bundle_dir: Path) -> None:
    store = InMemoryStore()
    manifest = manifest_for_directory(bundle_dir, version="1.0")
    (bundle_dir / "model.onnx").write_bytes(b"changed")
    with pytest.raises(ChecksumMismatch):
        await store.upload_version("diabetes", bundle_dir, manifest)
    assert store.blob_names() == []
