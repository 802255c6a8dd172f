"""The ModelApp spec as frozen dataclasses, parsed from the (already schema-validated) object."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go-style durations as the CRD accepts them (``90s``, ``1m30s``, ``1.5h``) in seconds."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total


@dataclass(frozen=True)
class BlobSource:
    account_url: str
    container: str
    prefix: str
    secret_name: str | None = None
    workload_identity_client_id: str | None = None
    # Per-object workload identity: a ServiceAccount of the ModelApp's namespace the store is read as.
    identity_service_account: str | None = None


@dataclass(frozen=True)
class Follow:
    """``versionPolicy.follow``: serve what another ModelApp has served Ready for ``soak`` seconds."""

    model_app: str
    namespace: str
    soak: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.model_app}"


@dataclass(frozen=True)
class VersionPolicy:
    kind: Literal["latest", "semver", "pinned", "follow"] = "latest"
    value: str = ""  # the range for semver, the version for pinned, the source (ns/name) for follow

    def describe(self) -> str:
        return {
            "latest": "latest",
            "semver": f"semver {self.value!r}",
            "pinned": f"pinned {self.value}",
            "follow": f"follow {self.value}",
        }[self.kind]


@dataclass(frozen=True)
class CanaryStep:
    weight: int
    pause: float


@dataclass(frozen=True)
class Analysis:
    max_error_ratio: float = 0.01
    max_p99_seconds: float | None = None
    min_requests: int = 1
    prometheus_url: str | None = None


@dataclass(frozen=True)
class Canary:
    steps: tuple[CanaryStep, ...]
    analysis: Analysis = Analysis()


@dataclass(frozen=True)
class Shadow:
    sample: float = 0.1
    min_requests: int = 100
    max_mean_abs_diff: float | None = None
    min_agreement: float | None = None
    max_p99_latency_ratio: float | None = None
    timeout: float = 1800.0


@dataclass(frozen=True)
class Promotion:
    metric: str
    maximize: bool = True


@dataclass(frozen=True)
class Build:
    destination: str
    push_secret: str
    base_image: str | None = None
    kaniko_image: str | None = None
    timeout_seconds: int = 1800
    cache: bool = True


@dataclass(frozen=True)
class AppSpec:
    """Everything the planner needs from ``spec``; defaults mirror the CRD's."""

    model_name: str
    source: BlobSource | None  # None only with versionPolicy.follow (the source ModelApp's store is used)
    policy: VersionPolicy = VersionPolicy()
    follow: Follow | None = None
    poll_interval: float = 60.0
    promotion: Promotion | None = None
    packaging: Literal["Image", "InitContainer"] = "Image"
    build: Build | None = None
    image: str | None = None
    replicas: int = 2
    port: int = 8080
    service_account: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    # Pod placement and pulls, the same on every pod the app owns (serving, build, contract test), and
    # the scorer's environment; kept as the Pod API spells them (the CRD validated them).
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    env: tuple[dict[str, Any], ...] = ()
    manual_approval: bool = False
    contract_test: bool = True
    progress_deadline_seconds: int = 300
    canary: Canary | None = None
    shadow: Shadow | None = None

    @property
    def store(self) -> BlobSource:
        """``model.source``, for what reads the store; the CRD lets only a follower leave it out."""
        if self.source is None:
            raise ValueError("this ModelApp has no model.source (it follows another ModelApp)")
        return self.source


