"""The Helm chart as rendered: lint, server-side validation, values schema, security, RBAC shape, CRD sync."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_kit import CHART, KUBE_VERSION, find, helm, render, set_args, template
from operator_kit import KWOK_PLACEMENT
from testbed import REPO, kubectl

pytestmark = pytest.mark.e2e

MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "cluster-wide": {"clusterWide": True},
    "cluster-wide-ha": {"clusterWide": True, "ha": {"enabled": True}},
    "namespaced": {"watchNamespaces": ["ns1", "ns2"]},
    "namespaced-ha": {"watchNamespaces": ["ns1", "ns2"], "ha": {"enabled": True}},
    "workload-identity": {
        "workloadIdentity": {"enabled": True, "clientId": "00000000-0000-0000-0000-00000000abcd"}
    },
    "grafana-dashboard": {
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "ModelApp"}}
    },
}


def _with_namespaces(values: dict[str, Any], ns1: str, ns2: str) -> dict[str, Any]:
    out = dict(values)
    if "watchNamespaces" in out:
        out["watchNamespaces"] = [ns1, ns2]
    return out


@pytest.mark.parametrize("mode", MODES)
def test_helm_lint_strict(mode: str) -> None:
    out = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *set_args(MODES[mode])).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("mode", MODES)
def test_rendered_manifests_pass_server_side_validation(
    mode: str, namespace: str, app_namespace: str, crds: None, peering_crds: None
) -> None:
    """The real API server (schemas, admission) accepts every object the chart renders in each mode."""
    values = _with_namespaces(MODES[mode], namespace, app_namespace)
    manifests = template(values, namespace=namespace, release=f"v{namespace[2:]}")
    proc = kubectl("apply", "--dry-run=server", "-f", "-", input=manifests, check=False)
    assert proc.returncode == 0, proc.stderr
    applied = proc.stdout
    assert "deployment.apps/" in applied
    if "watchNamespaces" in values:
        assert len(re.findall(r"^role\.rbac\.authorization\.k8s\.io/", applied, re.M)) == 2
        assert len(re.findall(r"^rolebinding\.rbac\.authorization\.k8s\.io/", applied, re.M)) == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": -1}, "at '/replicaCount': minimum"),
        ({"replicaCount": 2}, "at '/replicaCount': maximum"),
        ({"ha": {"enabled": True, "replicas": 1}}, "at '/ha/replicas': minimum"),
        ({"image": {"repository": ""}}, "at '/image/repository'"),
        ({"image": {"tag": ""}}, "at '/image/tag'"),
        ({"image": {"digest": "latest"}}, "at '/image/digest'"),
        ({"defaults": {"kanikoImage": ""}}, "at '/defaults/kanikoImage'"),
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "at '/watchNamespaces/0'"),
        ({"workloadIdentity": {"enabled": True}}, "at '/workloadIdentity/clientId'"),
        ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum"),
        ({"operator": {"logFormat": "xml"}}, "at '/operator/logFormat'"),
        ({"grafanaDashboard": {"labelValue": 1}}, "at '/grafanaDashboard/labelValue'"),
        ({"grafanaDashboard": {"namespace": "Monitoring"}}, "at '/grafanaDashboard/namespace'"),
    ],
)
def test_values_schema_rejects_nonsense(values: dict[str, Any], message: str) -> None:
    proc = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION, *set_args(values), check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_image_tag_follows_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == chart["appVersion"]


def test_operator_pod_is_locked_down_and_probed() -> None:
    dep = find(render({}), "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"  # two unpeered operators must never overlap
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    assert "--liveness=http://0.0.0.0:8081/healthz" in c["args"]
    assert "--namespace=modelapp-system" in c["args"]  # namespaced by default
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]["memory"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_image_defaults_reach_the_operator_environment() -> None:
    dep = find(
        render(
            {
                "image": {"repository": "r.example/op", "tag": "9.9.9"},
                "defaults": {"scorerImage": "r.example/scorer:1", "baseImage": "r.example/base:1"},
            }
        ),
        "Deployment",
    )
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (
        env["MODELAPP_OPERATOR_FETCH_IMAGE"] == "r.example/op:9.9.9"
    )  # the operator image is the fetch image
    assert env["MODELAPP_OPERATOR_SCORER_IMAGE"] == "r.example/scorer:1"
    assert env["MODELAPP_OPERATOR_BASE_IMAGE"] == "r.example/base:1"
    kaniko = env["MODELAPP_OPERATOR_KANIKO_IMAGE"]
    assert kaniko.startswith("ghcr.io/osscontainertools/kaniko:")
    assert "@sha256:" in kaniko  # pinned by digest
    assert env["MODELAPP_OPERATOR_METRICS_PORT"] == "9090"
    digest = "sha256:" + "a" * 64
    pinned = find(render({"image": {"digest": digest}}), "Deployment")
    assert pinned["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + digest)


def test_the_operator_pod_is_placed_by_node_selector_and_tolerations() -> None:
    """The e2e tests run the chart's operator on the (tainted) KWOK nodes with these two values."""
    pod = find(render(KWOK_PLACEMENT), "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == KWOK_PLACEMENT["nodeSelector"]
    assert pod["tolerations"] == KWOK_PLACEMENT["tolerations"]
    plain = find(render({}), "Deployment")["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain
    assert "tolerations" not in plain


def test_ha_runs_peered_replicas_with_a_peering_object() -> None:
    docs = render({"clusterWide": True, "ha": {"enabled": True}})
    dep = find(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=t-modelapp-operator" in args
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env
    find(docs, "ClusterKopfPeering", "t-modelapp-operator")
    namespaced = render({"ha": {"enabled": True}, "watchNamespaces": ["a", "b"]})
    find(namespaced, "KopfPeering", "t-modelapp-operator", "a")
    find(namespaced, "KopfPeering", "t-modelapp-operator", "b")
    assert not [d for d in namespaced if d["kind"] == "ClusterKopfPeering"]


def test_the_default_is_namespaced_to_the_release_namespace_and_cluster_wide_is_asked_for() -> None:
    docs = render({})
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "--namespace=modelapp-system"
    assert "--all-namespaces" not in args
    find(docs, "Role", namespace="modelapp-system")
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert {r["resources"][0] for r in cluster_role["rules"]} == {"customresourcedefinitions", "namespaces"}
    wide = render({"clusterWide": True})
    assert "--all-namespaces" in find(wide, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [d for d in wide if d["kind"] == "Role"]
    proc = helm(
        "template", "t", str(CHART), "--kube-version", KUBE_VERSION,
        *set_args({"clusterWide": True, "watchNamespaces": ["a"]}), check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "clusterWide: true follows every namespace" in proc.stderr


def test_namespaced_mode_uses_roles_and_starts_the_operator_per_namespace() -> None:
    docs = render({"watchNamespaces": ["a", "b"]})
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--namespace=a", "--namespace=b"]
    assert "--all-namespaces" not in args
    for ns in ("a", "b"):
        role = find(docs, "Role", namespace=ns)
        binding = find(docs, "RoleBinding", namespace=ns)
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "t-modelapp-operator", "namespace": "modelapp-system"}
        ]
    # Cluster-wide, only kopf's reads of CRDs and namespaces.
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert {r["resources"][0] for r in cluster_role["rules"]} == {"customresourcedefinitions", "namespaces"}
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in cluster_role["rules"])


def test_workload_identity_annotates_the_service_account_and_labels_the_pod() -> None:
    docs = render(MODES["workload-identity"])
    sa = find(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"].endswith("abcd")
    pod_labels = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["azure.workload.identity/use"] == "true"
    plain = render({})
    assert (
        "azure.workload.identity/use"
        not in find(plain, "Deployment")["spec"]["template"]["metadata"]["labels"]
    )


def test_metrics_service_and_optional_service_monitor() -> None:
    docs = render({})
    svc = find(docs, "Service", "t-modelapp-operator-metrics")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert svc["spec"]["selector"] == find(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    monitor = find(
        render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}),
        "ServiceMonitor",
    )
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


@pytest.mark.parametrize("mode", MODES)
def test_every_rbac_rule_says_why_and_nothing_dangerous_is_granted(mode: str) -> None:
    text = template(MODES[mode])
    # Each rule is preceded by a comment line saying why it exists.
    lines = text.splitlines()
    rule_lines = [i for i, line in enumerate(lines) if line.startswith("- apiGroups:")]
    assert rule_lines
    for i in rule_lines:
        assert lines[i - 1].lstrip().startswith("#"), f"rule without a reason: {lines[i]}"
    for doc in (d for d in yaml.safe_load_all(text) if d and d["kind"] in ("ClusterRole", "Role")):
        for rule in doc["rules"]:
            verbs, resources = set(rule["verbs"]), set(rule["resources"])
            assert "*" not in verbs
            assert "*" not in resources
            assert "*" not in rule["apiGroups"]
            assert not verbs & {"escalate", "bind", "impersonate", "deletecollection"}
            assert not resources & {"pods/exec", "pods/attach", "roles", "rolebindings", "clusterroles"}
            if "secrets" in resources:
                assert verbs == {"get"}, "secrets: get by name only"


def test_chart_crds_match_the_repository_crds() -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "hack" / "check-chart-crds.sh")], text=True, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_crd_check_fails_with_a_diff_when_the_copy_drifts(tmp_path: Path) -> None:
    for rel in ("hack/check-chart-crds.sh", "crds", "charts/modelapp-operator/crds"):
        src, dst = REPO / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    (crd,) = (tmp_path / "crds").glob("modelapp*.yaml")
    crd.write_text(crd.read_text().replace("shortNames: [mapp]", "shortNames: [mapp, ma]"))
    proc = subprocess.run(
        ["bash", str(tmp_path / "hack" / "check-chart-crds.sh")], text=True, capture_output=True, check=False
    )
    assert proc.returncode == 1
    assert re.search(r"^-\s+shortNames: \[mapp, ma\]$", proc.stdout, re.M), proc.stdout
    assert "out of sync" in proc.stderr


def test_security_values_reach_the_operator() -> None:
    env = {
        e["name"]: e.get("value")
        for e in find(
            render(
                {
                    "allowedAccountHosts": ["azurite:10000", "*.blob.core.windows.net"],
                    "allowedImages": {"serve": ["acr.example/scoring/*"], "kaniko": [], "base": []},
                    "clusterWide": True,
                }
            ),
            "Deployment",
        )["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS"] == "azurite:10000,*.blob.core.windows.net"
    assert env["MODELAPP_OPERATOR_ALLOWED_SERVE_IMAGES"] == "acr.example/scoring/*"
    assert env["MODELAPP_OPERATOR_ALLOWED_KANIKO_IMAGES"] == ""
    assert env["MODELAPP_OPERATOR_REQUIRE_OBJECT_IDENTITY"] == "true"  # cluster-wide: per-object identity
    plain = {
        e["name"] for e in find(render({}), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS" not in plain  # the operator's default: Azure's endpoints
