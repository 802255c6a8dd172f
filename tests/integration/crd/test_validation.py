"""The ModelApp CRD's validation on the real API server: every user mistake is rejected with a clear message."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from operator_kit import get_modelapp, modelapp_manifest
from testbed import kubectl

pytestmark = pytest.mark.integration

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Sets a dotted path under the manifest (``spec.serve.replicas``), creating dicts on the way."""

    def mutate(body: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = body
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = copy.deepcopy(value)

    return mutate


def _both(*mutations: Mutation) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        for m in mutations:
            m(body)

    return mutate


def _app(name: str = "app") -> dict[str, Any]:
    return modelapp_manifest(name, "models", "diabetes/")


def _apply(namespace: str, body: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    return kubectl("-n", namespace, "apply", *flags, "-f", "-", input=json.dumps(body), check=False)


BLOB = "spec.model.source.azureBlob"
IMAGE_BUILD = _both(
    _set("spec.packaging", "Image"),
    _set(
        "spec.build", {"destination": "myacr.azurecr.io/team/diabetes", "pushSecretRef": {"name": "acr-push"}}
    ),
)
SEMVER_MESSAGE = "semver.range is not a valid semver range"
CONTAINER_MESSAGE = "container must be 3-63 lowercase letters, digits or single hyphens"
DESTINATION_MESSAGE = "build.destination must be an image repository without tag or digest"

MISTAKES: list[tuple[str, Mutation, str]] = [
    ("no-source", _set("spec.model.source", {}), "model.source needs exactly one source"),
    (
        "auth-both",
        _set(f"{BLOB}.auth", {"workloadIdentity": {}, "secretRef": {"name": "blob-creds"}}),
        "auth takes one of workloadIdentity or secretRef, not both",
    ),
    (
        "policy-two",
        _set("spec.model.versionPolicy", {"latest": {}, "pinned": {"version": "1.0.0"}}),
        "versionPolicy must set exactly one of latest, semver, pinned or follow",
    ),
    (
        "policy-none",
        _set("spec.model.versionPolicy", {}),
        "versionPolicy must set exactly one of latest, semver, pinned or follow",
    ),
    (
        "replicas-0",
        _set("spec.serve.replicas", 0),
        "spec.serve.replicas in body should be greater than or equal to 1",
    ),
    (
        "replicas-101",
        _set("spec.serve.replicas", 101),
        "spec.serve.replicas in body should be less than or equal to 100",
    ),
    (
        "port-80",
        _set("spec.serve.port", 80),
        "spec.serve.port in body should be greater than or equal to 1024",
    ),
    (
        "progress-deadline-5",
        _set("spec.rollout.progressDeadlineSeconds", 5),
        "spec.rollout.progressDeadlineSeconds in body should be greater than or equal to 10",
    ),
    ("poll-0.5s", _set("spec.model.pollInterval", "0.5s"), "pollInterval must be between 1s and 24h"),
    ("poll-25h", _set("spec.model.pollInterval", "25h"), "pollInterval must be between 1s and 24h"),
    (
        "poll-soon",
        _set("spec.model.pollInterval", "soon"),
        "pollInterval must be a duration such as 30s, 5m or 1h",
    ),
    (
        "poll-1d",
        _set("spec.model.pollInterval", "1d"),
        "pollInterval must be a duration such as 30s, 5m or 1h",
    ),
    ("container-ab", _set(f"{BLOB}.container", "ab"), "container in body should be at least 3 chars long"),
    ("container-Models", _set(f"{BLOB}.container", "Models"), CONTAINER_MESSAGE),
    ("container-my--models", _set(f"{BLOB}.container", "my--models"), CONTAINER_MESSAGE),
    ("container--models", _set(f"{BLOB}.container", "-models"), CONTAINER_MESSAGE),
    ("container-models-", _set(f"{BLOB}.container", "models-"), CONTAINER_MESSAGE),
    ("prefix-../x", _set(f"{BLOB}.prefix", "../x"), "prefix must not contain '.' or '..' path segments"),
    ("prefix-a/../b", _set(f"{BLOB}.prefix", "a/../b"), "prefix must not contain '.' or '..' path segments"),
    ("prefix-./a", _set(f"{BLOB}.prefix", "./a"), "prefix must not contain '.' or '..' path segments"),
    (
        "prefix-/abs",
        _set(f"{BLOB}.prefix", "/abs"),
        "prefix is relative to the container and must not start with '/'",
    ),
    ("prefix-a//b", _set(f"{BLOB}.prefix", "a//b"), "prefix must not contain '//' or backslashes"),
    (
        "url-ftp",
        _set(f"{BLOB}.accountUrl", "ftp://x"),
        "accountUrl must be an http(s) URL without query string",
    ),
    (
        "url-not-a-url",
        _set(f"{BLOB}.accountUrl", "acct.blob.core.windows.net"),
        "accountUrl must be an http(s) URL",
    ),
    (
        "url-sas-query",
        _set(f"{BLOB}.accountUrl", "https://acct.blob.core.windows.net/?sv=2024&sig=abc"),
        "accountUrl must not carry credentials",
    ),
    (
        "url-sig-in-path",
        _set(f"{BLOB}.accountUrl", "https://acct.blob.core.windows.net/sig=abc"),
        "accountUrl must not carry credentials",
    ),
    (
        "workload-identity-client-id",
        _set(f"{BLOB}.auth", {"workloadIdentity": {"clientId": "not-a-guid"}}),
        "workloadIdentity.clientId must be a GUID",
    ),
    ("range->>1", _set("spec.model.versionPolicy", {"semver": {"range": ">>1"}}), SEMVER_MESSAGE),
    ("range-1.2.3.4", _set("spec.model.versionPolicy", {"semver": {"range": "1.2.3.4"}}), SEMVER_MESSAGE),
    ("range-abc", _set("spec.model.versionPolicy", {"semver": {"range": "abc"}}), SEMVER_MESSAGE),
    ("range-empty", _set("spec.model.versionPolicy", {"semver": {"range": ""}}), SEMVER_MESSAGE),
    (
        "range-dangling-or",
        _set("spec.model.versionPolicy", {"semver": {"range": ">=1.0 ||"}}),
        SEMVER_MESSAGE,
    ),
    (
        "pinned-bad",
        _set("spec.model.versionPolicy", {"pinned": {"version": "../1.0"}}),
        "pinned.version must be a version folder name",
    ),
    (
        "image-without-build",
        _set("spec.packaging", "Image"),
        "packaging: Image needs spec.build (destination and pushSecretRef)",
    ),
    (
        "destination-tag",
        _both(IMAGE_BUILD, _set("spec.build.destination", "myacr.azurecr.io/diabetes:1.0")),
        DESTINATION_MESSAGE,
    ),
    (
        "destination-digest",
        _both(IMAGE_BUILD, _set("spec.build.destination", "myacr.azurecr.io/diabetes@sha256:" + "a" * 64)),
        DESTINATION_MESSAGE,
    ),
    (
        "destination-uppercase",
        _both(IMAGE_BUILD, _set("spec.build.destination", "myacr.azurecr.io/Diabetes")),
        DESTINATION_MESSAGE,
    ),
    (
        "push-secret-name",
        _both(IMAGE_BUILD, _set("spec.build.pushSecretRef.name", "ACR_push")),
        "pushSecretRef.name must be a valid Secret name",
    ),
    (
        "build-timeout",
        _both(IMAGE_BUILD, _set("spec.build.timeoutSeconds", 10)),
        "spec.build.timeoutSeconds in body should be greater than or equal to 60",
    ),
    (
        "secret-ref-name",
        _set(f"{BLOB}.auth.secretRef.name", "Blob_Creds"),
        "secretRef.name must be a valid Secret name (a DNS subdomain)",
    ),
    (
        "promotion-direction-up",
        _set("spec.model.promotion", {"metric": "r2", "direction": "Up"}),
        'Unsupported value: "Up": supported values: "Maximize", "Minimize"',
    ),
    (
        "model-name",
        _set("spec.model.name", "-diab"),
        "model.name may contain letters, digits, '-', '_' and '.'",
    ),
    (
        "service-account-name",
        _set("spec.serve.serviceAccountName", "Scorer_SA"),
        "serve.serviceAccountName must be a valid ServiceAccount name",
    ),
    (
        "node-selector-key",
        _set("spec.serve.nodeSelector", {"gpu pool": "a"}),
        "serve.nodeSelector keys must be label keys",
    ),
    (
        "node-selector-value",
        _set("spec.serve.nodeSelector", {"pool": "-gpu"}),
        "serve.nodeSelector values must be label values",
    ),
    (
        "toleration-exists-value",
        _set("spec.serve.tolerations", [{"key": "pool", "operator": "Exists", "value": "gpu"}]),
        "a toleration with operator Exists must not set a value",
    ),
    (
        "toleration-no-key",
        _set("spec.serve.tolerations", [{"value": "gpu"}]),
        "a toleration without a key must set operator Exists",
    ),
    (
        "toleration-seconds",
        _set("spec.serve.tolerations", [{"key": "pool", "effect": "NoSchedule", "tolerationSeconds": 60}]),
        "tolerationSeconds applies only to effect NoExecute",
    ),
    (
        "toleration-operator",
        _set("spec.serve.tolerations", [{"key": "pool", "operator": "In"}]),
        'Unsupported value: "In"',
    ),
    (
        "pull-secret-name",
        _set("spec.serve.imagePullSecrets", [{"name": "ACR_pull"}]),
        "imagePullSecrets[].name must be a valid Secret name",
    ),
    ("env-name", _set("spec.serve.env", [{"name": "1X", "value": "1"}]), "env[].name must consist of"),
    (
        "env-operator-owned",
        _set("spec.serve.env", [{"name": "SCORING_PORT", "value": "9000"}]),
        "SCORING_MODEL_DIR, SCORING_HOST, SCORING_PORT, SCORING_METRICS_PORT and SCORING_GRPC_PORT are set by the operator",
    ),
    (
        "env-value-and-from",
        _set(
            "spec.serve.env",
            [{"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        ),
        "an env entry sets value or valueFrom, not both",
    ),
    (
        "env-two-sources",
        _set(
            "spec.serve.env",
            [
                {
                    "name": "X",
                    "valueFrom": {
                        "secretKeyRef": {"name": "s", "key": "k"},
                        "fieldRef": {"fieldPath": "metadata.name"},
                    },
                }
            ],
        ),
        "env[].valueFrom must set exactly one of secretKeyRef, configMapKeyRef or fieldRef",
    ),
    (
        "env-field-path",
        _set("spec.serve.env", [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}}]),
        "fieldRef.fieldPath must be one of",
    ),
    (
        "env-duplicate",
        _set("spec.serve.env", [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}]),
        "Duplicate value",
    ),
    ("approval", _set("spec.rollout.approval", "Later"), 'Unsupported value: "Later"'),
    ("packaging", _set("spec.packaging", "Zip"), 'Unsupported value: "Zip"'),
    # Staged promotion, canary, shadow.
    (
        "follow-and-latest",
        _set("spec.model.versionPolicy", {"latest": {}, "follow": {"modelApp": "qa"}}),
        "versionPolicy must set exactly one of latest, semver, pinned or follow",
    ),
    (
        "follow-name",
        _set("spec.model.versionPolicy", {"follow": {"modelApp": "QA!"}}),
        "follow.modelApp must be",
    ),
    (
        "follow-soak",
        _set("spec.model.versionPolicy", {"follow": {"modelApp": "qa", "soak": "a week"}}),
        "follow.soak must be a duration",
    ),
    (
        "no-source-without-follow",
        _set("spec.model.source", None),
        "model.source is required, unless versionPolicy.follow names a ModelApp",
    ),
    (
        "follow-initcontainer-needs-source",
        _both(
            _set("spec.model.source", None),
            _set("spec.model.versionPolicy", {"follow": {"modelApp": "qa"}}),
            _set("spec.packaging", "InitContainer"),
        ),
        "packaging: InitContainer needs model.source",
    ),
    (
        "canary-weights-decrease",
        _set("spec.rollout.strategy", {"canary": {"steps": [{"weight": 50}, {"weight": 10}]}}),
        "canary steps must have strictly increasing weights",
    ),
    (
        "canary-weights-repeat",
        _set("spec.rollout.strategy", {"canary": {"steps": [{"weight": 10}, {"weight": 10}]}}),
        "canary steps must have strictly increasing weights",
    ),
    (
        "canary-weight-100",
        _set("spec.rollout.strategy", {"canary": {"steps": [{"weight": 100}]}}),
        "should be less than or equal to 99",
    ),
    (
        "canary-no-steps",
        _set("spec.rollout.strategy", {"canary": {"steps": []}}),
        "should have at least 1 items",
    ),
    (
        "canary-pause",
        _set("spec.rollout.strategy", {"canary": {"steps": [{"weight": 10, "pause": "soon"}]}}),
        "canary step pause must be a duration",
    ),
    (
        "shadow-no-bound",
        _set("spec.rollout.shadow", {"sample": 0.2}),
        "rollout.shadow needs maxMeanAbsDiff (regressors) or minAgreement",
    ),
    (
        "prometheus-credentials",
        _set(
            "spec.rollout.strategy",
            {"canary": {"steps": [{"weight": 10}], "analysis": {"prometheusUrl": "http://me:pw@prom:9090"}}},
        ),
        "prometheusUrl must be an http(s) URL without credentials",
    ),
    (
        "shadow-sample",
        _set("spec.rollout.shadow", {"sample": 2, "minAgreement": 0.9}),
        "should be less than or equal to 1",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistakes_are_rejected_with_a_clear_message(
    crds: None, namespace: str, mutate: Mutation, message: str
) -> None:
    body = _app()
    mutate(body)
    proc = _apply(namespace, body)
    assert proc.returncode != 0, f"accepted: {json.dumps(body['spec'])}"
    assert message in proc.stderr
    assert kubectl("-n", namespace, "get", "modelapp", "app", check=False).returncode != 0


def test_an_unknown_source_is_rejected(crds: None, namespace: str) -> None:
    body = _app()
    body["spec"]["model"]["source"]["s3"] = {"bucket": "models"}
    proc = _apply(namespace, body)
    assert proc.returncode != 0
    assert 'unknown field "spec.model.source.s3"' in proc.stderr
    # Without client field validation the field is pruned; a source made only of it has no source left.
    only = _app()
    only["spec"]["model"]["source"] = {"s3": {"bucket": "models"}}
    proc = _apply(namespace, only, "--validate=false")
    assert proc.returncode != 0
    assert "model.source needs exactly one source; the supported one is azureBlob" in proc.stderr


NAME_MESSAGE = "metadata.name must be a DNS label of at most 52 characters"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 53, NAME_MESSAGE),
        ("1diabetes", NAME_MESSAGE),
        ("dia.betes", NAME_MESSAGE),
        ("Diabetes", "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"),
        ("dia_betes", "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"),
    ],
)
@pytest.mark.parametrize(
    "flags", [(), ("--validate=false",), ("--server-side",)], ids=["apply", "novalidate", "ssa"]
)
def test_bad_names_are_rejected_by_the_server(
    crds: None, namespace: str, name: str, message: str, flags: tuple[str, ...]
) -> None:
    proc = _apply(namespace, _app(name), *flags)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_the_longest_name_is_accepted(crds: None, namespace: str) -> None:
    name = "a" * 52
    assert _apply(namespace, _app(name)).returncode == 0
    kubectl("-n", namespace, "get", "modelapp", name)


def test_a_minimal_app_is_accepted_and_defaulted(crds: None, namespace: str) -> None:
    body = {
        "apiVersion": "modelapp.dev/v1alpha1",
        "kind": "ModelApp",
        "metadata": {"name": "minimal"},
        "spec": {
            "model": {
                "source": {
                    "azureBlob": {"accountUrl": "https://acct.blob.core.windows.net", "container": "models"}
                }
            },
            "packaging": "InitContainer",
        },
    }
    proc = _apply(namespace, body)
    assert proc.returncode == 0, proc.stderr
    spec = get_modelapp(namespace, "minimal")["spec"]
    assert spec["model"]["versionPolicy"] == {"latest": {}}
    assert spec["model"]["pollInterval"] == "60s"
    assert spec["model"]["source"]["azureBlob"]["prefix"] == ""
    assert spec["serve"] == {"replicas": 2, "port": 8080}
    assert spec["rollout"] == {"approval": "Automatic", "contractTest": True, "progressDeadlineSeconds": 300}
    assert "build" not in spec


def test_the_test_kit_manifest_is_accepted(crds: None, namespace: str) -> None:
    assert _apply(namespace, _app()).returncode == 0


def test_placement_pulls_and_env_are_accepted_as_a_pod_spells_them(crds: None, namespace: str) -> None:
    body = _app("placed")
    serve = body["spec"]["serve"]
    serve["nodeSelector"] = {**serve["nodeSelector"], "kubernetes.azure.com/agentpool": "gpu"}
    serve["tolerations"] = [
        *serve["tolerations"],
        {
            "key": "kubernetes.azure.com/scalesetpriority",
            "operator": "Equal",
            "value": "spot",
            "effect": "NoSchedule",
        },
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
        {"operator": "Exists"},
    ]
    serve["imagePullSecrets"] = [{"name": "acr-pull"}]
    serve["env"] = [
        {"name": "SCORING_WORKERS", "value": "2"},
        {
            "name": "API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "api", "optional": True}},
        },
        {"name": "LABELS", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "labels.json"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
    ]
    proc = _apply(namespace, body)
    assert proc.returncode == 0, proc.stderr
    assert get_modelapp(namespace, "placed")["spec"]["serve"] == {**serve, "port": 8080}


def test_an_image_app_with_build_is_accepted_and_defaulted(crds: None, namespace: str) -> None:
    body = _app("imaged")
    IMAGE_BUILD(body)
    body["spec"]["model"]["promotion"] = {"metric": "r2"}
    body["spec"]["serve"]["serviceAccountName"] = "scorer.sa-1"
    body["spec"]["model"]["source"]["azureBlob"]["auth"] = {
        "workloadIdentity": {"clientId": "00000000-1111-2222-3333-444444444444"}
    }
    proc = _apply(namespace, body)
    assert proc.returncode == 0, proc.stderr
    spec = get_modelapp(namespace, "imaged")["spec"]
    assert spec["packaging"] == "Image"
    assert spec["build"]["timeoutSeconds"] == 1800
    assert spec["build"]["cache"] is True
    assert spec["model"]["promotion"] == {"metric": "r2", "direction": "Maximize"}


@pytest.mark.parametrize(
    "destination",
    ["localhost:5000/diabetes", "myacr.azurecr.io/diabetes", "ghcr.io/org/team/model-serving_x"],
)
def test_valid_build_destinations(crds: None, namespace: str, destination: str) -> None:
    body = _app()
    IMAGE_BUILD(body)
    body["spec"]["build"]["destination"] = destination
    proc = _apply(namespace, body)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "rng", [">=1.0 <2", "^1.2", "~1.2.3", "1.x", ">=1.0 <2 || 3.x", ">= 1.2", "*", "1.2.3-rc.1", "v1.2"]
)
def test_valid_semver_ranges_are_accepted(crds: None, namespace: str, rng: str) -> None:
    body = _app()
    body["spec"]["model"]["versionPolicy"] = {"semver": {"range": rng}}
    proc = _apply(namespace, body)
    assert proc.returncode == 0, proc.stderr
    assert get_modelapp(namespace, "app")["spec"]["model"]["versionPolicy"] == {"semver": {"range": rng}}


@pytest.mark.parametrize("interval", ["1s", "90s", "1m30s", "1.5h", "24h", "1500ms"])
def test_valid_poll_intervals_are_accepted(crds: None, namespace: str, interval: str) -> None:
    body = _app()
    body["spec"]["model"]["pollInterval"] = interval
    proc = _apply(namespace, body)
    assert proc.returncode == 0, proc.stderr


def test_printer_columns(crds: None, namespace: str) -> None:
    assert _apply(namespace, _app()).returncode == 0
    header = kubectl("-n", namespace, "get", "modelapps").stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "SERVING", "LATEST", "STATUS", "AGE"]
    wide = kubectl("-n", namespace, "get", "mapp", "-o", "wide").stdout.splitlines()[0].split()
    assert "IMAGE" in wide


