"""serve.nodeSelector, tolerations, imagePullSecrets and env on every pod the app owns; every container but
Kaniko hardened as Pod Security `restricted` requires."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from modelapp_operator import builders
from modelapp_operator.snapshot import Target, template_hash
from modelapp_operator.spec import AppSpec, Build, parse_spec
from unit.operator.conftest import IMAGES, NAME, make_app, make_spec, raw_spec, sha_of

pytestmark = pytest.mark.unit

GPU_POOL = {"kubernetes.azure.com/agentpool": "gpu"}
SPOT = {
    "key": "kubernetes.azure.com/scalesetpriority",
    "operator": "Equal",
    "value": "spot",
    "effect": "NoSchedule",
}
EVICTION = {
    "key": "node.kubernetes.io/unreachable",
    "operator": "Exists",
    "effect": "NoExecute",
    "tolerationSeconds": 30,
}
ENV = [
    {"name": "SCORING_WORKERS", "value": "2"},
    {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "api"}}},
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
]
SERVE = {
    "replicas": 2,
    "port": 8080,
    "nodeSelector": GPU_POOL,
    "tolerations": [SPOT, EVICTION],
    "imagePullSecrets": [{"name": "acr-pull"}],
    "env": ENV,
}
BUILD = Build(destination="registry.example/ml/diabetes", push_secret="acr-push")
PLACED = {
    "nodeSelector": GPU_POOL,
    "tolerations": [SPOT, EVICTION],
    "imagePullSecrets": [{"name": "acr-pull"}],
}


def placed_spec(**changes: Any) -> AppSpec:
    return dataclasses.replace(parse_spec(NAME, raw_spec(serve=SERVE)), **changes)


def serving_pod(spec: AppSpec, baked: bool = False) -> dict[str, Any]:
    target = Target("1.0.0", sha_of("1.0.0"), "registry.example/ml/diabetes@sha256:" + "1" * 64, baked)
    pod: dict[str, Any] = builders.pod_template(NAME, spec, target, IMAGES)["spec"]
    return pod


def build_pod(spec: AppSpec) -> dict[str, Any]:
    image_spec = dataclasses.replace(spec, packaging="Image", build=BUILD)
    job = builders.build_job(make_app(), image_spec, IMAGES, "1.0.0", sha_of("1.0.0"), "https://x/")
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def verify_pod(spec: AppSpec) -> dict[str, Any]:
    job = builders.verify_job(
        make_app(), spec, "registry.example/ml/diabetes@sha256:" + "1" * 64, "1.0.0", "a"
    )
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def test_parse_spec_reads_placement_pulls_and_env() -> None:
    spec = parse_spec(NAME, raw_spec(serve=SERVE))
    assert spec.node_selector == GPU_POOL
    assert spec.tolerations == (SPOT, EVICTION)
    assert spec.image_pull_secrets == ("acr-pull",)
    assert spec.env == tuple(ENV)
    bare = parse_spec(NAME, raw_spec())
    assert (bare.node_selector, bare.tolerations, bare.image_pull_secrets, bare.env) == ({}, (), (), ())


@pytest.mark.parametrize("make_pod", [serving_pod, build_pod, verify_pod], ids=["serving", "build", "verify"])
def test_every_pod_of_the_app_is_placed_and_pulls_with_the_secrets(make_pod: Any) -> None:
    pod = make_pod(placed_spec())
    assert {k: pod[k] for k in PLACED} == PLACED


def test_env_goes_to_the_scorer_and_the_contract_test_only() -> None:
    spec = placed_spec()
    serving = containers(serving_pod(spec))
    assert serving["scorer"]["env"] == ENV
    assert all(e["name"].startswith(("MODELAPP_", "AZURE_")) for e in serving["fetch-model"]["env"])
    assert containers(verify_pod(spec))["smoke"]["env"] == ENV
    build = containers(build_pod(spec))
    assert build["kaniko"]["env"] == [{"name": "DOCKER_CONFIG", "value": "/kaniko/.docker"}]
    assert not {e["name"] for e in build["fetch-model"]["env"]} & {e["name"] for e in ENV}


def test_unset_fields_leave_the_pods_as_they_were() -> None:
    spec = make_spec()
    for pod in (serving_pod(spec), build_pod(spec), verify_pod(spec)):
        assert not {"nodeSelector", "tolerations", "imagePullSecrets"} & pod.keys()
        assert all("env" not in c or c["name"] in ("fetch-model", "kaniko") for c in containers(pod).values())


@pytest.mark.parametrize(
    "change",
    [
        {"node_selector": {"pool": "spot"}},
        {"tolerations": (SPOT,)},
        {"image_pull_secrets": ("other",)},
        {"env": ({"name": "A", "value": "1"},)},
    ],
)
def test_a_change_rolls_the_deployment_but_does_not_rebuild(change: dict[str, Any]) -> None:
    spec = make_spec(packaging="Image", build=BUILD)
    changed = dataclasses.replace(spec, **change)
    target = Target("1.0.0", sha_of("1.0.0"), "img@sha256:" + "1" * 64, True)
    before = template_hash(builders.pod_template(NAME, spec, target, IMAGES))
    after = template_hash(builders.pod_template(NAME, changed, target, IMAGES))
    assert before != after
    assert builders.build_hash(spec, IMAGES, "1.0.0", sha_of("1.0.0")) == builders.build_hash(
        changed, IMAGES, "1.0.0", sha_of("1.0.0")
    )


def test_a_placement_fix_gets_a_new_build_job_but_env_does_not() -> None:
    spec = make_spec(packaging="Image", build=BUILD)

    def name(s: AppSpec) -> str:
        job = builders.build_job(make_app(), s, IMAGES, "1.0.0", sha_of("1.0.0"), "https://x/")
        return str(job["metadata"]["name"])

    digest = builders.build_hash(spec, IMAGES, "1.0.0", sha_of("1.0.0"))
    assert name(spec) == builders.job_name(NAME, "build", digest)  # unchanged for apps that set none
    assert name(dataclasses.replace(spec, tolerations=(SPOT,))) != name(spec)
    assert name(dataclasses.replace(spec, env=tuple(ENV))) == name(spec)


# --- Pod Security `restricted` for every container but Kaniko -------------------------------------------------


def _effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    ctx = container.get("securityContext") or {}
    return ctx[key] if key in ctx else (pod.get("securityContext") or {}).get(key)


def _all_pods() -> list[tuple[str, dict[str, Any]]]:
    spec = placed_spec()
    return [
        ("serving (InitContainer)", serving_pod(spec)),
        ("serving (Image)", serving_pod(spec, baked=True)),
        ("build", build_pod(spec)),
        ("verify", verify_pod(spec)),
    ]


@pytest.mark.parametrize(("what", "pod"), _all_pods(), ids=[w for w, _ in _all_pods()])
def test_every_container_but_kaniko_runs_as_restricted_requires(what: str, pod: dict[str, Any]) -> None:
    for name, c in containers(pod).items():
        if name == "kaniko":
            continue
        ctx = c["securityContext"]
        assert _effective(pod, c, "runAsNonRoot") is True, (what, name)
        assert _effective(pod, c, "runAsUser") == builders.RUN_AS == 10001, (what, name)
        assert _effective(pod, c, "seccompProfile") == {"type": "RuntimeDefault"}, (what, name)
        assert ctx["allowPrivilegeEscalation"] is False, (what, name)
        assert ctx["capabilities"] == {"drop": ["ALL"]}, (what, name)
        assert ctx["readOnlyRootFilesystem"] is True, (what, name)
        # What it writes is an emptyDir: /tmp always, the model or build context for fetch.
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert "/tmp" in mounts, (what, name)
        if name == "fetch-model":
            out = c["args"][c["args"].index("--out") + 1]
            assert any(out.startswith(path) and not m.get("readOnly") for path, m in mounts.items()), out
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all({"emptyDir", "secret"} & v.keys() for v in volumes.values()), what


def test_kaniko_runs_as_root_without_escalation_which_is_pod_security_baseline() -> None:
    kaniko = containers(build_pod(make_spec()))["kaniko"]
    ctx = kaniko["securityContext"]
    assert (ctx["runAsUser"], ctx["runAsNonRoot"]) == (0, False)
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in ctx
    assert "add" not in ctx.get("capabilities", {})
