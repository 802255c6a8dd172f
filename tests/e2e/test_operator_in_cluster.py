"""Story 7: the operator image built from Dockerfile.operator, installed by the chart on the real node
(its ServiceAccount and RBAC, non-root, read-only root filesystem, the in-cluster config), reconciles
the Image story: publish → Kaniko build → contract test → Deployment by digest → predictions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient
from chart_kit import CHART, helm, new_namespace, set_args
from operator_kit import apply, publish, serving, train_example, wait_for_status
from realnode import (
    APP,
    RealNode,
    cluster_ip,
    create_user_secrets,
    delete_namespace,
    first_answer,
    get_json,
    image_app,
    predictions,
    wait_pod_ready,
)
from testbed import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def _chart_values(node: RealNode, watch: str) -> dict[str, object]:
    repository, digest = node.operator_image.split("@")
    return {
        "image": {"repository": repository, "tag": "testbed", "digest": digest},
        "watchNamespaces": [watch],
        "defaults": {
            "scorerImage": node.scorer_image,
            "baseImage": node.scorer_image,
            "kanikoImage": node.kaniko_image,
        },
        "operator": {
            "logFormat": "plain",
            "resyncSeconds": 30,
        },
        # Azurite as pods reach it is no Azure blob host: allowed explicitly to receive credentials.
        "allowedAccountHosts": [urlsplit(node.blob_url).netloc],
    }


@pytest.fixture
def apps_namespace(real_node: RealNode) -> Iterator[str]:
    """Where the ModelApp lives, with the Secrets a user creates (Azurite as pods reach it, registry)."""
    name = new_namespace()
    create_user_secrets(real_node, name, AZURITE_ACCOUNT, AZURITE_KEY)
    yield name
    delete_namespace(name)


def test_the_charts_operator_pod_reconciles_the_image_story(
    real_node: RealNode,
    namespace: str,
    apps_namespace: str,
    crds: None,
    peering_crds: None,
    azurite: Azurite,
    tmp_path: Path,
) -> None:
    release = f"r{namespace[2:]}"
    helm("install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "180s",
         *set_args(_chart_values(real_node, apps_namespace)))  # fmt: skip
    try:
        (pod,) = get_json(namespace, "pods", "-l", "app.kubernetes.io/name=modelapp-operator")["items"]
        pod = wait_pod_ready(namespace, pod["metadata"]["name"])
        assert pod["spec"]["nodeName"] == real_node.name
        container = pod["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        uid = kubectl("-n", namespace, "exec", pod["metadata"]["name"], "--", "python3", "-c",
                      "import os; print(os.getuid())").stdout.strip()  # fmt: skip
        assert uid == "10001"

        svc = BlobServiceClient.from_connection_string(azurite.connection_string)
        blobs = f"models-{uuid.uuid4().hex[:12]}"
        svc.create_container(blobs)
        bundle = train_example("diabetes", tmp_path / "v1", "1.0.0")
        publish(azurite, bundle, blobs, f"{APP}/", "1.0.0")
        destination = f"{real_node.registry}/{apps_namespace}/{APP}"
        assert apply(apps_namespace, image_app(real_node, blobs, destination)).returncode == 0
        app = wait_for_status(
            apps_namespace, APP, serving("1.0.0"), 900, "1.0.0 served by the chart's operator"
        )
        assert app["status"]["servingVersion"]["image"].startswith(f"{destination}@sha256:")
        got = first_answer(f"http://{cluster_ip(apps_namespace, APP)}")
        np.testing.assert_allclose(got, predictions(bundle), rtol=1e-5)
        svc.delete_container(blobs)
    finally:
        log = kubectl("-n", namespace, "logs", "-l", "app.kubernetes.io/name=modelapp-operator",
                      "--tail", "80", check=False).stdout  # fmt: skip
        print(f"--- in-cluster operator log (tail)\n{log}")
        helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "60s", check=False)
