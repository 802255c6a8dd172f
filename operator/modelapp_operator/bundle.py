"""Model bundle format: the manifest schema, file digests and the image Dockerfile (pure core)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION: Final = 1
MODEL_FILE: Final = "model.onnx"
MANIFEST_FILE: Final = "modelapp.json"
CONTRACT_FILE: Final = "contract.json"

_CHUNK = 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# One path segment: versions and names become blob "folders" and image paths, so no "/" and no leading dot.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class BundleError(Exception):
    """Base class of bundle problems (bad manifest, bad files)."""


class ManifestError(BundleError, ValueError):
    """A manifest that cannot be parsed or violates the schema."""


class ChecksumMismatch(BundleError):
    """A bundle file whose content does not match the manifest."""

    def __init__(self, file: str, expected: str, actual: str) -> None:
        self.file = file
        self.expected = expected
        self.actual = actual
        super().__init__(f"checksum mismatch for {file}: expected sha256 {expected}, got {actual}")


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


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    size: int = Field(ge=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX64.fullmatch(value):
            raise ValueError("must be 64 lowercase hex characters")
        return value


class Manifest(BaseModel):
    """The ``modelapp.json`` of one version; build with :func:`build_manifest` or :meth:`parse`."""

    # Unknown keys are kept rather than rejected so a newer publisher does not break an older operator.
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    schema_version: int = Field(alias="schemaVersion")
    name: str
    version: str
    created: datetime
    files: dict[str, FileEntry]
    sha256: str
    metrics: dict[str, float] | None = None
    labels: list[str] | None = None
    preprocess: dict[str, Any] | None = None
    contract: str | None = None

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schemaVersion {value} (this release reads {SCHEMA_VERSION})")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_segment(value, "bundle name")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return validate_segment(value, "version")

    @field_validator("created")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a timezone (RFC 3339)")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for path in value:
            validate_bundle_path(path)
        if MODEL_FILE not in value:
            raise ValueError(f"must list {MODEL_FILE}")
        if MANIFEST_FILE in value:
            raise ValueError(f"must not list {MANIFEST_FILE} itself")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        expected = bundle_digest(self.files)
        if self.sha256 != expected:
            raise ValueError(f"sha256 {self.sha256!r} is not the bundle digest of files ({expected})")
        if self.contract is not None and self.contract not in self.files:
            raise ValueError(f"contract {self.contract!r} is not one of the listed files")
        return self

    @classmethod
    def parse(cls, data: bytes | str | Mapping[str, Any]) -> Manifest:
        """Parse and validate manifest JSON, raising ManifestError with every problem found."""
        try:
            raw = dict(data) if isinstance(data, Mapping) else orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ManifestError("manifest must be a JSON object")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ManifestError(_describe(exc)) from None

    def to_json(self) -> bytes:
        return orjson.dumps(
            self.model_dump(mode="json", by_alias=True, exclude_none=True),
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        problems.append(f"{where}: {err['msg']}")
    return "invalid manifest: " + "; ".join(problems)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(sha256=digest.hexdigest(), size=size)


def bundle_digest(files: Mapping[str, FileEntry | str]) -> str:
    """sha256 of one ``"<path> <sha256>\\n"`` line per file, paths sorted by code point (``sorted``)."""
    lines = []
    for path in sorted(files):
        entry = files[path]
        lines.append(f"{path} {entry if isinstance(entry, str) else entry.sha256}\n")
    return sha256_bytes("".join(lines).encode("utf-8"))


def scan_bundle(directory: Path) -> dict[str, FileEntry]:
    """Digest every regular file under ``directory`` except the manifest itself."""
    if not directory.is_dir():
        raise BundleError(f"{directory} is not a directory")
    files: dict[str, FileEntry] = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(directory).as_posix()
        if rel == MANIFEST_FILE:
            continue
        files[validate_bundle_path(rel)] = sha256_file(path)
    if MODEL_FILE not in files:
        raise BundleError(f"{directory} has no {MODEL_FILE}")
    return files


def build_manifest(
    files: Mapping[str, FileEntry],
    *,
    name: str,
    version: str,
    created: datetime,
    metrics: Mapping[str, float] | None = None,
    labels: list[str] | None = None,
    preprocess: Mapping[str, Any] | None = None,
    contract: str | None = None,
) -> Manifest:
    try:
        return Manifest.model_validate(
            {
                "schemaVersion": SCHEMA_VERSION,
                "name": name,
                "version": version,
                "created": created,
                "files": dict(files),
                "sha256": bundle_digest(files),
                "metrics": dict(metrics) if metrics else None,
                "labels": labels,
                "preprocess": dict(preprocess) if preprocess is not None else None,
                "contract": contract,
            }
        )
    except ValidationError as exc:
        raise ManifestError(_describe(exc)) from None


def read_manifest_template(directory: Path) -> dict[str, Any]:
    """The local ``modelapp.json`` of a bundle being published, if any: only its descriptive fields matter."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} must be a JSON object")
    return raw


