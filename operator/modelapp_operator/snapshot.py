"""One reconcile's world (pure types): what was observed going in, and the plan coming out.

``gather`` fills an ``Observed``; the planner's stages read it and decide a ``Plan``; ``apply`` carries the
plan out. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelapp_operator.figures import CanaryFigures, ShadowFigures
from modelapp_operator.names import ANN_MODEL_SHA256, ANN_MODEL_VERSION, ANN_TEMPLATE_HASH, Reason
from modelapp_operator.spec import AppSpec
from modelapp_operator.status import ModelAppStatus, ServingVersion, status_body

# --- outcomes that are not decisions: why nothing moves --------------------------------------------------


@dataclass(frozen=True)
class Stalled:
    """A problem only a person can fix (a missing Secret, refused credentials, a wrong container)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Waiting:
    """Something that moves by itself, or by a person's expected action (an outage, a build, an approval)."""

    reason: str
    message: str


# --- configuration the planner is given ------------------------------------------------------------------


@dataclass(frozen=True)
class AllowedImages:
    """Images a ModelApp may name besides the operator's defaults: shell-style patterns (``*`` matches across
    ``/``), e.g. ``myacr.azurecr.io/scoring/*``. Empty: only the default."""

    serve: tuple[str, ...] = ()
    base: tuple[str, ...] = ()
    kaniko: tuple[str, ...] = ()


@dataclass(frozen=True)
class Images:
    """Operator-wide image defaults (chart values), used where the spec leaves one out, and what else a
    ModelApp may name."""

    fetch: str
    scorer: str
    kaniko: str
    base: str
    allowed: AllowedImages = AllowedImages()


# --- the observed world ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """A complete published version as the store's listing shows it."""

    version: str
    etag: str
    uploaded: datetime


@dataclass(frozen=True)
class ManifestInfo:
    """What the planner needs from a version's manifest."""

    version: str
    sha256: str
    etag: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreView:
    """The store as the shared poller last saw it. ``versions`` is None when it could not be listed.

    ``manifests`` holds the manifests gather read, for the candidates in policy order until a usable one;
    ``unusable`` the candidates whose manifest could not be used, with why.
    """

    versions: tuple[Published, ...] | None
    problem: Stalled | Waiting | None = None
    manifests: dict[str, ManifestInfo] = field(default_factory=dict)
    unusable: dict[str, str] = field(default_factory=dict)


def template_hash(template: dict[str, Any]) -> str:
    """The content hash a pod template of ours carries in its annotations."""
    return str(template.get("metadata", {}).get("annotations", {}).get(ANN_TEMPLATE_HASH, ""))


def template_annotation(template: dict[str, Any], key: str) -> str:
    return str(template.get("metadata", {}).get("annotations", {}).get(key, ""))


def scorer_image(template: dict[str, Any]) -> str:
    for c in template.get("spec", {}).get("containers", []):
        if c.get("name") == "scorer":
            return str(c.get("image", ""))
    return ""


@dataclass(frozen=True)
class DeploymentState:
    generation: int
    observed_generation: int
    spec_replicas: int
    replicas: int
    updated: int
    available: int
    template: dict[str, Any]
    spec_hash: str
    last_good: dict[str, Any] | None
    deadline_exceeded: bool
    # Why the newest pods do not start, in their own words (a failing fetch init container), if they don't.
    pod_problem: str = ""

    @property
    def template_hash(self) -> str:
        return template_hash(self.template)

    @property
    def version(self) -> str:
        return template_annotation(self.template, ANN_MODEL_VERSION)

    @property
    def sha256(self) -> str:
        return template_annotation(self.template, ANN_MODEL_SHA256)

    @property
    def settled(self) -> bool:
        """The Deployment controller has seen the latest spec, so its status speaks of it."""
        return self.observed_generation >= self.generation

    @property
    def complete(self) -> bool:
        n = self.spec_replicas
        return self.settled and self.updated == n and self.available == n and self.replicas == n


@dataclass(frozen=True)
class JobState:
    """A build or verify Job as observed, with the tail of its main container's termination message."""

    name: str
    active: bool
    succeeded: bool
    failed: bool
    message: str = ""
    reason: str = ""
    # While the Job has never had a pod: the API server's refusal of them (its FailedCreate event).
    rejected: str = ""


@dataclass(frozen=True)
class SourceState:
    """``versionPolicy.follow``: the followed ModelApp as read (its status is its word on what serves)."""

    key: str  # namespace/name
    serving: ServingVersion | None
    ready: bool
    bakes: bool  # its packaging is Image: its serving image holds the model
    quarantined: frozenset[str] = frozenset()
    ready_since: str | None = None  # its Ready condition's last transition, when Ready


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile knows; ``status`` is the ModelApp's status as read, typed."""

    app: dict[str, Any]
    spec: AppSpec
    status: ModelAppStatus
    store: StoreView
    deployment: DeploymentState | None
    service_exists: bool
    now: datetime
    stalled: Stalled | None = None
    jobs: dict[str, JobState] = field(default_factory=dict)  # this app's build and verify Jobs by name
    source: SourceState | None = None  # versionPolicy.follow
    canary: DeploymentState | None = None  # rollout.strategy.canary: the candidate's Deployment
    shadow: DeploymentState | None = None  # rollout.shadow: the candidate's Deployment ...
    shadow_service_ip: str = ""  # ... and its Service's cluster IP
    canary_figures: CanaryFigures | None = None  # scraped while a canary step is held
    shadow_figures: ShadowFigures | None = None  # scraped from the serving pods while shadowing

    @property
    def name(self) -> str:
        return str(self.app["metadata"]["name"])

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.app["metadata"].get("annotations") or {})

    @property
    def generation(self) -> int:
        return int(self.app["metadata"].get("generation", 0))


# --- the plan --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the pods should run: a model version and the image that serves it."""

    version: str
    sha256: str
    image: str
    baked: bool = False  # Image packaging: the model is in the image, no init container


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: Reason
    message: str


@dataclass(frozen=True)
class Plan:
    """What one reconcile decided, for ``apply`` to carry out."""

    status: ModelAppStatus
    apply: list[dict[str, Any]] = field(default_factory=list)  # server-side applied (Deployment, Service)
    create: list[dict[str, Any]] = field(default_factory=list)  # created once; 409 means done (Jobs)
    remove_annotations: list[str] = field(default_factory=list)  # user actions consumed
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    # (metric, value) observations for the act layer to record, e.g. time to serving.
    observations: list[tuple[str, float]] = field(default_factory=list)

    @property
    def body(self) -> dict[str, Any]:
        """The status as the API spells it (what ``apply`` writes)."""
        return status_body(self.status)
