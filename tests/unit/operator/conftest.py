"""Factories for the operator's pure core: ModelApp objects, store views and Deployment states built by hand."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from modelapp_operator import builders
from modelapp_operator.snapshot import (
    AllowedImages,
    DeploymentState,
    Images,
    ManifestInfo,
    Observed,
    Plan,
    Published,
    Stalled,
    StoreView,
    Target,
    template_hash,
)
from modelapp_operator.spec import AppSpec, parse_spec
from modelapp_operator.status import parse_status

NAME = "diabetes"
NAMESPACE = "ml"
UID = "0b7c6d2e-1111-2222-3333-444455556666"
SECRET_NAME = "blob-creds"
# Looks like a real Azure connection string; no planner or builder output may ever contain it.
FAKE_ACCOUNT_KEY = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWstMTIzNDU2Nzg5MA=="
FAKE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=https;AccountName=acct;"
    f"AccountKey={FAKE_ACCOUNT_KEY};EndpointSuffix=core.windows.net"
)
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
IMAGES = Images(
    fetch="registry.example/modelapp-operator:1.0",
    scorer="registry.example/scoring-service:1.0",
    kaniko="registry.example/kaniko@sha256:" + "0" * 64,
    base="registry.example/scoring-service:1.0",
    # The planner's tests name many images; test_admit checks the allow-lists themselves.
    allowed=AllowedImages(serve=("*",), base=("*",), kaniko=("*",)),
)


def raw_spec(**overrides: Any) -> dict[str, Any]:
    """A ModelApp spec as the API server would hand it over (CRD defaults filled in)."""
    spec: dict[str, Any] = {
        "model": {
            "source": {
                "azureBlob": {
                    "accountUrl": "https://acct.blob.core.windows.net/",
                    "container": "models",
                    "prefix": "diabetes/",
                    "auth": {"secretRef": {"name": SECRET_NAME}},
                }
            },
            "versionPolicy": {"latest": {}},
            "pollInterval": "60s",
        },
        "packaging": "InitContainer",
        "serve": {"replicas": 2, "port": 8080},
        "rollout": {"approval": "Automatic", "contractTest": True, "progressDeadlineSeconds": 300},
    }
    spec.update(overrides)
    return spec


def make_spec(**changes: Any) -> AppSpec:
    """The parsed spec, with dataclass fields replaced (``replicas=3``, ``image="x"``...)."""
    return dataclasses.replace(parse_spec(NAME, raw_spec()), **changes)


def make_app(status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    app: dict[str, Any] = {
        "apiVersion": "modelapp.dev/v1alpha1",
        "kind": "ModelApp",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": UID, "generation": generation},
        "spec": raw_spec(),
    }
    if status is not None:
        app["status"] = copy.deepcopy(status)
    return app


def sha_of(version: str) -> str:
    return (version.replace(".", "") + "ab" * 32)[:64]


def etag_of(version: str, republished: int = 0) -> str:
    return f'"0x8D{version.replace(".", "")}{republished:02d}"'


def published(version: str, *, minutes: int = 0, republished: int = 0) -> Published:
    return Published(version, etag_of(version, republished), T0 + timedelta(minutes=minutes))


def store(
    *versions: str, metrics: dict[str, dict[str, float]] | None = None, republished: int = 0
) -> StoreView:
    """Complete versions (uploaded in the order given), each with a readable manifest."""
    pubs = tuple(published(v, minutes=i, republished=republished) for i, v in enumerate(versions))
    manifests = {
        p.version: ManifestInfo(p.version, sha_of(p.version), p.etag, (metrics or {}).get(p.version, {}))
        for p in pubs
    }
    return StoreView(pubs, None, manifests)


def template_for(version: str, spec: AppSpec | None = None, image: str | None = None) -> dict[str, Any]:
    spec = spec or make_spec()
    target = Target(version, sha_of(version), image or spec.image or IMAGES.scorer)
    return builders.pod_template(NAME, spec, target, IMAGES)


def deployment(
    template: dict[str, Any],
    *,
    last_good: dict[str, Any] | None = None,
    replicas: int = 2,
    updated: int | None = None,
    available: int | None = None,
    total: int | None = None,
    generation: int = 1,
    observed_generation: int | None = None,
    deadline_exceeded: bool = False,
) -> DeploymentState:
    """A Deployment as observed; by default its rollout is complete (every replica updated and available)."""
    return DeploymentState(
        generation=generation,
        observed_generation=generation if observed_generation is None else observed_generation,
        spec_replicas=replicas,
        replicas=replicas if total is None else total,
        updated=replicas if updated is None else updated,
        available=replicas if available is None else available,
        template=template,
        spec_hash="",
        last_good=last_good,
        deadline_exceeded=deadline_exceeded,
    )


def observe(
    app: dict[str, Any],
    view: StoreView,
    dep: DeploymentState | None,
    *,
    spec: AppSpec | None = None,
    service_exists: bool = True,
    now: datetime = T0,
    stalled: tuple[str, str] | None = None,
) -> Observed:
    status = parse_status(app.get("status"))
    problem = Stalled(*stalled) if stalled else None
    return Observed(app, spec or make_spec(), status, view, dep, service_exists, now, problem)


def after(app: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The ModelApp as the next reconcile reads it: the plan's status written back."""
    return make_app(plan.body, int(app["metadata"].get("generation", 1)))


def cond(plan: Plan, type_: str) -> dict[str, Any]:
    found = [c for c in plan.body.get("conditions", []) if c["type"] == type_]
    assert len(found) == 1, f"expected one {type_} condition in {plan.body.get('conditions')}"
    return found[0]


def reasons(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def deployments(plan: Plan) -> list[dict[str, Any]]:
    return [o for o in plan.apply if o["kind"] == "Deployment"]


def serving_status(version: str, template: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A status in which ``version`` serves with ``template`` and nothing is pending."""
    return {
        "latestVersion": {"version": version, "etag": etag_of(version), "sha256": sha_of(version)},
        "servingVersion": {
            "version": version,
            "sha256": sha_of(version),
            "image": IMAGES.scorer,
            "since": "2026-01-01T00:00:00Z",
            "templateHash": template_hash(template),
        },
        "quarantined": [],
        "history": [],
        **extra,
    }
