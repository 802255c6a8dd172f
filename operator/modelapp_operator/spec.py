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
class VersionPolicy:
    kind: Literal["latest", "semver", "pinned"] = "latest"
    value: str = ""  # the range for semver, the version for pinned

    def describe(self) -> str:
        return {"latest": "latest", "semver": f"semver {self.value!r}", "pinned": f"pinned {self.value}"}[
            self.kind
        ]


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
    source: BlobSource
    policy: VersionPolicy = VersionPolicy()
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


def parse_spec(name: str, spec: dict[str, Any]) -> AppSpec:
    model = spec.get("model") or {}
    blob = (model.get("source") or {}).get("azureBlob") or {}
    auth = blob.get("auth") or {}
    source = BlobSource(
        account_url=str(blob.get("accountUrl", "")).rstrip("/"),
        container=str(blob.get("container", "")),
        prefix=str(blob.get("prefix") or ""),
        secret_name=(auth.get("secretRef") or {}).get("name"),
        workload_identity_client_id=(auth.get("workloadIdentity") or {}).get("clientId"),
        identity_service_account=(auth.get("workloadIdentity") or {}).get("serviceAccountName"),
    )
    vp = model.get("versionPolicy") or {"latest": {}}
    if "semver" in vp:
        policy = VersionPolicy("semver", str(vp["semver"].get("range", "")))
    elif "pinned" in vp:
        policy = VersionPolicy("pinned", str(vp["pinned"].get("version", "")))
    else:
        policy = VersionPolicy()
    promo = model.get("promotion")
    build = spec.get("build")
    serve = spec.get("serve") or {}
    rollout = spec.get("rollout") or {}
    return AppSpec(
        model_name=str(model.get("name") or name),
        source=source,
        policy=policy,
        poll_interval=parse_duration(str(model.get("pollInterval") or "60s")),
        promotion=Promotion(promo["metric"], promo.get("direction", "Maximize") == "Maximize")
        if promo
        else None,
        packaging="InitContainer" if spec.get("packaging") == "InitContainer" else "Image",
        build=Build(
            destination=build["destination"],
            push_secret=build["pushSecretRef"]["name"],
            base_image=build.get("baseImage"),
            kaniko_image=build.get("kanikoImage"),
            timeout_seconds=int(build.get("timeoutSeconds", 1800)),
            cache=bool(build.get("cache", True)),
        )
        if build
        else None,
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
    )
