"""Stories 6 and 8 on the real node, in namespaces that enforce the `restricted` Pod Security level:

6. `packaging: InitContainer`: the init container really fetches from Azurite, the scorer serves it, and
   every container of the serving pods passes `restricted`.
8. Kaniko needs root, so `restricted` refuses the build pod: the API's refusal is a clear condition at
   once, not a wait for the build deadline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from integration.node.conftest import operator_env
from operator_kit import apply, condition, publish, serving, wait_for_status
from realnode import (
    APP,
    RealNode,
    cluster_ip,
    create_user_secrets,
    first_answer,
    get_json,
    image_app,
    predictions,
)
from testbed import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def restricted_namespace(
    namespace: str,
    real_node: RealNode,
    azurite: Azurite,
    blob_container: str,
    diabetes_bundle: Path,
    operator_factory: Any,
) -> str:
    """A namespace enforcing `restricted`, with the user's Secrets, 1.0.0 published to `blob_container`
    and the operator running with the test bed's real images."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    create_user_secrets(real_node, namespace, AZURITE_ACCOUNT, AZURITE_KEY)
    publish(azurite, diabetes_bundle, blob_container, f"{APP}/", "1.0.0")
    operator_factory(**operator_env(real_node))
    return namespace


def test_init_container_packaging_fetches_for_real_and_serves(
    restricted_namespace: str, real_node: RealNode, blob_container: str, diabetes_bundle: Path
) -> None:
    ns = restricted_namespace
    body = image_app(real_node, blob_container, "unused")
    body["spec"]["packaging"] = "InitContainer"
    del body["spec"]["build"]
    assert apply(ns, body).returncode == 0
    wait_for_status(ns, APP, serving("1.0.0"), 300, "1.0.0 served with InitContainer packaging")

    pods = get_json(ns, "pods", "-l", f"app.kubernetes.io/instance={APP}")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == real_node.name
        (init,) = pod["status"]["initContainerStatuses"]
        assert init["state"]["terminated"]["exitCode"] == 0
        log = kubectl("-n", ns, "logs", pod["metadata"]["name"], "-c", init["name"]).stdout
        assert "files verified" in log, log
    got = first_answer(f"http://{cluster_ip(ns, APP)}")
    np.testing.assert_allclose(got, predictions(diabetes_bundle), rtol=1e-5)


def test_a_build_pod_the_namespace_refuses_is_a_clear_condition(
    restricted_namespace: str,
    real_node: RealNode,
    blob_container: str,
) -> None:
    ns = restricted_namespace
    body = image_app(real_node, blob_container, f"{real_node.registry}/{ns}/{APP}")
    body["spec"]["build"]["timeoutSeconds"] = 1800
    assert apply(ns, body).returncode == 0

    def refused(app: dict[str, Any]) -> bool:
        return condition(app, "ImageBuilt").get("reason") == "BuildPodRejected"

    app = wait_for_status(ns, APP, refused, 90, "the refused build pod reported")
    built = condition(app, "ImageBuilt")
    assert built["status"] == "False"
    assert "restricted" in built["message"], built["message"]
    quarantined = app["status"].get("quarantined") or []
    assert quarantined == [], "the namespace is at fault, not the version"


def test_a_fetch_that_fails_says_why_in_the_modelapps_status(
    restricted_namespace: str, real_node: RealNode, blob_container: str, azurite: Azurite
) -> None:
    """The store lost a file the manifest lists: the init container fails verification, and the ModelApp
    says so (FetchFailed, with the fetch's own words) long before the progress deadline."""
    from azure.storage.blob import BlobServiceClient

    ns = restricted_namespace
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.get_container_client(blob_container).delete_blob(f"{APP}/1.0.0/model.onnx")
    service.close()
    body = image_app(real_node, blob_container, "unused")
    body["spec"]["packaging"] = "InitContainer"
    body["spec"]["rollout"] = {"progressDeadlineSeconds": 600}
    del body["spec"]["build"]
    assert apply(ns, body).returncode == 0

    def fetch_failed(app: dict[str, Any]) -> bool:
        return condition(app, "RolledOut").get("reason") == "FetchFailed"

    app = wait_for_status(ns, APP, fetch_failed, 400, "the fetch init container's failure in status")
    message = condition(app, "RolledOut")["message"]
    assert "fetch-model in pod" in message
    assert "model.onnx" in message, message
    assert condition(app, "Ready")["reason"] == "FetchFailed"
