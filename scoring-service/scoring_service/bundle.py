"""Model bundle format: discovery, manifest (`modelapp.json`) parsing, sha256 verification and writing.

The operator's `modelapp publish/fetch` uses the same format, so the digest rules here must not drift:
every file is listed with its sha256 and size, and the bundle digest is the sha256 of the UTF-8 text
made of one `"<path> <sha256>\\n"` line per file, paths sorted.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "modelapp.json"
CONTRACT_FILE = "contract.json"
SCHEMA_VERSION = 1
_CHUNK = 1 << 20
_SEGMENT = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"


class BundleError(Exception):
    """A bundle that must not be served; the message is the reason logged and shown on readiness."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Preprocess(BaseModel):
    """How the scorer turns PNG/JPEG bytes into the model's input tensor (see README)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: tuple[int, int] = Field(description="[height, width] the image is resized to")
    color: Literal["grayscale", "rgb"] = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    input: str | None = None
    """Model input fed by the images; defaults to the model's only input."""

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1:
            raise ValueError("size must be positive")
        return value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(v == 0 for v in value):
            raise ValueError("std must not contain 0")
        return value

    @property
    def channels(self) -> int:
        return 1 if self.color == "grayscale" else 3


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(alias="schemaVersion")
    # Same segment rule as the operator's publisher: names and versions become URL and blob path parts.
    name: str = Field(pattern=_SEGMENT)
    version: str = Field(pattern=_SEGMENT)
    created: datetime
    files: dict[str, FileEntry]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    metrics: dict[str, float] | None = None
    labels: list[str] | None = None
    preprocess: Preprocess | None = None
    contract: str | None = None

    @field_validator("files")
    @classmethod
    def _safe_paths(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for path in value:
            _check_relative(path)
        if MODEL_FILE not in value:
            raise ValueError(f"files must list {MODEL_FILE}")
        return value


def _check_relative(path: str) -> None:
    pure = PurePosixPath(path)
    bad_part = any(part in ("", ".", "..") for part in path.split("/"))
    if not path or pure.is_absolute() or bad_part or "\\" in path or "\x00" in path or path == MANIFEST_FILE:
        raise ValueError(f"invalid bundle file path {path!r}")


class Bundle(BaseModel):
    """A bundle as the scorer sees it after discovery (verification happens in `verify`)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    name: str
    version: str
    manifest: Manifest | None = None

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def contract_path(self) -> Path | None:
        if self.manifest is not None and self.manifest.contract:
            return self.path / self.manifest.contract
        default = self.path / CONTRACT_FILE
        return default if default.is_file() else None


def is_bundle(path: Path) -> bool:
    return (path / MODEL_FILE).is_file() or (path / MANIFEST_FILE).is_file()


def discover(model_dir: Path) -> list[Path]:
    """`model_dir` itself if it is a bundle, else its immediate sub-folders that are bundles."""
    if not model_dir.is_dir():
        raise BundleError(f"model directory {model_dir} does not exist")
    if is_bundle(model_dir):
        return [model_dir]
    return sorted(p for p in model_dir.iterdir() if p.is_dir() and is_bundle(p))


def read_bundle(path: Path) -> Bundle:
    """Parse the manifest if present (no hashing yet); a bare model.onnx is `<folder>` version 1."""
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        return Bundle(path=path, name=path.resolve().name, version="1")
    try:
        manifest = Manifest.model_validate(orjson.loads(manifest_path.read_bytes()))
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        raise BundleError(f"{manifest_path}: invalid manifest: {_short(exc)}") from None
    return Bundle(path=path, name=manifest.name, version=manifest.version, manifest=manifest)


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_digest(file_hashes: dict[str, str]) -> str:
    text = "".join(f"{path} {file_hashes[path]}\n" for path in sorted(file_hashes))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify(bundle: Bundle) -> None:
    """Check every listed file's size and sha256, and the bundle digest; raise BundleError if any differ."""
    if not bundle.model_path.is_file():
        raise BundleError(f"{bundle.path}: {MODEL_FILE} is missing")
    manifest = bundle.manifest
    if manifest is None:
        return
    for rel, entry in sorted(manifest.files.items()):
        path = bundle.path / rel
        if not path.is_file():
            raise BundleError(f"{bundle.path}: {rel} is listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise BundleError(f"{bundle.path}: {rel} size {size} != manifest size {entry.size}")
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise BundleError(f"{bundle.path}: {rel} sha256 {actual} != manifest sha256 {entry.sha256}")
    expected = bundle_digest({rel: e.sha256 for rel, e in manifest.files.items()})
    if expected != manifest.sha256:
        raise BundleError(f"{bundle.path}: bundle sha256 {manifest.sha256} != digest of its files {expected}")
    if manifest.contract and manifest.contract not in manifest.files:
        raise BundleError(f"{bundle.path}: contract {manifest.contract} is not listed in files")


def write_manifest(
    bundle_dir: Path,
    name: str,
    version: str,
    *,
    metrics: dict[str, float] | None = None,
    labels: list[str] | None = None,
    preprocess: dict[str, Any] | None = None,
    contract: str | None = None,
    created: datetime | None = None,
) -> dict[str, Any]:
    """Hash every file in `bundle_dir` (except the manifest) and write `modelapp.json`, last.

    Written last so a reader that waits for the manifest never sees a half-written bundle.
    Returns the manifest as written.
    """
    if not (bundle_dir / MODEL_FILE).is_file():
        raise BundleError(f"{bundle_dir}: {MODEL_FILE} is missing")
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(bundle_dir).as_posix()
        if rel in (MANIFEST_FILE, f".{MANIFEST_FILE}.tmp"):
            continue
        files[rel] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    if contract is not None and contract not in files:
        raise BundleError(f"{bundle_dir}: contract file {contract} does not exist")
    when = (created or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    manifest: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created": when.isoformat().replace("+00:00", "Z"),
        "files": files,
        "sha256": bundle_digest({rel: f["sha256"] for rel, f in files.items()}),
    }
    if metrics is not None:
        manifest["metrics"] = {k: float(v) for k, v in metrics.items()}
    if labels is not None:
        manifest["labels"] = list(labels)
    if preprocess is not None:
        manifest["preprocess"] = preprocess
    if contract is not None:
        manifest["contract"] = contract
    Manifest.model_validate(manifest)  # never write a manifest the scorer would reject
    tmp = bundle_dir / f".{MANIFEST_FILE}.tmp"
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    tmp.replace(bundle_dir / MANIFEST_FILE)
    return manifest
