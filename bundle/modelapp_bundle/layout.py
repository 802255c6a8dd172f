"""Where things are in a bundle: the file names, the schema version, the errors, and the name and path checks."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Final

SCHEMA_VERSION: Final = 1
MODEL_FILE: Final = "model.onnx"
MANIFEST_FILE: Final = "modelapp.json"
CONTRACT_FILE: Final = "contract.json"
MANIFEST_TMP: Final = f".{MANIFEST_FILE}.tmp"
"""The manifest being written, renamed to MANIFEST_FILE once complete; never part of a bundle."""

# One path segment: versions and names become blob "folders", URL parts and image paths, so no "/" and no
# leading dot.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class BundleError(Exception):
    """A bundle that must not be published or served; the message says why in one line."""


class ManifestError(BundleError, ValueError):
    """A manifest that cannot be parsed or violates the schema."""


class ChecksumMismatch(BundleError):
    """A bundle file whose size or content does not match the manifest."""

    def __init__(self, file: str, expected: str, actual: str, what: str = "sha256") -> None:
        self.file = file
        self.expected = expected
        self.actual = actual
        super().__init__(f"checksum mismatch for {file}: expected {what} {expected}, got {actual}")


def validate_segment(value: str, what: str) -> str:
    """Return ``value`` if it is usable as a version or bundle name, else raise ManifestError."""
    if not _SEGMENT.fullmatch(value):
        raise ManifestError(
            f"invalid {what} {value!r}: use letters, digits, '.', '_', '+', '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return value


def validate_bundle_path(path: str) -> str:
    """Reject paths that could escape the bundle directory when a manifest from storage is downloaded."""
    pure = PurePosixPath(path)
    if (
        not path
        or "\\" in path
        or "\x00" in path
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise ManifestError(f"invalid bundle file path {path!r}: must be a relative POSIX path without '..'")
    return path
