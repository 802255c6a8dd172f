"""Version semantics shared by every ModelStore, written once over a handful of blob primitives."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from modelapp_bundle import (
    MANIFEST_FILE,
    ChecksumMismatch,
    Manifest,
    ManifestError,
    Sha256Stream,
    check_entry,
    verify_files,
)

from modelapp_operator.store.errors import ManifestInvalid, VersionChanged, VersionExists, VersionNotFound
from modelapp_operator.store.model import (
    BlobInfo,
    ContainerSnapshot,
    ModelStore,
    VersionRef,
    covering_prefixes,
    normalize_prefix,
    version_path,
)

# fetch stages a download in a hidden directory of this name inside its output directory.
STAGING_PREFIX = ".staging-"


class BlobMissing(Exception):
    """Primitive-level: the named blob does not exist."""


class BlobExists(Exception):
    """Primitive-level: a create-only write found the blob already there."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BlobModelStore(abc.ABC):
    """A ModelStore over a flat blob namespace; subclasses implement the underscore primitives."""

    def __init__(self, container: str, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._container = container
        self._clock = clock
        self.calls = 0

    @property
    def container(self) -> str:
        return self._container

    # --- primitives --------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def _list(self, prefix: str) -> list[BlobInfo]: ...

    @abc.abstractmethod
    async def _properties(self, name: str) -> BlobInfo | None: ...

    @abc.abstractmethod
    async def _get(self, name: str, if_none_match: str | None) -> tuple[bytes, str] | None:
        """Content and etag, or None when ``if_none_match`` is the current etag. Raises BlobMissing."""

    @abc.abstractmethod
    def _stream(self, name: str) -> AsyncIterator[bytes]:
        """Content in chunks. Raises BlobMissing."""

    @abc.abstractmethod
    async def _put_file(self, name: str, path: Path) -> None: ...

    @abc.abstractmethod
    async def _put_bytes(self, name: str, data: bytes, *, overwrite: bool, content_type: str) -> BlobInfo:
        """Write a small blob. Raises BlobExists if it exists and not ``overwrite``."""

    @abc.abstractmethod
    async def _delete(self, name: str) -> None:
        """Delete if present."""

    @abc.abstractmethod
    def location(self, prefix: str, version: str) -> str: ...

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- ModelStore ----------------------------------------------------------------------------------------

    async def snapshot(self, prefixes: Sequence[str] = ("",)) -> ContainerSnapshot:
        before = self.calls
        folders = covering_prefixes(prefixes)
        blobs = [blob for folder in folders for blob in await self._list(folder)]
        return ContainerSnapshot(
            self._container, tuple(blobs), self._clock(), calls=self.calls - before, prefixes=folders
        )

    async def list_versions(self, prefix: str) -> list[VersionRef]:
        folder = normalize_prefix(prefix)
        blobs = await self._list(folder)
        return ContainerSnapshot(self._container, tuple(blobs), self._clock()).versions(folder)

    async def version_exists(self, prefix: str, version: str) -> bool:
        return await self._properties(version_path(prefix, version) + MANIFEST_FILE) is not None

    async def read_manifest(self, prefix: str, version: str, etag: str | None = None) -> Manifest | None:
        name = version_path(prefix, version) + MANIFEST_FILE
        try:
            got = await self._get(name, etag)
        except BlobMissing:
            raise VersionNotFound(
                f"version {version!r} not found in {self._container}/{normalize_prefix(prefix)} "
                "(no manifest: missing or still uploading)"
            ) from None
        if got is None:
            return None
        try:
            manifest = Manifest.parse(got[0])
        except ManifestError as exc:
            raise ManifestInvalid(f"{self._container}/{name}: {exc}") from None
        if manifest.version != version:
            raise ManifestInvalid(
                f"{self._container}/{name}: manifest says version {manifest.version!r}, folder is {version!r}"
            )
        return manifest

    async def download_version(self, prefix: str, version: str, out_dir: Path) -> Manifest:
        manifest = await self.read_manifest(prefix, version)
        assert manifest is not None  # no etag given, so never "not modified"
        base = version_path(prefix, version)
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        for path, entry in sorted(manifest.files.items()):
            dest = out_dir / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            stream = Sha256Stream()
            try:
                with dest.open("wb") as fh:
                    async for chunk in self._stream(base + path):
                        stream.update(chunk)
                        fh.write(chunk)
                check_entry(path, entry, stream.entry())
            except BlobMissing:
                dest.unlink(missing_ok=True)
                raise ChecksumMismatch(path, entry.sha256, "missing") from None
            except ChecksumMismatch:
                # A file that failed verification must never be mistaken for a good one later.
                dest.unlink(missing_ok=True)
                raise
        (out_dir / MANIFEST_FILE).write_bytes(manifest.to_json())
        return manifest

    async def upload_version(
        self, prefix: str, bundle_dir: Path, manifest: Manifest, *, overwrite: bool = False
    ) -> VersionRef:
        base = version_path(prefix, manifest.version)
        manifest_name = base + MANIFEST_FILE
        # Catch a file edited after the manifest was computed before anything is written.
        await asyncio.to_thread(verify_files, bundle_dir, manifest)
        if not overwrite:
            if await self._properties(manifest_name) is not None:
                raise VersionExists(self._exists_message(prefix, manifest.version))
        else:
            # Hide the version while its files change, then drop files the new bundle no longer has.
            await self._delete(manifest_name)
            for blob in await self._list(base):
                if blob.name[len(base) :] not in manifest.files:
                    await self._delete(blob.name)
        for path in sorted(manifest.files):
            await self._put_file(base + path, bundle_dir / path)
        try:
            info = await self._put_bytes(
                manifest_name, manifest.to_json(), overwrite=overwrite, content_type="application/json"
            )
        except BlobExists:
            raise VersionExists(self._exists_message(prefix, manifest.version)) from None
        return VersionRef(manifest.version, info.etag, info.last_modified)

    def _exists_message(self, prefix: str, version: str) -> str:
        return f"version {version!r} already exists in {self._container}/{normalize_prefix(prefix)}"


async def download_verified(
    store: ModelStore, prefix: str, version: str, dest: Path, expect_sha256: str | None = None
) -> Manifest:
    """Download into a hidden staging directory inside ``dest`` and move files into place only once all
    verified, and (with ``expect_sha256``) only if the version is still the one that was resolved.

    ``dest`` is the one place written: where fetch runs (an init container with a read-only root
    filesystem), its parent, the working directory, HOME and TMPDIR may all be read-only. On any
    failure nothing of the version is left in ``dest`` (nor ``dest`` itself, if this created it).
    """
    created = not await asyncio.to_thread(dest.exists)
    staging = await asyncio.to_thread(_make_staging, dest)
    done = False
    try:
        manifest = await store.download_version(prefix, version, staging)
        # Re-read from disk: what gets moved is exactly what was verified.
        await asyncio.to_thread(verify_files, staging, manifest)
        if expect_sha256 is not None and manifest.sha256 != expect_sha256:
            raise VersionChanged(version, expect_sha256, manifest.sha256)
        await asyncio.to_thread(_move_into, staging, dest, [*sorted(manifest.files), MANIFEST_FILE])
        done = True
        return manifest
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
        if created and not done:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(dest.rmdir)


def _make_staging(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest.absolute()))


def _move_into(staging: Path, dest: Path, paths: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / path, target)
