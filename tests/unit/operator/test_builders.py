"""Manifest builders: the serving pod template, the Deployment and the Service, as plain dicts."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import orjson
import pytest
from modelapp_operator import builders
from modelapp_operator.names import (
    ANN_LAST_GOOD,
    ANN_MODEL_SHA256,
    ANN_MODEL_VERSION,
    ANN_SPEC_HASH,
    ANN_TEMPLATE_HASH,
    LABEL_COMPONENT,
    LABEL_MODELAPP,
    short_hash,
)
from modelapp_operator.snapshot import Target, template_hash
from modelapp_operator.spec import BlobSource
from unit.operator.conftest import (
    FAKE_ACCOUNT_KEY,
    FAKE_CONNECTION_STRING,
    IMAGES,
    NAME,
    NAMESPACE,
    SECRET_NAME,
    UID,
    make_app,
    make_spec,
    sha_of,
    template_for,
)

pytestmark = pytest.mark.unit


def _container(template: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    return next(c for c in template["spec"][key] if c["name"] == name)


def test_pod_template_fetches_the_version_in_an_init_container() -> None:
    t = template_for("1.2.0")
    fetch = _container(t, "fetch-model", init=True)
    assert fetch["image"] == IMAGES.fetch
    assert fetch["args"] == [
        "fetch",
        "--version",
        "1.2.0",
        "--expect-sha256",
        sha_of("1.2.0"),
        "--out",
        f"/models/{NAME}",
    ]
    assert {"name": "models", "mountPath": "/models"} in fetch["volumeMounts"]
    scorer = _container(t, "scorer")
    assert scorer["image"] == IMAGES.scorer
    assert scorer["args"] == [
        *("serve", "--model-dir", "/models", "--host", "0.0.0.0", "--port", "8080"),
        *("--metrics-port", "8082", "--grpc-port", "8081"),
    ]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in scorer["volumeMounts"]
    assert scorer["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8082, "protocol": "TCP"},  # not the serving port
    ]
    assert t["metadata"]["annotations"][ANN_MODEL_VERSION] == "1.2.0"
    assert t["metadata"]["annotations"][ANN_MODEL_SHA256] == sha_of("1.2.0")
    assert {v["name"] for v in t["spec"]["volumes"]} == {"tmp", "models", "store-credentials"}


def test_pod_template_model_name_and_port_follow_the_spec() -> None:
    spec = make_spec(model_name="diab", port=9000)
    t = template_for("1.0.0", spec)
    assert _container(t, "fetch-model", init=True)["args"][-1] == "/models/diab"
    scorer = _container(t, "scorer")
    assert scorer["args"][scorer["args"].index("--port") + 1] == "9000"
    assert scorer["ports"][0]["containerPort"] == 9000
    # An app that serves on the scorer's operations port moves the operations port aside.
    clash = _container(template_for("1.0.0", make_spec(port=8082)), "scorer")
    assert clash["args"][-4:] == ["--metrics-port", "8083", "--grpc-port", "8081"]
    # One that serves on the gRPC port moves the gRPC port past the operations port.
    clash = _container(template_for("1.0.0", make_spec(port=8081)), "scorer")
    assert clash["args"][-4:] == ["--metrics-port", "8082", "--grpc-port", "8083"]
    assert [p["containerPort"] for p in clash["ports"]] == [8081, 8083, 8082]


def test_baked_image_needs_no_init_container() -> None:
    t = builders.pod_template(
        NAME, make_spec(), Target("1.0.0", sha_of("1.0.0"), "acr/diab@sha256:1", True), IMAGES
    )
    assert "initContainers" not in t["spec"]
    assert {v["name"] for v in t["spec"]["volumes"]} == {"tmp"}
    assert "azure.workload.identity/use" not in t["metadata"]["labels"]


def test_store_env_carries_secrets_only_as_references() -> None:
    t = template_for("1.0.0")
    env = _container(t, "fetch-model", init=True)["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["MODELAPP_ACCOUNT_URL"]["value"] == "https://acct.blob.core.windows.net"
    assert by_name["MODELAPP_CONTAINER"]["value"] == "models"
    assert by_name["MODELAPP_PREFIX"]["value"] == "diabetes/"
    # The Secret is a volume in the fetch container alone, read with the operator's own key mapping.
    assert by_name["MODELAPP_CREDENTIALS_DIR"]["value"] == builders.STORE_CREDENTIALS_DIR
    assert {"name": "store-credentials", "secret": {"secretName": SECRET_NAME, "defaultMode": 0o444}} in t[
        "spec"
    ]["volumes"]
    fetch_mounts = _container(t, "fetch-model", init=True)["volumeMounts"]
    assert {"name": "store-credentials", "mountPath": builders.STORE_CREDENTIALS_DIR, "readOnly": True} in (
        fetch_mounts
    )
    assert all(m["name"] != "store-credentials" for m in _container(t, "scorer")["volumeMounts"])
    # No env entry anywhere in the pod carries a literal credential.
    for container in [*t["spec"]["containers"], *t["spec"]["initContainers"]]:
        for e in container.get("env", []):
            if any(w in e["name"] for w in ("CONNECTION", "SAS", "KEY", "SECRET", "TOKEN")):
                assert "value" not in e, e
    # The scorer does not need the store at all.
    assert "env" not in _container(t, "scorer")


def test_builders_never_read_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The operator process may hold a connection string of its own; it must not reach a manifest.
    monkeypatch.setenv("MODELAPP_CONNECTION_STRING", FAKE_CONNECTION_STRING)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", FAKE_CONNECTION_STRING)
    t = template_for("1.0.0")
    dep = builders.build_deployment(make_app(), make_spec(), t, t)
    text = orjson.dumps([dep, builders.build_service(make_app(), make_spec())]).decode()
    assert FAKE_ACCOUNT_KEY not in text
    assert "AccountKey" not in text


def test_workload_identity_pods_get_the_label_and_client_id() -> None:
    spec = make_spec(
        source=BlobSource("https://a.blob.core.windows.net", "models", "d/", None, "client-guid")
    )
    t = template_for("1.0.0", spec)
    assert t["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    env = {e["name"]: e for e in _container(t, "fetch-model", init=True)["env"]}
    assert env["AZURE_CLIENT_ID"] == {"name": "AZURE_CLIENT_ID", "value": "client-guid"}
    # The federated token alone (never the node's managed identity), and only the fetch step gets it.
    assert env["MODELAPP_CREDENTIAL"] == {"name": "MODELAPP_CREDENTIAL", "value": "workload-identity"}
    assert "MODELAPP_CREDENTIALS_DIR" not in env
    assert t["metadata"]["annotations"]["azure.workload.identity/skip-containers"] == "scorer"
    # With a Secret, the workload identity webhook is not asked for.
    assert "azure.workload.identity/use" not in template_for("1.0.0")["metadata"]["labels"]


def test_probes() -> None:
    scorer = _container(template_for("1.0.0"), "scorer")
    assert scorer["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert scorer["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert scorer["startupProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    # The startup probe gives a model time to load before liveness can kill it.
    startup = scorer["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_a_terminating_scorer_serves_until_the_service_drops_it() -> None:
    t = template_for("1.0.0")
    assert _container(t, "scorer")["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    # The grace period (the default 30 s unless set) covers the wait and the scorer's own shutdown.
    assert t["spec"].get("terminationGracePeriodSeconds", 30) > 5


def test_security_context_is_hardened_and_non_root() -> None:
    t = template_for("1.0.0")
    pod = t["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == builders.RUN_AS != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in [*pod["containers"], *pod["initContainers"]]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in sc or sc["privileged"] is False
        # A read-only root filesystem needs a writable /tmp.
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_resources_and_service_account_follow_the_spec() -> None:
    resources = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m"}}
    spec = make_spec(resources=resources, service_account="scorer-sa")
    t = template_for("1.0.0", spec)
    assert _container(t, "scorer")["resources"] == resources
    assert t["spec"]["serviceAccountName"] == "scorer-sa"
    # The template holds a copy: later edits of the spec's dict do not leak in.
    resources["limits"]["cpu"] = "8"
    assert _container(t, "scorer")["resources"]["limits"]["cpu"] == "1"
    assert "serviceAccountName" not in template_for("1.0.0")["spec"]


def test_template_hash_is_the_hash_of_the_template_without_it() -> None:
    t = template_for("1.0.0")
    h = template_hash(t)
    assert len(h) == 16
    stripped = copy.deepcopy(t)
    del stripped["metadata"]["annotations"][ANN_TEMPLATE_HASH]
    assert short_hash(stripped) == h
    assert template_hash({}) == ""


def test_template_hash_is_stable_under_dict_reordering() -> None:
    a = make_spec(resources={"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m"}})
    b = make_spec(resources={"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi", "cpu": "1"}})
    assert template_hash(template_for("1.0.0", a)) == template_hash(template_for("1.0.0", b))
    # Built twice, same hash.
    assert template_hash(template_for("1.0.0")) == template_hash(template_for("1.0.0"))
    assert short_hash({"a": 1, "b": {"c": 2, "d": 3}}) == short_hash({"b": {"d": 3, "c": 2}, "a": 1})


@pytest.mark.parametrize(
    "change",
    [
        {"version": "1.0.1"},
        {"sha256": "f" * 64},
        {"image": "registry.example/scoring-service:2.0"},
    ],
)
def test_template_hash_changes_with_what_the_pods_run(change: dict[str, str]) -> None:
    base = Target("1.0.0", sha_of("1.0.0"), IMAGES.scorer)
    before = builders.pod_template(NAME, make_spec(), base, IMAGES)
    after = builders.pod_template(NAME, make_spec(), dataclasses.replace(base, **change), IMAGES)
    assert template_hash(before) != template_hash(after)


def test_template_hash_ignores_replicas_but_not_the_port() -> None:
    h = template_hash(template_for("1.0.0"))
    assert template_hash(template_for("1.0.0", make_spec(replicas=7))) == h
    assert template_hash(template_for("1.0.0", make_spec(port=9000))) != h


def test_deployment() -> None:
    spec = make_spec(replicas=3, progress_deadline_seconds=120)
    t = template_for("1.0.0", spec)
    dep = builders.build_deployment(make_app(), spec, t, None)
    assert dep["apiVersion"] == "apps/v1"
    assert dep["kind"] == "Deployment"
    assert dep["metadata"]["name"] == NAME
    assert dep["metadata"]["namespace"] == NAMESPACE
    assert dep["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "modelapp.dev/v1alpha1",
            "kind": "ModelApp",
            "name": NAME,
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    s = dep["spec"]
    assert s["replicas"] == 3
    assert s["progressDeadlineSeconds"] == 120
    assert s["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert s["template"] == t
    # The selector picks the serving pods only (not the app's build or verify Job pods), and the
    # template's labels satisfy it.
    assert s["selector"] == {"matchLabels": {LABEL_MODELAPP: NAME, LABEL_COMPONENT: "server"}}
    assert s["selector"]["matchLabels"].items() <= t["metadata"]["labels"].items()
    assert ANN_LAST_GOOD not in dep["metadata"]["annotations"]
    assert dep["metadata"]["annotations"][ANN_SPEC_HASH] == short_hash(s)


def test_last_good_annotation_round_trips() -> None:
    good = template_for("1.0.0")
    dep = builders.build_deployment(make_app(), make_spec(), template_for("1.1.0"), good)
    annotation = dep["metadata"]["annotations"][ANN_LAST_GOOD]
    assert isinstance(annotation, str)
    assert builders.parse_last_good(annotation) == good
    assert template_hash(builders.parse_last_good(annotation) or {}) == template_hash(good)


@pytest.mark.parametrize("annotation", [None, "", "not json", "[1, 2]", '"text"', "{"])
def test_parse_last_good_tolerates_garbage(annotation: str | None) -> None:
    assert builders.parse_last_good(annotation) is None


def test_service() -> None:
    svc = builders.build_service(make_app(), make_spec())
    assert svc["kind"] == "Service"
    assert svc["metadata"]["name"] == NAME
    assert svc["metadata"]["ownerReferences"][0]["uid"] == UID
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {LABEL_MODELAPP: NAME, LABEL_COMPONENT: "server"}
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP"},
    ]
    # The Service targets the scorer's named ports, whatever numbers the spec makes them.
    scorer = _container(template_for("1.0.0", make_spec(port=8081)), "scorer")
    assert [p["name"] for p in scorer["ports"][:2]] == [p["targetPort"] for p in svc["spec"]["ports"]]


def test_pods_that_fetch_run_as_the_modelapps_own_identity() -> None:
    spec = make_spec(
        source=BlobSource(
            "https://a.blob.core.windows.net", "models", "d/", identity_service_account="reader"
        ),
        service_account="app-sa",
    )
    fetching = template_for("1.0.0", spec)
    assert fetching["spec"]["serviceAccountName"] == "reader"
    assert fetching["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    baked = builders.pod_template(
        NAME, spec, Target("1.0.0", sha_of("1.0.0"), "acr/d@sha256:1", True), IMAGES
    )
    assert baked["spec"]["serviceAccountName"] == "app-sa"  # it reads no store
