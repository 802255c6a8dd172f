"""The ModelApp's status as frozen dataclasses; converted to and from the API's dict only at the edge.

Field names are the API's in snake_case (``image_by_tag`` is ``imageByTag``); ``None`` means "absent", so
what a reconcile did not set is not written. ``tests/unit/operator/test_status.py`` checks these classes
against the CRD's status schema field by field, so a field cannot be declared on one side and forgotten on
the other.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from modelapp_operator.names import Stage

HISTORY_LIMIT = 20
# The oldest entries go first; a version quarantined that long ago is rarely a candidate any more.
QUARANTINE_LIMIT = 50
IMAGES_KEPT = 10


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_since(since: str | None, now: datetime) -> float | None:
    """Seconds from an RFC 3339 timestamp of ours to ``now`` (None when there is none or it is unreadable)."""
    if not since:
        return None
    try:
        start = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=now.tzinfo)
    except ValueError:
        return None
    return max(0.0, (now - start).total_seconds())


@dataclass(frozen=True)
class ConditionStatus:
    """One entry of ``status.conditions`` as written (``conditions.Condition`` is what a stage decides)."""

    type: str
    status: str
    reason: str
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0


@dataclass(frozen=True)
class LatestVersion:
    """The newest complete version in the store, whatever the policy picks."""

    version: str
    etag: str = ""
    seen_at: str = ""
    sha256: str | None = None
    metrics: Mapping[str, float] | None = None


@dataclass(frozen=True)
class ServingVersion:
    version: str
    sha256: str = ""
    image: str = ""
    since: str = ""
    template_hash: str = ""
    image_by_tag: bool | None = None  # Image packaging: the build reported no digest, so the pods pull a tag
    metrics: Mapping[str, float] | None = None
    source: str | None = None  # versionPolicy.follow: the ModelApp (ns/name) the version came from


@dataclass(frozen=True)
class MetricDiff:
    serving: float | None = None
    candidate: float | None = None


@dataclass(frozen=True)
class CanaryStatus:
    """The canary step being held and what its analysis measured (over the canary's requests so far)."""

    step: int  # from 1
    steps: int
    weight: int
    canary_replicas: int = 0
    stable_replicas: int = 0
    share: float = 0.0
    step_since: str | None = None  # None until the step's pods are ready
    requests: int | None = None
    error_ratio: float | None = None
    p99_seconds: float | None = None


@dataclass(frozen=True)
class ShadowStatus:
    """The comparison of the candidate with the serving version on mirrored requests."""

    sample: float
    since: str | None = None
    requests: int | None = None
    failures: int | None = None
    mean_abs_diff: float | None = None
    agreement: float | None = None
    latency_ratio: float | None = None


@dataclass(frozen=True)
class Pending:
    """The version on its way to serving and the stage it is in."""

    version: str
    stage: Stage
    since: str = ""
    sha256: str | None = None
    job: str | None = None
    image: str | None = None
    template_hash: str | None = None
    rollback: bool | None = None
    approved: bool | None = None
    pod_rejected: bool | None = None
    message: str | None = None
    metrics_diff: Mapping[str, MetricDiff] | None = None
    source: str | None = None
    soak_until: str | None = None
    canary: CanaryStatus | None = None
    shadow: ShadowStatus | None = None


@dataclass(frozen=True)
class QuarantineEntry:
    version: str
    etag: str | None = None
    sha256: str | None = None
    reason: str | None = None
    message: str | None = None
    at: str | None = None


@dataclass(frozen=True)
class ImageRecord:
    """A build of one build hash: its image once built, or its failure."""

    version: str
    image: str | None = None
    by_tag: bool | None = None
    verified: bool | None = None
    failed: bool | None = None
    message: str | None = None
    verify_retry: int | None = None


@dataclass(frozen=True)
class NotBetter:
    version: str
    message: str = ""
    at: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    version: str
    event: str
    at: str = ""
    message: str = ""
    image: str | None = None
    duration_seconds: float | None = None


@dataclass(frozen=True)
class ModelAppStatus:
    observed_generation: int | None = None
    replicas: int | None = None
    selector: str | None = None
    conditions: tuple[ConditionStatus, ...] = ()
    latest_version: LatestVersion | None = None
    serving_version: ServingVersion | None = None
    pending: Pending | None = None
    quarantined: tuple[QuarantineEntry, ...] = ()
    images: Mapping[str, ImageRecord] | None = None
    attempts: Mapping[str, int] | None = None
    not_better: NotBetter | None = None
    failed_template_hash: str | None = None
    history: tuple[HistoryEntry, ...] = ()

    # --- reading ---------------------------------------------------------------------------------

    def attempt(self, version: str) -> int:
        """How often a person released ``version`` from quarantine: its Jobs get new names each time."""
        return int((self.attempts or {}).get(version, 0))

    def quarantine_of(self, version: str) -> QuarantineEntry | None:
        return next((q for q in self.quarantined if q.version == version), None)

    def pending_is(self, version: str, stage: Stage | None = None) -> bool:
        p = self.pending
        return p is not None and p.version == version and (stage is None or p.stage == stage)

    # --- changing (each returns a new status) ------------------------------------------------------

    def with_history(self, entry: HistoryEntry) -> ModelAppStatus:
        return dataclasses.replace(self, history=(*self.history, entry)[-HISTORY_LIMIT:])

    def with_quarantine(self, entry: QuarantineEntry) -> ModelAppStatus:
        kept = tuple(q for q in self.quarantined if q.version != entry.version)
        return dataclasses.replace(self, quarantined=(*kept, entry)[-QUARANTINE_LIMIT:])

    def without_quarantine(self, version: str) -> ModelAppStatus:
        return dataclasses.replace(
            self, quarantined=tuple(q for q in self.quarantined if q.version != version)
        )

    def with_image(self, build_hash: str, record: ImageRecord) -> ModelAppStatus:
        images = {k: v for k, v in (self.images or {}).items() if k != build_hash}
        images[build_hash] = record
        while len(images) > IMAGES_KEPT:
            images.pop(next(iter(images)))
        return dataclasses.replace(self, images=images)

    def with_attempt(self, version: str, attempt: int) -> ModelAppStatus:
        return dataclasses.replace(self, attempts={**(self.attempts or {}), version: attempt})


# --- the API's dict ----------------------------------------------------------------------------------

T = TypeVar("T")


def api_name(name: str) -> str:
    """``image_by_tag`` → ``imageByTag``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def to_api(obj: Any) -> Any:
    """A status (or any part of it) as the API's JSON-like value; ``None`` fields are left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is not None:
                out[api_name(f.name)] = to_api(value)
        return out
    if isinstance(obj, StrEnum):
        return str(obj)
    if isinstance(obj, tuple | list):
        return [to_api(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_api(v) for k, v in obj.items()}
    return obj


def from_api(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """A status part from the API's dict; absent fields take their defaults, unknown keys are ignored."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = api_name(f.name)
        if data is not None and key in data and data[key] is not None:
            values[f.name] = _convert(hints[f.name], data[key])
    return cls(**values)


def _convert(hint: Any, value: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        return tuple(_convert(args[0], v) for v in value)
    if origin is Mapping:
        return {str(k): _convert(args[1], v) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_api(hint, value)  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, StrEnum | bool | int | float | str):
        return hint(value)
    return value


def fields_of(cls: type) -> dict[str, Any]:
    """The API field names of a status class and, for nested parts, theirs: ``{"pending": {"job": None}}``."""
    hints = get_type_hints(cls)
    return {api_name(f.name): _shape(hints[f.name]) for f in dataclasses.fields(cls)}


def _shape(hint: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _shape(next(a for a in args if a is not type(None)))
    if origin is tuple:
        return _shape(args[0])
    if origin is Mapping:
        return _shape(args[1])
    if dataclasses.is_dataclass(hint):
        return fields_of(hint)  # type: ignore[arg-type]
    return None


def parse_status(data: Mapping[str, Any] | None) -> ModelAppStatus:
    return from_api(ModelAppStatus, data or {})


def status_body(status: ModelAppStatus) -> dict[str, Any]:
    body: dict[str, Any] = to_api(status)
    return body


__all__ = [
    "HISTORY_LIMIT",
    "CanaryStatus",
    "ConditionStatus",
    "HistoryEntry",
    "ImageRecord",
    "LatestVersion",
    "MetricDiff",
    "ModelAppStatus",
    "NotBetter",
    "Pending",
    "QuarantineEntry",
    "ServingVersion",
    "ShadowStatus",
    "fields_of",
    "parse_status",
    "rfc3339",
    "seconds_since",
    "status_body",
]
