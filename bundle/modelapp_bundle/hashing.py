"""sha256 of bundle files: the one streaming hash (files on disk and downloads alike) and the bundle digest."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelapp_bundle.layout import ChecksumMismatch

CHUNK: Final = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class FileEntry(BaseModel):
    """One file of a bundle as the manifest lists it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    size: int = Field(ge=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX64.fullmatch(value):
            raise ValueError("must be 64 lowercase hex characters")
        return value


class Sha256Stream:
    """sha256 and size of bytes that arrive in chunks."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self.size += len(chunk)

    def entry(self) -> FileEntry:
        return FileEntry(sha256=self._digest.hexdigest(), size=self.size)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> FileEntry:
    stream = Sha256Stream()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            stream.update(chunk)
    return stream.entry()


def check_entry(file: str, expected: FileEntry, actual: FileEntry) -> None:
    """Raise ChecksumMismatch unless ``actual`` is what the manifest lists (a content change names both hashes)."""
    if actual.sha256 != expected.sha256:
        raise ChecksumMismatch(file, expected.sha256, actual.sha256)
    if actual.size != expected.size:
        raise ChecksumMismatch(file, str(expected.size), str(actual.size), what="size")


def bundle_digest(files: Mapping[str, FileEntry | str]) -> str:
    """sha256 of one ``"<path> <sha256>\\n"`` line per file, paths sorted by code point (``sorted``)."""
    lines = []
    for path in sorted(files):
        entry = files[path]
        lines.append(f"{path} {entry if isinstance(entry, str) else entry.sha256}\n")
    return sha256_bytes("".join(lines).encode("utf-8"))
