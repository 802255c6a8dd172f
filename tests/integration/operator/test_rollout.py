"""The operator's loop on the real test bed: apply → Ready, new versions roll out, failures roll back."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from operator_kit import (
    apply,
    condition,
    create_blob_secret,
    deployment,
    events,
    get_modelapp,
    modelapp_manifest,
    patch_modelapp,
    publish,
    serving,
    settle,
    wait_for_status,
)
from testbed import Azurite, cluster, kubectl, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def app(
    namespace: str, blob_secret: str, blob_container: str, azurite: Azurite, diabetes_bundle: Path
) -> dict[str, Any]:
    """Version 1.0.0 published and a ModelApp following diabetes/ in a fresh container."""
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.0.0")
    return modelapp_manifest("diabetes", blob_container, "diabetes/")


def _scorer_image(dep: dict[str, Any]) -> str:
    return next(c["image"] for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "scorer")


def test_apply_becomes_ready_and_serves_the_published_version(
    namespace: str, app: dict[str, Any], operator_factory: Any
) -> None:
    operator_factory()
    assert apply(namespace, app).returncode == 0
    ready = wait_for_status(namespace, "diabetes", serving("1.0.0"), 60, "1.0.0 serving")

    # kubectl wait works on the Ready condition, as users will script it.
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "modelapp/diabetes", "--timeout=10s")
    st = ready["status"]
    assert st["latestVersion"]["version"] == "1.0.0"
    assert st["servingVersion"]["sha256"] == st["latestVersion"]["sha256"]
    assert "r2" in st["servingVersion"]["metrics"]

    dep = deployment(namespace, "diabetes")
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "ModelApp"
    pod = dep["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]
    # Exactly the bundle the status names: a republished version would fail the pod.
    sha = st["servingVersion"]["sha256"]
    assert fetch["args"] == [
        "fetch",
        "--version",
        "1.0.0",
        "--expect-sha256",
        sha,
        "--out",
        "/models/diabetes",
    ]
    # The connection string reaches the fetch container only as the Secret, mounted into it alone.
    assert {"name": "store-credentials", "secret": {"secretName": "blob-creds", "defaultMode": 0o444}} in pod[
        "volumes"
    ]
    assert not [e for e in fetch["env"] if "value" in e and "AccountKey" in e["value"]]
    scorer = pod["containers"][0]
    assert scorer["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert scorer["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    svc = kubectl("-n", namespace, "get", "service", "diabetes", "-o", "jsonpath={.spec.selector}").stdout
    assert "diabetes" in svc

    # The printer columns tell the story at a glance.
    table = kubectl("-n", namespace, "get", "modelapps").stdout
    assert table.split("\n")[0].split()[:5] == ["NAME", "READY", "SERVING", "LATEST", "STATUS"]
    assert table.split("\n")[1].split()[:5] == ["diabetes", "True", "1.0.0", "1.0.0", "Serving"]


def test_new_version_rolls_out_automatically_and_half_uploads_are_ignored(
    namespace: str,
    app: dict[str, Any],
    operator_factory: Any,
    azurite: Azurite,
    blob_container: str,
    diabetes_bundle: Path,
) -> None:
    operator_factory()
    apply(namespace, app)
    wait_for_status(namespace, "diabetes", serving("1.0.0"), 60, "1.0.0 serving")

    # A half-uploaded version: the model is there, the manifest (written last) is not.
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    svc.get_blob_client(blob_container, "diabetes/9.0.0/model.onnx").upload_blob(b"not yet")
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.1.0", "--metric", "r2=0.5")
    after = wait_for_status(namespace, "diabetes", serving("1.1.0"), 30, "1.1.0 serving")
    assert after["status"]["latestVersion"]["version"] == "1.1.0"
    settle(2.5)
    assert get_modelapp(namespace, "diabetes")["status"]["servingVersion"]["version"] == "1.1.0"

    dep = deployment(namespace, "diabetes")
    assert dep["spec"]["template"]["spec"]["initContainers"][0]["args"][2] == "1.1.0"
    history = [(h["event"], h["version"]) for h in after["status"]["history"]]
    assert ("Detected", "1.1.0") in history
    assert ("RolledOut", "1.1.0") in history
    reasons = [e["reason"] for e in events(namespace, "diabetes")]
    assert "NewVersion" in reasons
    assert "RolloutComplete" in reasons


def test_failed_rollout_is_rolled_back_and_the_previous_version_keeps_serving(
    namespace: str, app: dict[str, Any], operator_factory: Any
) -> None:
    operator_factory()
    apply(namespace, app)
    wait_for_status(namespace, "diabetes", serving("1.0.0"), 60, "1.0.0 serving")
    good_image = _scorer_image(deployment(namespace, "diabetes"))

    patch_modelapp(
        namespace, "diabetes", '{"spec":{"serve":{"image":"registry.example/scoring-service:kwok-fail"}}}'
    )
    failed = wait_for_status(
        namespace,
        "diabetes",
        lambda a: condition(a, "RolledOut").get("reason") == "RolloutFailed",
        60,
        "the rollout to be reported failed",
    )
    assert condition(failed, "Stalled")["status"] == "True"
    ready = condition(failed, "Ready")
    assert ready["status"] == "False"
    assert "still serving 1.0.0" in ready["message"]
    assert failed["status"]["servingVersion"]["version"] == "1.0.0"
    assert any(h["event"] == "RolledBack" for h in failed["status"]["history"])

    # The Deployment runs the previous template again, fully available.
    def restored() -> bool:
        dep = deployment(namespace, "diabetes")
        st = dep["status"]
        return (
            _scorer_image(dep) == good_image
            and st.get("availableReplicas") == 2
            and st.get("updatedReplicas") == 2
        )

    wait_until(restored, 30, what="the previous template restored and available")
    warnings = [e for e in events(namespace, "diabetes") if e["type"] == "Warning"]
    assert any(e["reason"] == "RolledBack" for e in warnings)

    # Fixing the spec clears the failure.
    patch_modelapp(
        namespace, "diabetes", '{"spec":{"serve":{"image":"registry.example/scoring-service:fixed"}}}'
    )
    fixed = wait_for_status(namespace, "diabetes", serving("1.0.0"), 30, "the fixed image serving")
    assert fixed["status"]["servingVersion"]["image"] == "registry.example/scoring-service:fixed"
    assert condition(fixed, "Stalled")["status"] == "False"


def test_operator_killed_mid_rollout_completes_after_restart_without_duplicates(
    namespace: str,
    app: dict[str, Any],
    operator_factory: Any,
    azurite: Azurite,
    blob_container: str,
    diabetes_bundle: Path,
) -> None:
    first = operator_factory()
    apply(namespace, app)
    wait_for_status(namespace, "diabetes", serving("1.0.0"), 60, "1.0.0 serving")

    # Slow the rollout down so the kill lands in the middle of it: more replicas, surge of 25%.
    patch_modelapp(namespace, "diabetes", '{"spec":{"serve":{"replicas":8}}}')
    wait_for_status(namespace, "diabetes", lambda a: a["status"].get("replicas") == 8, 30, "8 replicas")
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "2.0.0")
    wait_for_status(
        namespace,
        "diabetes",
        lambda a: (a["status"].get("pending") or {}).get("version") == "2.0.0",
        30,
        "rollout",
    )
    first.kill(signal.SIGKILL)

    operator_factory()
    done = wait_for_status(namespace, "diabetes", serving("2.0.0"), 60, "2.0.0 serving after restart")
    history = [(h["event"], h["version"]) for h in done["status"]["history"]]
    assert history.count(("RolloutStarted", "2.0.0")) == 1
    assert history.count(("RolledOut", "2.0.0")) == 1
    rs = kubectl(
        "-n", namespace, "get", "replicasets", "-o", "jsonpath={.items[*].metadata.name}"
    ).stdout.split()
    assert len(rs) == 2  # 1.0.0's and 2.0.0's: the restart created no extra ReplicaSet
    started = [e for e in events(namespace, "diabetes") if e["reason"] == "RolloutStarted"]
    assert sum(e.get("count", 1) for e in started if "2.0.0" in e["message"]) == 1


def test_store_outage_is_reported_and_recovers_while_serving_continues(
    namespace: str,
    app: dict[str, Any],
    operator_factory: Any,
    azurite: Azurite,
    blob_container: str,
    diabetes_bundle: Path,
) -> None:
    operator_factory(MODELAPP_OPERATOR_STORE_CONNECTION_TIMEOUT="1", MODELAPP_OPERATOR_STORE_RETRY_TOTAL="0")
    apply(namespace, app)
    wait_for_status(namespace, "diabetes", serving("1.0.0"), 60, "1.0.0 serving")

    cluster("stop", "azurite")
    try:
        down = wait_for_status(
            namespace,
            "diabetes",
            lambda a: condition(a, "ModelResolved").get("reason") == "StoreUnavailable",
            30,
            "StoreUnavailable",
        )
        assert condition(down, "Ready")["status"] == "True"  # still serving
        assert condition(down, "Ready")["reason"] == "StoreUnavailable"
        assert deployment(namespace, "diabetes")["status"]["availableReplicas"] == 2
    finally:
        cluster("up", "azurite")

    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.2.0")
    back = wait_for_status(namespace, "diabetes", serving("1.2.0"), 60, "recovery and 1.2.0 serving")
    assert condition(back, "ModelResolved")["status"] == "True"
    assert condition(back, "Ready")["reason"] == "Serving"


def test_missing_secret_stalls_with_a_clear_reason(
    namespace: str, blob_container: str, operator_factory: Any, azurite: Azurite, diabetes_bundle: Path
) -> None:
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.0.0")
    op = operator_factory("-v")  # debug logs too: they must not carry the secret either
    apply(namespace, modelapp_manifest("diabetes", blob_container, "diabetes/", secret="nope"))
    stalled = wait_for_status(
        namespace, "diabetes", lambda a: condition(a, "Stalled").get("status") == "True", 30, "Stalled"
    )
    assert condition(stalled, "Stalled")["reason"] == "SecretNotFound"
    assert "nope" in condition(stalled, "Stalled")["message"]
    assert condition(stalled, "Ready")["status"] == "False"

    # Creating the Secret unblocks it without touching the ModelApp.
    create_blob_secret(namespace, azurite.connection_string, name="nope")
    wait_for_status(namespace, "diabetes", serving("1.0.0"), 40, "1.0.0 serving once the Secret exists")

    # No secret in logs, status or events.
    key = azurite.account_key
    assert "Handler 'modelapp_changed'" in op.log  # -v took effect: kopf's per-object INFO is there
    assert key not in op.log
    assert base64.b64encode(azurite.connection_string.encode()).decode()[:40] not in op.log
    assert key not in json.dumps(get_modelapp(namespace, "diabetes"))
    assert key not in json.dumps(events(namespace, "diabetes"))
