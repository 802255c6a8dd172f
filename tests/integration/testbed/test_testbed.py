"""Proves the test bed is real: a real API server, controllers, scheduler, KWOK nodes and Azurite."""

from __future__ import annotations

import uuid

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotModifiedError
from azure.storage.blob import BlobServiceClient
from kubernetes import client
from kubernetes.client.rest import ApiException
from operator_kit import on_kwok
from testbed import AZURITE_ACCOUNT, kubectl, wait_until

pytestmark = pytest.mark.integration

PINNED = "v1.34.4"


def test_server_reports_the_pinned_release(k8s: client.ApiClient) -> None:
    info = client.VersionApi(k8s).get_code()
    assert info.git_version == PINNED
    assert (info.major, info.minor) == ("1", "34")
    assert info.git_tree_state == "clean"


def test_kwok_nodes_are_ready(k8s: client.ApiClient) -> None:
    nodes = client.CoreV1Api(k8s).list_node(label_selector="type=kwok").items
    assert len(nodes) >= 2
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}
        assert ready.get("Ready") == "True", node.metadata.name


def _deployment(name: str, image: str, replicas: int) -> dict[str, object]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "progressDeadlineSeconds": 20,
            "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": on_kwok({"containers": [{"name": "app", "image": image}]}),
            },
        },
    }


def _rolled_out(apps: client.AppsV1Api, ns: str, name: str, image: str, replicas: int) -> bool:
    d = apps.read_namespaced_deployment(name, ns)
    s = d.status
    return bool(
        s.observed_generation == d.metadata.generation
        and d.spec.template.spec.containers[0].image == image
        and s.updated_replicas == replicas
        and s.available_replicas == replicas
        and (s.replicas or 0) == replicas
    )


def test_deployment_rolls_out_and_rolling_update_completes(k8s: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment(namespace, _deployment("web", "example.com/web:1", 3))
    wait_until(lambda: _rolled_out(apps, namespace, "web", "example.com/web:1", 3), 90, what="3/3 available")

    apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example.com/web:2"}]}}}},
    )
    wait_until(lambda: _rolled_out(apps, namespace, "web", "example.com/web:2", 3), 90, what="rolling update")
    pods = client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector="app=web").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    assert {p.spec.containers[0].image for p in live} == {"example.com/web:2"}
    # The scheduler placed them on the fake nodes: it is a real scheduler, not a shortcut.
    assert {p.spec.node_name for p in live} <= {"kwok-node-0", "kwok-node-1"}


def test_kwok_fail_deployment_never_becomes_ready(k8s: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment(namespace, _deployment("bad", "example.com/kwok-fail:1", 1))

    def deadline_exceeded() -> bool:
        conds = apps.read_namespaced_deployment("bad", namespace).status.conditions or []
        return any(c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded" for c in conds)

    wait_until(deadline_exceeded, 90, what="ProgressDeadlineExceeded")
    assert not apps.read_namespaced_deployment("bad", namespace).status.available_replicas


def _job(name: str, image: str) -> dict[str, object]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": on_kwok({"restartPolicy": "Never", "containers": [{"name": "main", "image": image}]})
            },
        },
    }


def _job_condition(batch: client.BatchV1Api, ns: str, name: str) -> str | None:
    for c in batch.read_namespaced_job(name, ns).status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return str(c.type)
    return None


def test_job_completes_and_kwok_fail_job_fails(k8s: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(k8s)
    batch.create_namespaced_job(namespace, _job("ok", "example.com/task:1"))
    batch.create_namespaced_job(namespace, _job("bad", "example.com/kwok-fail:1"))
    assert wait_until(lambda: _job_condition(batch, namespace, "ok"), 90, what="job ok") == "Complete"
    assert wait_until(lambda: _job_condition(batch, namespace, "bad"), 90, what="job bad") == "Failed"

    pods = client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector="job-name=bad").items
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert pods[0].status.phase == "Failed"
    assert terminated.exit_code != 0
    assert "kwok-fail" in terminated.message


def test_deleted_pods_go_away(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "p"},
            "spec": on_kwok({"containers": [{"name": "c", "image": "example.com/x:1"}]}),
        },
    )
    wait_until(lambda: core.read_namespaced_pod("p", namespace).status.phase == "Running", 60, what="running")
    core.delete_namespaced_pod("p", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("p", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_until(gone, 60, what="pod deletion")


CEL_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.testbed.modelapp.dev}
spec:
  group: testbed.modelapp.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              min: {type: integer}
              max: {type: integer}
            x-kubernetes-validations:
            - rule: self.min <= self.max
              message: min must not be greater than max
"""


def test_crd_cel_rule_rejects_bad_object_with_its_message(testbed: object, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=CEL_CRD)
    kubectl("wait", "--for=condition=Established", "crd/widgets.testbed.modelapp.dev", "--timeout=60s")
    good = (
        "apiVersion: testbed.modelapp.dev/v1\nkind: Widget\nmetadata: {name: good}\nspec: {min: 1, max: 2}\n"
    )
    bad = "apiVersion: testbed.modelapp.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {min: 3, max: 2}\n"
    kubectl("-n", namespace, "apply", "-f", "-", input=good)
    proc = kubectl("-n", namespace, "apply", "-f", "-", input=bad, check=False)
    assert proc.returncode != 0
    assert "min must not be greater than max" in proc.stderr


def test_rbac_denies_an_unprivileged_service_account(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token

    cfg = client.Configuration()
    cfg.host = k8s.configuration.host
    cfg.ssl_ca_cert = k8s.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_sa = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(ApiException) as denied:
        as_sa.list_namespaced_secret(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in denied.value.body

    # The token itself is valid: the API server authenticated it, and RBAC is what said no.
    review = client.AuthenticationV1Api(k8s).create_token_review({"spec": {"token": token}})
    assert review.status.authenticated


def test_azurite_upload_list_and_conditional_get(azurite: object) -> None:
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)  # type: ignore[attr-defined]
    assert svc.account_name == AZURITE_ACCOUNT
    container = svc.create_container(f"testbed-{uuid.uuid4().hex[:8]}")
    try:
        blob = container.upload_blob("m/1/model.onnx", b"\x00model")
        etag = blob.get_blob_properties().etag
        container.upload_blob("m/1/modelapp.json", b"{}")
        assert sorted(b.name for b in container.list_blobs(name_starts_with="m/")) == [
            "m/1/model.onnx",
            "m/1/modelapp.json",
        ]
        # If-None-Match with the current ETag: no body comes back. Azure answers 304; Azurite
        # answers 412 ConditionNotMet, so callers must treat both as "unchanged".
        with pytest.raises((ResourceNotModifiedError, ResourceModifiedError)) as unchanged:
            blob.download_blob(etag=etag, match_condition=MatchConditions.IfModified).readall()
        assert unchanged.value.status_code in (304, 412)
        blob.upload_blob(b"\x01model", overwrite=True)
        assert (
            blob.download_blob(etag=etag, match_condition=MatchConditions.IfModified).readall()
            == b"\x01model"
        )
        # If-Match with a stale ETag: 412, so a writer cannot clobber a newer version.
        with pytest.raises(ResourceModifiedError):
            blob.upload_blob(b"x", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
    finally:
        container.delete_container()