def parse_spec(name: str, spec: dict[str, Any], namespace: str = "") -> AppSpec:
    model = spec.get("model") or {}
    policy, follow = _policy(model.get("versionPolicy") or {"latest": {}}, namespace)
    promo = model.get("promotion")
    build = spec.get("build")
    serve = spec.get("serve") or {}
    rollout = spec.get("rollout") or {}
    return AppSpec(
        model_name=str(model.get("name") or name),
        source=_source(model.get("source")),
        policy=policy,
        follow=follow,
        poll_interval=parse_duration(str(model.get("pollInterval") or "60s")),
        promotion=Promotion(promo["metric"], promo.get("direction", "Maximize") == "Maximize")
        if promo
        else None,
        packaging="InitContainer" if spec.get("packaging") == "InitContainer" else "Image",
        build=_build(build) if build else None,
        image=serve.get("image"),
        replicas=int(serve.get("replicas", 2)),
        port=int(serve.get("port", 8080)),
        service_account=serve.get("serviceAccountName"),
        resources=dict(serve.get("resources") or {}),
        node_selector={str(k): str(v) for k, v in (serve.get("nodeSelector") or {}).items()},
        tolerations=tuple(dict(t) for t in serve.get("tolerations") or ()),
        image_pull_secrets=tuple(str(s["name"]) for s in serve.get("imagePullSecrets") or ()),
        env=tuple(dict(e) for e in serve.get("env") or ()),
        manual_approval=rollout.get("approval") == "Manual",
        contract_test=bool(rollout.get("contractTest", True)),
        progress_deadline_seconds=int(rollout.get("progressDeadlineSeconds", 300)),
        canary=_canary((rollout.get("strategy") or {}).get("canary")),
        shadow=_shadow(rollout.get("shadow")),
    )


def _source(source: dict[str, Any] | None) -> BlobSource | None:
    if not source:
        return None
    blob = source.get("azureBlob") or {}
    auth = blob.get("auth") or {}
    return BlobSource(
        account_url=str(blob.get("accountUrl", "")).rstrip("/"),
        container=str(blob.get("container", "")),
        prefix=str(blob.get("prefix") or ""),
        secret_name=(auth.get("secretRef") or {}).get("name"),
        workload_identity_client_id=(auth.get("workloadIdentity") or {}).get("clientId"),
        identity_service_account=(auth.get("workloadIdentity") or {}).get("serviceAccountName"),
    )


def _policy(vp: dict[str, Any], namespace: str) -> tuple[VersionPolicy, Follow | None]:
    if "follow" in vp:
        f = vp["follow"] or {}
        follow = Follow(
            model_app=str(f.get("modelApp", "")),
            namespace=str(f.get("namespace") or namespace),
            soak=parse_duration(str(f.get("soak") or "0s")),
        )
        return VersionPolicy("follow", follow.key), follow
    if "semver" in vp:
        return VersionPolicy("semver", str(vp["semver"].get("range", ""))), None
    if "pinned" in vp:
        return VersionPolicy("pinned", str(vp["pinned"].get("version", ""))), None
    return VersionPolicy(), None


def _build(build: dict[str, Any]) -> Build:
    return Build(
        destination=build["destination"],
        push_secret=build["pushSecretRef"]["name"],
        base_image=build.get("baseImage"),
        kaniko_image=build.get("kanikoImage"),
        timeout_seconds=int(build.get("timeoutSeconds", 1800)),
        cache=bool(build.get("cache", True)),
    )


def _canary(canary: dict[str, Any] | None) -> Canary | None:
    if not canary:
        return None
    a = canary.get("analysis") or {}
    p99 = a.get("maxP99LatencySeconds")
    return Canary(
        steps=tuple(
            CanaryStep(int(s["weight"]), parse_duration(str(s.get("pause") or "1m"))) for s in canary["steps"]
        ),
        analysis=Analysis(
            max_error_ratio=float(a.get("maxErrorRatio", 0.01)),
            max_p99_seconds=float(p99) if p99 is not None else None,
            min_requests=int(a.get("minRequests", 1)),
            prometheus_url=a.get("prometheusUrl"),
        ),
    )


def _shadow(shadow: dict[str, Any] | None) -> Shadow | None:
    if not shadow:
        return None

    def opt(key: str) -> float | None:
        return float(shadow[key]) if shadow.get(key) is not None else None

    return Shadow(
        sample=float(shadow.get("sample", 0.1)),
        min_requests=int(shadow.get("minRequests", 100)),
        max_mean_abs_diff=opt("maxMeanAbsDiff"),
        min_agreement=opt("minAgreement"),
        max_p99_latency_ratio=opt("maxP99LatencyRatio"),
        timeout=parse_duration(str(shadow.get("timeout") or "30m")),
    )