def manifest_for_directory(
    directory: Path,
    *,
    version: str,
    name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    created: datetime | None = None,
) -> Manifest:
    """Build the manifest to publish ``directory`` as ``version``.

    Labels, preprocess, contract and metrics come from a local modelapp.json if present (files, digests,
    version and created are always recomputed); ``metrics`` overrides or adds to its metrics. The name
    defaults to the local manifest's, then to the directory name.
    """
    template = read_manifest_template(directory)
    files = scan_bundle(directory)
    merged: dict[str, float] = {}
    template_metrics = template.get("metrics") or {}
    if not isinstance(template_metrics, dict):
        raise ManifestError("metrics in the local modelapp.json must be an object")
    merged.update(template_metrics)
    merged.update(metrics or {})
    contract = template.get("contract")
    if contract is None and CONTRACT_FILE in files:
        contract = CONTRACT_FILE
    extra = {k: v for k, v in template.items() if k in {"labels", "preprocess"} and v is not None}
    return build_manifest(
        files,
        name=name or template.get("name") or directory.resolve().name,
        version=version,
        created=created or datetime.now(UTC),
        metrics=merged,
        contract=contract,
        **extra,
    )


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Raise ChecksumMismatch for the first file under ``directory`` that differs from ``manifest``."""
    for path, entry in sorted(manifest.files.items()):
        local = directory / path
        if not local.is_file():
            raise ChecksumMismatch(path, entry.sha256, "missing")
        actual = sha256_file(local)
        if actual.sha256 != entry.sha256:
            raise ChecksumMismatch(path, entry.sha256, actual.sha256)


def _label_value(value: str) -> str:
    if any(c in value for c in "\r\n"):
        raise ValueError(f"label value {value!r} must be a single line")
    # JSON string quoting is valid Dockerfile quoting; "$" is escaped so the builder does not expand it.
    return json.dumps(value).replace("$", "\\$")


def render_dockerfile(base_image: str, bundle_name: str, version: str, sha256: str, source: str) -> str:
    """Dockerfile baking a fetched bundle (the build context) into ``base_image`` at ``/models/<name>``."""
    validate_segment(bundle_name, "bundle name")
    if not base_image or any(c.isspace() for c in base_image):
        raise ValueError(f"invalid base image {base_image!r}")
    labels = {
        "org.opencontainers.image.title": bundle_name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.base.name": base_image,
        "dev.modelapp.model.name": bundle_name,
        "dev.modelapp.model.version": version,
        "dev.modelapp.model.sha256": sha256,
        "dev.modelapp.model.source": source,
    }
    label_lines = " \\\n      ".join(f"{key}={_label_value(value)}" for key, value in labels.items())
    return f"FROM {base_image}\nCOPY . /models/{bundle_name}\nLABEL {label_lines}\n"


DOCKERIGNORE: Final = "Dockerfile\n.dockerignore\n"
"""Written next to the Dockerfile so ``COPY .`` copies the bundle only."""
