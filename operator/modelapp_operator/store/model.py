"""Model store interface: the ModelStore Protocol, listing snapshots and the pure version index over them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

from modelapp_bundle import MANIFEST_FILE, Manifest

_MANIFEST_SUFFIX = "/" + MANIFEST_FILE


def normalize_prefix(prefix: str) -> str:
    """``"diabetes"``, ``"/diabetes/"`` and ``"diabetes/"`` are one folder ``"diabetes/"``; ``""`` is root."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def version_path(prefix: str, version: str) -> str:
    return f"{normalize_prefix(prefix)}{version}/"


def covering_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    """The fewest folders whose listings hold every folder of ``prefixes``: ``team/`` covers ``team/a/``;
    ``""`` (the whole container) covers everything and is what no prefixes at all ask for."""
    folders = sorted({normalize_prefix(p) for p in prefixes})
    if not folders or "" in folders:
        return ("",)
    kept: list[str] = []
    for folder in folders:  # sorted: an ancestor comes before the folders under it
        if not (kept and folder.startswith(kept[-1])):
            kept.append(folder)
    return tuple(kept)


@dataclass(frozen=True)
class BlobInfo:
    name: str
    etag: str
    last_modified: datetime
    size: int


@dataclass(frozen=True)
class VersionRef:
    """A complete version: its manifest blob exists. ``etag`` changes whenever the manifest is rewritten."""

    version: str
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class ContainerSnapshot:
    """Every blob of a container under ``prefixes`` (``""``: all of them) as of one listing, so one list
    pass serves any number of apps reading those prefixes or folders under them."""

    container: str
    blobs: tuple[BlobInfo, ...]
    taken_at: datetime
    # Requests the listing took (one per page; more if other operations ran on the store meanwhile).
    # Not part of equality: two snapshots with the same blobs are the same observation.
    calls: int = field(default=0, compare=False)
    prefixes: tuple[str, ...] = ("",)

    def covers(self, prefix: str) -> bool:
        """Whether this listing saw every blob under ``prefix``."""
        folder = normalize_prefix(prefix)
        return any(folder.startswith(p) for p in self.prefixes)

    @cached_property
    def _versions_by_prefix(self) -> Mapping[str, tuple[VersionRef, ...]]:
        index: dict[str, list[VersionRef]] = {}
        for blob in self.blobs:
            if not blob.name.endswith(_MANIFEST_SUFFIX):
                continue
            folder = blob.name[: -len(_MANIFEST_SUFFIX)]
            parent, _, version = folder.rpartition("/")
            if not version:
                continue
            prefix = f"{parent}/" if parent else ""
            index.setdefault(prefix, []).append(VersionRef(version, blob.etag, blob.last_modified))
        return {p: tuple(sorted(refs, key=lambda r: r.version)) for p, refs in index.items()}

    def versions(self, prefix: str) -> list[VersionRef]:
        return list(self._versions_by_prefix.get(normalize_prefix(prefix), ()))


def versions_in(snapshot: ContainerSnapshot, prefix: str) -> list[VersionRef]:
    """Complete versions directly under ``prefix`` (sorted by name; ordering policy is the caller's)."""
    return snapshot.versions(prefix)


@runtime_checkable
class ModelStore(Protocol):
    """Where published model versions live. Implementations count every backend API call in ``calls``."""

    calls: int

    @property
    def container(self) -> str: ...

    async def snapshot(self, prefixes: Sequence[str] = ("",)) -> ContainerSnapshot:
        """List the folders ``prefixes`` (by default the whole container) once each."""
        ...

    async def list_versions(self, prefix: str) -> list[VersionRef]:
        """Complete versions under ``prefix`` from one flat listing of that prefix."""
        ...

    async def version_exists(self, prefix: str, version: str) -> bool: ...

    async def read_manifest(self, prefix: str, version: str, etag: str | None = None) -> Manifest | None:
        """The version's manifest; ``None`` if ``etag`` is given and still current. Raises VersionNotFound."""
        ...

    async def download_version(self, prefix: str, version: str, out_dir: Path) -> Manifest:
        """Write the version's files and manifest under ``out_dir``, verifying every sha256 and size."""
        ...

    async def upload_version(
        self, prefix: str, bundle_dir: Path, manifest: Manifest, *, overwrite: bool = False
    ) -> VersionRef:
        """Upload the files listed in ``manifest`` from ``bundle_dir``, then the manifest last."""
        ...

    def location(self, prefix: str, version: str) -> str:
        """A credential-free URL of the version folder, for labels and messages."""
        ...

    async def close(self) -> None: ...
