"""In-memory ModelStore with the same semantics as the Azure one, for unit tests of the planner."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from modelapp_operator.store.base import BlobExists, BlobMissing, BlobModelStore, _utcnow
from modelapp_operator.store.model import BlobInfo, normalize_prefix

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class _Blob:
    data: bytes
    etag: str
    last_modified: datetime


class InMemoryStore(BlobModelStore):
    """Every primitive counts as one call, like one request against a real store."""

    def __init__(self, container: str = "models", *, clock: Callable[[], datetime] = _utcnow) -> None:
        super().__init__(container, clock=clock)
        self._blobs: dict[str, _Blob] = {}
        self._writes = 0

    def put_blob(self, name: str, data: bytes) -> BlobInfo:
        """Write any blob directly (tests: half-uploaded versions, tampering). Not counted as a call."""
        self._writes += 1
        etag = f'"0x{hashlib.sha256(data).hexdigest()[:12]}{self._writes:04x}"'
        blob = _Blob(data, etag, self._clock())
        self._blobs[name] = blob
        return BlobInfo(name, etag, blob.last_modified, len(data))

    def delete_blob(self, name: str) -> None:
        self._blobs.pop(name, None)

    def blob_names(self) -> list[str]:
        return sorted(self._blobs)

    def location(self, prefix: str, version: str) -> str:
        return f"memory://{self._container}/{normalize_prefix(prefix)}{version}/"

    async def _list(self, prefix: str) -> list[BlobInfo]:
        self.calls += 1
        return [
            BlobInfo(name, b.etag, b.last_modified, len(b.data))
            for name, b in sorted(self._blobs.items())
            if name.startswith(prefix)
        ]

    async def _properties(self, name: str) -> BlobInfo | None:
        self.calls += 1
        blob = self._blobs.get(name)
        return None if blob is None else BlobInfo(name, blob.etag, blob.last_modified, len(blob.data))

    async def _get(self, name: str, if_none_match: str | None) -> tuple[bytes, str] | None:
        self.calls += 1
        blob = self._blobs.get(name)
        if blob is None:
            raise BlobMissing(name)
        if if_none_match is not None and if_none_match == blob.etag:
            return None
        return blob.data, blob.etag

    async def _stream(self, name: str) -> AsyncIterator[bytes]:
        self.calls += 1
        blob = self._blobs.get(name)
        if blob is None:
            raise BlobMissing(name)
        for start in range(0, len(blob.data), _CHUNK):
            yield blob.data[start : start + _CHUNK]

    async def _put_file(self, name: str, path: Path) -> None:
        self.calls += 1
        self.put_blob(name, await asyncio.to_thread(path.read_bytes))

    async def _put_bytes(self, name: str, data: bytes, *, overwrite: bool, content_type: str) -> BlobInfo:
        self.calls += 1
        if not overwrite and name in self._blobs:
            raise BlobExists(name)
        return self.put_blob(name, data)

    async def _delete(self, name: str) -> None:
        self.calls += 1
        self._blobs.pop(name, None)