def test_scale_subresource_sets_serve_replicas(crds: None, namespace: str) -> None:
    assert _apply(namespace, _app("x")).returncode == 0
    kubectl("-n", namespace, "scale", "modelapp/x", "--replicas=3")
    assert get_modelapp(namespace, "x")["spec"]["serve"]["replicas"] == 3
    # The scale subresource enforces the same bounds as the spec.
    proc = kubectl("-n", namespace, "scale", "modelapp/x", "--replicas=0", check=False)
    assert proc.returncode != 0
    assert "greater than or equal to 1" in proc.stderr
    assert get_modelapp(namespace, "x")["spec"]["serve"]["replicas"] == 3


def test_a_follower_without_store_or_build_is_accepted(crds: None, namespace: str) -> None:
    body = _app("prod")
    spec = body["spec"]
    del spec["model"]["source"]
    spec["model"]["versionPolicy"] = {"follow": {"modelApp": "qa", "namespace": "ml-qa", "soak": "30m"}}
    spec["packaging"] = "Image"
    spec["rollout"] = {
        "approval": "Manual",
        "strategy": {"canary": {"steps": [{"weight": 10, "pause": "2m"}, {"weight": 50}]}},
        "shadow": {"sample": 0.2, "minRequests": 500, "maxMeanAbsDiff": 5.0},
    }
    assert _apply(namespace, body).returncode == 0
    got = get_modelapp(namespace, "prod")["spec"]
    assert got["rollout"]["strategy"]["canary"]["steps"][1]["pause"] == "1m"  # defaulted
    assert got["rollout"]["strategy"]["canary"]["analysis"] == {"maxErrorRatio": 0.01, "minRequests": 1}
    assert got["rollout"]["shadow"]["timeout"] == "30m"
