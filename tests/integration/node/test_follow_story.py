"""Staged promotion on the real node ("build once, promote the same artifact"), as one story in file order:

QA builds and verifies each version (Image packaging); prod follows QA from another namespace
(``versionPolicy.follow`` with a soak and Manual approval) and deploys the very image QA built, by digest,
without a build or contract-test Job of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient
from integration.node.conftest import operator_env
from operator_kit import (
    OperatorProcess,
    apply,
    condition,
    deployment,
    events,
    publish,
    serving,
    train_example,
    wait_for_status,
)
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
)
from testbed import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, kubectl, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

SOAK_SECONDS = 20


@dataclass
class Stages:
    qa: str
    prod: str
    node: RealNode
    azurite: Azurite
    container: str
    bundles: Path

    def publish(self, version: str, alpha: str) -> Path:
        bundle = train_example("diabetes", self.bundles / version, version, "--alpha", alpha)
        publish(self.azurite, bundle, self.container, f"{APP}/", version)
        return bundle

    def prod_app(self) -> dict[str, Any]:
        """Prod: no store, no build; the version and the image come from QA."""
        return {
            "apiVersion": "modelapp.dev/v1alpha1",
            "kind": "ModelApp",
            "metadata": {"name": APP},
            "spec": {
                "model": {
                    "versionPolicy": {
                        "follow": {"modelApp": APP, "namespace": self.qa, "soak": f"{SOAK_SECONDS}s"}
                    },
                    "pollInterval": "2s",
                },
                "packaging": "Image",
                "serve": {"replicas": 1},
                "rollout": {"approval": "Manual", "progressDeadlineSeconds": 90},
            },
        }


@pytest.fixture(scope="module")
def stages(
    real_node: RealNode, crds: None, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stages]:
    qa, prod = (f"{env}-{uuid.uuid4().hex[:8]}" for env in ("qa", "prod"))
    for ns in (qa, prod):
        kubectl("create", "namespace", ns)
    create_user_secrets(real_node, qa, AZURITE_ACCOUNT, AZURITE_KEY)
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"models-{uuid.uuid4().hex[:12]}"
    svc.create_container(container)
    logs = tmp_path_factory.mktemp("stages")
    op = OperatorProcess(qa, logs / "operator.log", env=operator_env(real_node), extra_args=("-n", prod))
    op.start()
    yield Stages(qa, prod, real_node, azurite, container, logs)
    op.stop()
    print(f"--- operator log (tail)\n{op.log[-4000:]}")
    for ns in (qa, prod):
        delete_namespace(ns)
    svc.delete_container(container)


def _jobs(namespace: str) -> list[str]:
    return [j["metadata"]["name"] for j in get_json(namespace, "jobs")["items"]]


def _answers(namespace: str, expected: list[float]) -> None:
    """The Service answers with ``expected`` (a pod the rollout replaced may answer for a moment more)."""
    url = f"http://{cluster_ip(namespace, APP)}"
    wait_until(
        lambda: np.allclose(first_answer(url), expected, rtol=1e-5),
        timeout=60,
        what=f"{namespace}'s Service to answer with the new version",
    )


def _image(namespace: str) -> str:
    image: str = deployment(namespace, APP)["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_qa_builds_and_serves_the_first_version(stages: Stages) -> None:
    stages.publish("1.0.0", "0.5")
    destination = f"{stages.node.registry}/{stages.qa}/{APP}"
    assert apply(stages.qa, image_app(stages.node, stages.container, destination)).returncode == 0
    wait_for_status(stages.qa, APP, serving("1.0.0"), 900, "QA serving 1.0.0")


def test_prod_may_not_follow_qa_until_qa_allows_it(stages: Stages) -> None:
    assert apply(stages.prod, stages.prod_app()).returncode == 0
    app = wait_for_status(
        stages.prod,
        APP,
        lambda a: condition(a, "Ready").get("reason") == "FollowNotAllowed",
        60,
        "prod refused: QA does not allow it",
    )
    assert f"modelapp.dev/followers={stages.prod}" in condition(app, "Ready")["message"]
    kubectl("-n", stages.qa, "annotate", "modelapp", APP, f"modelapp.dev/followers={stages.prod}")


def test_prod_serves_the_first_version_by_qa_digest_after_the_soak(stages: Stages) -> None:
    app = wait_for_status(stages.prod, APP, serving("1.0.0"), 300, "prod serving 1.0.0")
    assert app["status"]["servingVersion"]["source"] == f"{stages.qa}/{APP}"
    assert _image(stages.prod) == _image(stages.qa)
    assert "@sha256:" in _image(stages.prod)
    assert condition(app, "ImageBuilt")["reason"] == "FromSource"
    assert _jobs(stages.prod) == []
    _answers(stages.prod, predictions(stages.bundles / "1.0.0"))


def test_a_new_version_soaks_in_qa_waits_for_approval_and_reaches_prod_by_the_same_digest(
    stages: Stages,
) -> None:
    v2 = stages.publish("2.0.0", "0.01")
    wait_for_status(stages.qa, APP, serving("2.0.0"), 900, "QA serving 2.0.0")
    qa_since = get_json(stages.qa, "modelapp", APP)["status"]["servingVersion"]["since"]

    def pending(stage: str) -> Any:
        return lambda a: ((a.get("status") or {}).get("pending") or {}).get("stage") == stage

    soaking = wait_for_status(stages.prod, APP, pending("Soaking"), 60, "prod: 2.0.0 soaking in QA")
    p = soaking["status"]["pending"]
    assert (p["version"], p["source"]) == ("2.0.0", f"{stages.qa}/{APP}")
    assert p["soakUntil"] >= qa_since
    assert soaking["status"]["servingVersion"]["version"] == "1.0.0"

    waiting = wait_for_status(
        stages.prod, APP, pending("AwaitingApproval"), 120, "prod: 2.0.0 awaits approval"
    )
    assert waiting["status"]["pending"]["version"] == "2.0.0"
    assert waiting["status"]["servingVersion"]["version"] == "1.0.0"
    assert any(e["reason"] == "Soaked" for e in events(stages.prod, APP))

    kubectl("-n", stages.prod, "annotate", "modelapp", APP, "modelapp.dev/approve=2.0.0")
    app = wait_for_status(stages.prod, APP, serving("2.0.0"), 300, "prod serving 2.0.0")
    assert _image(stages.prod) == _image(stages.qa) == app["status"]["servingVersion"]["image"]
    assert _jobs(stages.prod) == []
    history = [(h["event"], h["version"]) for h in app["status"]["history"]]
    assert ("Soaking", "2.0.0") in history
    assert ("Approved", "2.0.0") in history
    _answers(stages.prod, predictions(v2))
