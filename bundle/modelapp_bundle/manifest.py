"""The manifest (``modelapp.json``) of one version: its schema, with the typed ``preprocess`` block, and parsing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelapp_bundle.hashing import FileEntry, bundle_digest
from modelapp_bundle.layout import (
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_VERSION,
    ManifestError,
    validate_bundle_path,
    validate_segment,
)


class Preprocess(BaseModel):
    """How the scorer turns PNG/JPEG bytes into the model's input tensor (see the scorer's README)."""

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

    @model_validator(mode="after")
    def _per_channel(self) -> Preprocess:
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise ValueError(f"{name} needs 1 or {self.channels} values for color {self.color!r}")
        return self

    @property
    def channels(self) -> int:
        return 1 if self.color == "grayscale" else 3


class Batching(BaseModel):
    """Adaptive batching: the scorer runs concurrent requests for this model as one onnxruntime call.

    Only honoured for models whose first (batch) dimension is dynamic on every input and output; the
    scorer's ``SCORING_BATCH_MAX_SIZE`` / ``SCORING_BATCH_MAX_DELAY_MS`` override it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    max_batch_size: int = Field(alias="maxBatchSize", ge=1, le=65536)
    """Rows per onnxruntime call at most; a batch this full runs at once. 1 turns batching off."""
    max_delay_ms: float = Field(default=2.0, alias="maxDelayMs", ge=0, le=1000)
    """Longest a request waits for others to join its batch."""


class Manifest(BaseModel):
    """The ``modelapp.json`` of one version; build with ``build_manifest`` or ``Manifest.parse``."""

    # Unknown keys are kept rather than rejected so a newer publisher does not break an older reader.
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    schema_version: int = Field(alias="schemaVersion")
    name: str
    version: str
    created: datetime
    files: dict[str, FileEntry]
    sha256: str
    metrics: dict[str, float] | None = None
    labels: list[str] | None = None
    preprocess: Preprocess | None = None
    contract: str | None = None
    batching: Batching | None = None

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
    def _utc_if_naive(cls, value: datetime) -> datetime:
        # Writers always give a timezone; an older hand-written manifest without one means UTC.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for path in value:
            validate_bundle_path(path)
        if MODEL_FILE not in value:
            raise ValueError(f"must list {MODEL_FILE}")
        if MANIFEST_FILE in value:
            raise ValueError(
                f"invalid bundle file path {MANIFEST_FILE!r}: must not list {MANIFEST_FILE} itself"
            )
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
            raise ManifestError(describe(exc)) from None

    def to_json(self) -> bytes:
        """The manifest as written: only the fields given (a preprocess block keeps its author's keys)."""
        return orjson.dumps(
            self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True),
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE,
        )

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


def describe(exc: ValidationError) -> str:
    """Every problem on one line, each prefixed with where it is (``preprocess.layout: ...``)."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        problems.append(f"{where}: {err['msg']}")
    return "invalid manifest: " + "; ".join(problems)


def build_manifest(
    files: Mapping[str, FileEntry],
    *,
    name: str,
    version: str,
    created: datetime,
    metrics: Mapping[str, float] | None = None,
    labels: list[str] | None = None,
    preprocess: Preprocess | Mapping[str, Any] | None = None,
    contract: str | None = None,
    batching: Batching | Mapping[str, Any] | None = None,
) -> Manifest:
    """The manifest of ``files``; ``created`` must carry a timezone and is written in UTC, to the second."""
    if created.tzinfo is None:
        raise ManifestError(f"invalid manifest: created {created.isoformat()} must carry a timezone")
    raw = {
        "schemaVersion": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created": created.astimezone(UTC).replace(microsecond=0),
        "files": dict(files),
        "sha256": bundle_digest(files),
        "metrics": dict(metrics) if metrics else None,
        "labels": labels,
        "preprocess": dict(preprocess) if isinstance(preprocess, Mapping) else preprocess,
        "contract": contract,
        "batching": dict(batching) if isinstance(batching, Mapping) else batching,
    }
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(describe(exc)) from None
