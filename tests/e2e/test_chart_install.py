"""The chart installed on the test bed: install/uninstall, what its ServiceAccount may and may not do, and the
operator's whole story run with the chart's own identity (a ServiceAccount token, no admin rights)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chart_kit import Installer, helm, service_account_kubeconfig
from operator_kit import (
    OPERATOR,
    TEST_OPERATOR_ENV,
    OperatorProcess,
    apply,
    create_blob_secret,
    create_push_secret,
    modelapp_manifest,
    publish,
    serving,
    wait_for_status,
)
from testbed import Azurite, kubectl, wait_until

pytestmark = pytest.mark.e2e

SA_SUFFIX = "-modelapp-operator"
# What the operator does inside a namespace it follows (verb, resource[, subresource]): the same list
# the chart's rules are derived from; the namespaced run below proves it is enough.
NEEDED_IN_NAMESPACE = [
    ("get", "modelapps.modelapp.dev"),
    ("watch", "modelapps.modelapp.dev"),
    ("patch", "modelapps.modelapp.dev"),
    ("update", "modelapps.modelapp.dev", "status"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("watch", "deployments.apps"),
    ("create", "services"),
    ("get", "secrets"),
    ("create", "events"),
    ("list", "jobs.batch"),
    ("watch", "jobs.batch"),
    ("create", "jobs.batch"),
    ("list", "pods"),
    ("list", "events"),
]
NEVER_IN_NAMESPACE = [
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("create", "pods"),
    ("create", "pods", "exec"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("delete", "deployments.apps"),
    ("delete", "modelapps.modelapp.dev"),
    ("update", "configmaps"),
    ("delete", "jobs.batch"),
    ("get", "pods", "log"),
]
NEVER_CLUSTER_WIDE = [
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("bind", "roles.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts"),
    ("delete", "nodes"),
    ("delete", "namespaces"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
]


def can_i(sa: str, verb: str, resource: str, subresource: str = "", namespace: str | None = None) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    sub = [f"--subresource={subresource}"] if subresource else []
    proc = kubectl("auth", "can-i", verb, resource, *sub, *scope, f"--as={sa}", check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


def sa_user(namespace: str, release: str) -> str:
    return f"system:serviceaccount:{namespace}:{release}{SA_SUFFIX}"


def test_install_waits_for_the_operator_and_uninstall_removes_everything(
    namespace: str, install: Installer
) -> None:
    release = install({"clusterWide": True})
    name = release + SA_SUFFIX
    dep = json.loads(kubectl("-n", namespace, "get", "deployment", name, "-o", "json").stdout)
    assert dep["status"]["availableReplicas"] == 1
    status = json.loads(helm("status", release, "-n", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert "Apply a first ModelApp" in status["info"]["notes"]
    kubectl("get", f"clusterrole/{name}", f"clusterrolebinding/{name}")

    helm("uninstall", release, "-n", namespace, "--wait")
    for kind in ("clusterrole", "clusterrolebinding"):
        assert kubectl("get", kind, name, check=False).returncode != 0
    assert not kubectl("-n", namespace, "get", "deployment,sa,service", "-o", "name").stdout.count(name)
    # CRDs stay (helm never deletes crds/): ModelApps outlive the operator.
    kubectl("get", "crd", "modelapps.modelapp.dev")


def test_cluster_wide_service_account_can_do_its_job_and_nothing_more(
    namespace: str, app_namespace: str, install: Installer
) -> None:
    sa = sa_user(namespace, install({"clusterWide": True}))
    for verb, resource, *sub in NEEDED_IN_NAMESPACE:
        assert can_i(sa, verb, resource, *sub, namespace=app_namespace), (verb, resource, sub)
    assert can_i(sa, "watch", "customresourcedefinitions.apiextensions.k8s.io")
    for verb, resource, *sub in NEVER_IN_NAMESPACE:
        assert not can_i(sa, verb, resource, *sub, namespace=app_namespace), (verb, resource, sub)
    for verb, resource, *sub in NEVER_CLUSTER_WIDE:
        assert not can_i(sa, verb, resource, *sub), (verb, resource, sub)
    # kopf does not look at namespaces in cluster-wide mode: no rule for them.
    assert not can_i(sa, "list", "namespaces")


def test_namespaced_service_account_is_confined_to_its_namespaces(
    namespace: str, app_namespace: str, install: Installer
) -> None:
    sa = sa_user(namespace, install({"watchNamespaces": [app_namespace]}))
    for verb, resource, *sub in NEEDED_IN_NAMESPACE:
        assert can_i(sa, verb, resource, *sub, namespace=app_namespace), (verb, resource, sub)
    # Nothing outside the watched namespace: not even in its own release namespace, nor in default.
    for ns in (namespace, "default"):
        assert not can_i(sa, "get", "secrets", namespace=ns)
        assert not can_i(sa, "patch", "deployments.apps", namespace=ns)
    assert not can_i(sa, "list", "modelapps.modelapp.dev")
    for verb, resource, *sub in NEVER_IN_NAMESPACE:
        assert not can_i(sa, verb, resource, *sub, namespace=app_namespace), (verb, resource, sub)
    for verb, resource, *sub in NEVER_CLUSTER_WIDE:
        assert not can_i(sa, verb, resource, *sub), (verb, resource, sub)
    # Cluster-wide, only kopf's reads.
    assert can_i(sa, "watch", "namespaces")
    assert can_i(sa, "watch", "customresourcedefinitions.apiextensions.k8s.io")


def _secret(namespace: str, azurite: Azurite) -> None:
    create_blob_secret(namespace, azurite.connection_string)


PERMISSION_PROBLEMS = ("403", "Forbidden", "forbidden", "Not enough permissions")


def _manifest(packaging: str, container: str) -> dict[str, Any]:
    body = modelapp_manifest("diabetes", container, "diabetes/")
    if packaging == "Image":
        # KWOK completes the build pod with a digest in its termination message.
        body["spec"]["packaging"] = "Image"
        body["spec"]["build"] = {
            "destination": "registry.example/team/diabetes",
            "pushSecretRef": {"name": "push-creds"},
        }
    return body


@pytest.mark.parametrize("packaging", ["InitContainer", "Image"])
def test_operator_runs_its_whole_story_with_the_charts_identity(
    packaging: str,
    namespace: str,
    app_namespace: str,
    install: Installer,
    azurite: Azurite,
    blob_container: str,
    diabetes_bundle: Path,
    tmp_path: Path,
) -> None:
    """Namespaced mode, as the chart starts it (-n <watched>), authenticated only by the chart's
    ServiceAccount token: apply → Ready serving 1.0.0, 1.1.0 rolls out (built and verified by Jobs with
    Image packaging), deletion releases kopf's finalizer; no request is refused on the way."""
    release = install({"watchNamespaces": [app_namespace]})
    kubeconfig = service_account_kubeconfig(namespace, release + SA_SUFFIX, tmp_path / "sa.kubeconfig")
    _secret(app_namespace, azurite)
    create_push_secret(app_namespace)
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.0.0")

    op = OperatorProcess(app_namespace, tmp_path / "operator.log", kubeconfig=kubeconfig).start()
    try:
        assert apply(app_namespace, _manifest(packaging, blob_container)).returncode == 0
        first = wait_for_status(app_namespace, "diabetes", serving("1.0.0"), 90, "1.0.0 serving")
        if packaging == "Image":
            assert "@sha256:" in first["status"]["servingVersion"]["image"]  # deployed by digest
        publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.1.0")
        wait_for_status(app_namespace, "diabetes", serving("1.1.0"), 90, "1.1.0 serving")
        kubectl("-n", app_namespace, "delete", "modelapp", "diabetes", "--timeout=30s")
    finally:
        op.stop()
        print(f"--- operator log (tail)\n{op.log[-3000:]}")
    problems = [line for line in op.log.splitlines() if any(p in line for p in PERMISSION_PROBLEMS)]
    assert not problems, "\n".join(problems)


