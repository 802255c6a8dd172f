"""Stories 3-5 on the real node, as one story whose steps run in file order on one ModelApp:

3. publish v1 → the build Job's fetch init container downloads from Azurite and verifies sha256 → Kaniko
   builds FROM the local scorer base and pushes → the termination message's digest is the registry's →
   the contract Job runs `scoring-service smoke` in the built image → the Deployment runs it by digest →
   predictions through the Service are the model's. Publish v2: rebuilt, verified and rolled by itself.
4. while v2 rolls out, a steady load through the Service gets no failed request.
5. a version whose file passes sha256 but is no model fails the contract gate, v2 keeps serving; with
   the contract test off, its pods never become Ready → ProgressDeadlineExceeded → rolled back, v2
   answering throughout.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient
from integration.node.conftest import operator_env
from modelapp_bundle import write_manifest
from operator_kit import (
    OperatorProcess,
    apply,
    condition,
    deployment,
    patch_modelapp,
    publish,
    serving,
    train_example,
    wait_for_status,
)
from realnode import (
    APP,
    ROWS,
    Load,
    RealNode,
    cluster_ip,
    first_answer,
    get_json,
    image_app,
    infer_json,
    predictions,
    registry_digest,
)
from testbed import Azurite, kubectl, wait_until

# Real builds: a cold first build pulls and unpacks the scorer base in Kaniko.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]


@dataclass
class Story:
    namespace: str
    node: RealNode
    azurite: Azurite
    container: str
    bundles: Path
    operator: OperatorProcess

    @property
    def destination(self) -> str:
        return f"{self.node.registry}/{self.namespace}/{APP}"

    def service_url(self) -> str:
        return f"http://{cluster_ip(self.namespace, APP)}"

    def bundle(self, version: str, alpha: str = "0.5") -> Path:
        return train_example("diabetes", self.bundles / version, version, "--alpha", alpha)

    def unloadable(self, version: str) -> Path:
        """A bundle whose files pass sha256 (the manifest is honest) but whose model.onnx is no model."""
        out = self.bundles / version
        shutil.copytree(self.bundle(f"{version}-src"), out)
        (out / "model.onnx").write_bytes(b"this is not an ONNX model " * 40)
        (out / "modelapp.json").unlink()
        write_manifest(out, APP, version, contract="contract.json")
        return out

    def publish(self, bundle: Path, version: str) -> None:
        publish(self.azurite, bundle, self.container, f"{APP}/", version)

    def answer(self) -> list[float]:
        out = infer_json(self.service_url(), ROWS.tolist())["outputs"][0]["data"]
        return [float(v) for v in out]


@pytest.fixture(scope="module")
def story(
    story_namespace: str, real_node: RealNode, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Story]:
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"models-{uuid.uuid4().hex[:12]}"
    svc.create_container(container)
    logs = tmp_path_factory.mktemp("story")
    op = OperatorProcess(story_namespace, logs / "operator.log", env=operator_env(real_node)).start()
    yield Story(story_namespace, real_node, azurite, container, logs, op)
    op.stop()
    print(f"--- operator log (tail)\n{op.log[-4000:]}")
    svc.delete_container(container)


def _job_pod(namespace: str, job: str) -> dict[str, Any]:
    pods = get_json(namespace, "pods", "-l", f"job-name={job}")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    pod: dict[str, Any] = pods[0]
    return pod


def _jobs(namespace: str, component: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        namespace, "jobs", "-l", f"app.kubernetes.io/component={component}"
    )["items"]
    return items


def test_v1_is_fetched_built_verified_and_served_by_digest(story: Story) -> None:
    v1 = story.bundle("1.0.0")
    story.publish(v1, "1.0.0")
    assert apply(story.namespace, image_app(story.node, story.container, story.destination)).returncode == 0
    app = wait_for_status(story.namespace, APP, serving("1.0.0"), 900, "1.0.0 built, verified and serving")

    (build,) = _jobs(story.namespace, "build")
    pod = _job_pod(story.namespace, build["metadata"]["name"])
    assert pod["spec"]["nodeName"] == story.node.name
    fetch_log = kubectl("-n", story.namespace, "logs", pod["metadata"]["name"], "-c", "fetch-model").stdout
    manifest = json.loads((v1 / "modelapp.json").read_text())
    assert f"sha256 {manifest['sha256'][:12]}" in fetch_log, fetch_log
    kaniko = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "kaniko")
    digest = kaniko["state"]["terminated"]["message"].strip()
    tag = build["spec"]["template"]["spec"]["containers"][0]["args"][2].rsplit(":", 1)[1]
    assert digest == registry_digest(story.node.registry, f"{story.namespace}/{APP}", tag)

    (verify,) = _jobs(story.namespace, "verify")
    assert verify["status"].get("succeeded") == 1
    smoke = _job_pod(story.namespace, verify["metadata"]["name"])
    assert smoke["spec"]["containers"][0]["image"] == f"{story.destination}@{digest}"

    image = deployment(story.namespace, APP)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{story.destination}@{digest}" == app["status"]["servingVersion"]["image"]
    np.testing.assert_allclose(first_answer(story.service_url()), predictions(v1), rtol=1e-5)


def test_v2_rolls_by_itself_with_no_failed_request(story: Story) -> None:
    v2 = story.bundle("2.0.0", alpha="0.01")
    assert not np.allclose(predictions(v2), predictions(story.bundles / "1.0.0"))
    with Load(story.service_url()) as load:
        story.publish(v2, "2.0.0")
        wait_for_status(story.namespace, APP, serving("2.0.0"), 900, "2.0.0 rolled out")
        wait_until(
            lambda: np.allclose(story.answer(), predictions(v2), rtol=1e-5),
            timeout=60,
            what="the Service to answer with 2.0.0's predictions",
        )
        time.sleep(2)
    assert load.failures == []
    assert load.ok > 50


def test_a_model_that_does_not_load_fails_the_contract_and_v2_keeps_serving(story: Story) -> None:
    story.publish(story.unloadable("3.0.0"), "3.0.0")

    def quarantined(app: dict[str, Any]) -> bool:
        return any(q["version"] == "3.0.0" for q in app.get("status", {}).get("quarantined") or [])

    app = wait_for_status(story.namespace, APP, quarantined, 600, "3.0.0 quarantined")
    assert condition(app, "Verified")["reason"] == "ContractFailed"
    assert app["status"]["servingVersion"]["version"] == "2.0.0"
    np.testing.assert_allclose(story.answer(), predictions(story.bundles / "2.0.0"), rtol=1e-5)


def test_without_the_contract_test_pods_never_ready_roll_back_and_v2_answers_throughout(story: Story) -> None:
    patch_modelapp(story.namespace, APP, '{"spec": {"rollout": {"contractTest": false}}}')
    with Load(story.service_url()) as load:
        story.publish(story.unloadable("4.0.0"), "4.0.0")

        def rolled_back(app: dict[str, Any]) -> bool:
            return condition(app, "RolledOut").get("reason") == "RolledBack"

        app = wait_for_status(story.namespace, APP, rolled_back, 900, "4.0.0 rolled back")
    assert any(q["version"] == "4.0.0" for q in app["status"]["quarantined"])
    assert app["status"]["servingVersion"]["version"] == "2.0.0"
    assert load.failures == []
    np.testing.assert_allclose(story.answer(), predictions(story.bundles / "2.0.0"), rtol=1e-5)