@dataclass
class PeeredOperator(OperatorProcess):
    """OperatorProcess plus kopf peering, as the chart's HA mode runs each replica."""

    peering: str = ""
    pod_id: str = ""

    def start(self) -> PeeredOperator:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "POD_ID": self.pod_id, **TEST_OPERATOR_ENV}
        # -v keeps kopf's per-object INFO logs, where peering says which replica pauses.
        args = [
            "-n",
            self.namespace,
            "--peering",
            self.peering,
            "--liveness",
            "",
            "--log-format",
            "plain",
            "-v",
        ]
        self.proc = subprocess.Popen(
            [OPERATOR, *args],
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self


def test_two_ha_replicas_one_acts(
    namespace: str,
    app_namespace: str,
    install: Installer,
    azurite: Azurite,
    blob_container: str,
    diabetes_bundle: Path,
    tmp_path: Path,
) -> None:
    release = install({"watchNamespaces": [app_namespace], "ha": {"enabled": True}})
    peering = release + SA_SUFFIX
    kubeconfig = service_account_kubeconfig(namespace, peering, tmp_path / "sa.kubeconfig")
    _secret(app_namespace, azurite)
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.0.0")
    ops = [
        PeeredOperator(
            app_namespace, tmp_path / f"op-{i}.log", kubeconfig=kubeconfig, peering=peering, pod_id=f"op-{i}"
        ).start()
        for i in range(2)
    ]
    standing_by: PeeredOperator | None = None
    try:

        def both_peered() -> bool:
            out = kubectl(
                "-n", app_namespace, "get", "kopfpeering", peering, "-o", "jsonpath={.status}"
            ).stdout
            status: dict[str, Any] = json.loads(out or "{}")
            return {"op-0", "op-1"} <= status.keys()

        wait_until(both_peered, 30, what="both replicas in the KopfPeering")
        apply(app_namespace, modelapp_manifest("diabetes", blob_container, "diabetes/"))
        wait_for_status(app_namespace, "diabetes", serving("1.0.0"), 30, "1.0.0 serving with two replicas")

        def lower_priority_paused() -> PeeredOperator | None:
            # Replicas that start together may both resume for a moment before seeing each other's
            # keepalive; then the one with the lower priority must pause and stay paused.
            out = kubectl(
                "-n", app_namespace, "get", "kopfpeering", peering, "-o", "jsonpath={.status}"
            ).stdout
            priorities = {pid: info["priority"] for pid, info in json.loads(out or "{}").items()}
            loser = ops[int(min(priorities, key=priorities.__getitem__).removeprefix("op-"))]
            log = loser.log
            resumed, paused = log.rfind("Resuming operations"), log.rfind("Pausing operations in favour of")
            return loser if resumed < 0 or paused > resumed else None

        standing_by = wait_until(lower_priority_paused, 60, what="the lower-priority replica to stand by")
    finally:
        for op in ops:
            op.stop()
        # No operator is left to release kopf's finalizer.
        kubectl(
            "-n",
            app_namespace,
            "patch",
            "modelapp",
            "diabetes",
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kubectl("-n", app_namespace, "delete", "modelapp", "diabetes", "--wait=false", check=False)
    assert standing_by is not None, "the lower-priority replica stands by"
