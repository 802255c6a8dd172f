"""Canary and shadow releases on the real node, as one story in file order on one ModelApp (InitContainer
packaging: the pods fetch each version from Azurite), with real traffic through the app's Service:

1. a good version walks its canary steps (33 % then 50 % of the pods) and rolls, no request failing;
2. a version whose model fails on the requests clients send is aborted at step 1 on its own error ratio:
   it scales to zero and is quarantined with the figure, the stable version never stops serving, and no
   request fails for any reason but that model's own answers;
3. with ``rollout.shadow``: a retrained version with near-identical predictions passes the shadow gate;
4. a version whose predictions are shifted is stopped by it with the measured difference in status, while
   every client request got the serving version's answer.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from azure.storage.blob import BlobServiceClient
from integration.node.conftest import operator_env
from modelapp_bundle import write_manifest
from onnx import helper, numpy_helper
from operator_kit import (
    OperatorProcess,
    apply,
    condition,
    events,
    get_modelapp,
    modelapp_manifest,
    patch_modelapp,
    publish,
    serving,
    train_example,
    wait_for_status,
)
from realnode import APP, Load, RealNode, cluster_ip, first_answer, get_json, predictions
from testbed import Azurite, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

STEPS = [{"weight": 34, "pause": "8s"}, {"weight": 50, "pause": "8s"}]


@dataclass
class Release:
    namespace: str
    node: RealNode
    azurite: Azurite
    container: str
    bundles: Path

    def url(self) -> str:
        return f"http://{cluster_ip(self.namespace, APP)}"

    def train(self, version: str, alpha: str) -> Path:
        return train_example("diabetes", self.bundles / version, version, "--alpha", alpha)

    def publish(self, bundle: Path, version: str) -> Path:
        publish(self.azurite, bundle, self.container, f"{APP}/", version)
        return bundle

    def changed(self, version: str, alpha: str, change: str) -> Path:
        """A trained bundle whose ONNX graph gets one more node at its output, its manifest rewritten."""
        src = self.train(f"{version}-src", alpha)
        out = self.bundles / version
        shutil.copytree(src, out)
        model = onnx.load(str(out / "model.onnx"))
        graph = model.graph
        last = graph.output[0].name
        graph.node[-1].output[list(graph.node[-1].output).index(last)] = f"{last}_raw"
        if change == "batch-one":
            # Runs for one row (the scorer's warm-up) and fails for more: a model that breaks on traffic.
            graph.initializer.append(numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "one_by_one"))
            graph.node.append(helper.make_node("Reshape", [f"{last}_raw", "one_by_one"], [last]))
        else:
            shift = np.array(float(change), dtype=np.float32)
            graph.initializer.append(numpy_helper.from_array(shift, "shift"))
            graph.node.append(helper.make_node("Add", [f"{last}_raw", "shift"], [last]))
        onnx.save(model, str(out / "model.onnx"))
        (out / "modelapp.json").unlink()
        write_manifest(out, APP, version, contract="contract.json")
        return out

    def app(self) -> dict[str, Any]:
        body = modelapp_manifest(APP, self.container, f"{APP}/")
        spec = body["spec"]
        spec["model"]["source"]["azureBlob"]["accountUrl"] = self.node.blob_url
        spec["model"]["pollInterval"] = "1s"
        spec["serve"] = {"replicas": 2}
        spec["rollout"] = {
            "progressDeadlineSeconds": 120,
            "strategy": {"canary": {"steps": STEPS, "analysis": {"minRequests": 20, "maxErrorRatio": 0.05}}},
        }
        return body


@pytest.fixture(scope="module")
def release(
    story_namespace: str, real_node: RealNode, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"models-{uuid.uuid4().hex[:12]}"
    svc.create_container(container)
    logs = tmp_path_factory.mktemp("release")
    op = OperatorProcess(story_namespace, logs / "operator.log", env=operator_env(real_node)).start()
    yield Release(story_namespace, real_node, azurite, container, logs)
    op.stop()
    print(f"--- operator log (tail)\n{op.log[-6000:]}")
    svc.delete_container(container)


def _pending(app: dict[str, Any]) -> dict[str, Any]:
    return dict((app.get("status") or {}).get("pending") or {})


def _canary_replicas(namespace: str) -> int:
    dep = get_json(namespace, "deployment", f"{APP}-canary")
    return int(dep["spec"]["replicas"])


def _quarantined(version: str) -> Any:
    def check(app: dict[str, Any]) -> bool:
        return any(q["version"] == version for q in (app.get("status") or {}).get("quarantined") or [])

    return check


def test_the_first_version_serves(release: Release) -> None:
    release.publish(release.train("1.0.0", "0.5"), "1.0.0")
    assert apply(release.namespace, release.app()).returncode == 0
    wait_for_status(release.namespace, APP, serving("1.0.0"), 300, "1.0.0 serving")
    first_answer(release.url())


def test_a_good_version_walks_the_canary_steps_and_rolls(release: Release) -> None:
    v2 = release.train("2.0.0", "0.01")
    with Load(release.url()) as load:
        release.publish(v2, "2.0.0")

        def at_step(step: int) -> Any:
            return lambda a: (_pending(a).get("canary") or {}).get("step") == step

        one = wait_for_status(release.namespace, APP, at_step(1), 120, "canary step 1")
        c = one["status"]["pending"]["canary"]
        assert (c["weight"], c["canaryReplicas"], c["stableReplicas"], c["share"]) == (34, 1, 2, 33.3)
        two = wait_for_status(release.namespace, APP, at_step(2), 180, "canary step 2")
        assert two["status"]["pending"]["canary"]["canaryReplicas"] == 2
        assert two["status"]["pending"]["canary"]["requests"] >= 20
        (moved,) = [h for h in two["status"]["history"] if "step 2/2" in h["message"]]
        assert "error ratio 0," in moved["message"]
        app = wait_for_status(release.namespace, APP, serving("2.0.0"), 300, "2.0.0 rolled after its canary")
        wait_until(
            lambda: _canary_replicas(release.namespace) == 0, timeout=60, what="the canary scaled to 0"
        )
    assert load.failures == []
    assert any(a == pytest.approx(predictions(v2), rel=1e-5) for a in load.answers)
    events_ = [h["event"] for h in app["status"]["history"] if h["version"] == "2.0.0"]
    assert events_.count("CanaryStep") == 2
    assert "CanaryPassed" in events_


def test_a_failing_candidate_is_aborted_at_step_one_and_stable_never_stops(release: Release) -> None:
    stable = predictions(release.bundles / "2.0.0")
    with Load(release.url()) as load:
        release.publish(release.changed("3.0.0", "0.3", "batch-one"), "3.0.0")
        app = wait_for_status(release.namespace, APP, _quarantined("3.0.0"), 240, "3.0.0 aborted")
        wait_until(
            lambda: _canary_replicas(release.namespace) == 0, timeout=30, what="the canary scaled to 0"
        )
        wait_until(lambda: load.ok > 0, timeout=10, what="requests after the abort")
        ok_before = load.ok
        wait_until(lambda: load.ok > ok_before + 20, timeout=30, what="more requests after the abort")
    entry = next(q for q in app["status"]["quarantined"] if q["version"] == "3.0.0")
    assert entry["reason"] == "CanaryFailed"
    assert "canary step 1: error ratio" in entry["message"]
    assert app["status"]["servingVersion"]["version"] == "2.0.0"
    # The candidate's own answers (400: its model fails on these rows) are what the canary measured;
    # nothing else may fail: not the abort, not the stable pods.
    others = [f for f in load.failures if "HTTPError 400" not in f]
    assert others == []
    assert all(a == pytest.approx(stable, rel=1e-5) for a in load.answers)
    assert any(
        e["reason"] == "CanaryFailed" and e["type"] == "Warning" for e in events(release.namespace, APP)
    )
    assert condition(get_modelapp(release.namespace, APP), "Ready")["status"] == "True"


def test_shadow_passes_a_retrained_version_with_near_identical_predictions(release: Release) -> None:
    shadow = {"sample": 0.5, "minRequests": 60, "maxMeanAbsDiff": 5.0, "timeout": "5m"}
    patch = {"spec": {"rollout": {"strategy": None, "shadow": shadow}}}
    patch_modelapp(release.namespace, APP, json.dumps(patch))
    wait_for_status(release.namespace, APP, serving("2.0.0"), 300, "the serving pods mount the shadow config")
    v4 = release.train("4.0.0", "0.0101")
    stable = predictions(release.bundles / "2.0.0")
    assert np.abs(np.array(predictions(v4)) - np.array(stable)).mean() < 5.0
    with Load(release.url()) as load:
        release.publish(v4, "4.0.0")
        shadowing = wait_for_status(
            release.namespace, APP, lambda a: _pending(a).get("stage") == "Shadowing", 120, "4.0.0 shadowing"
        )
        assert shadowing["status"]["pending"]["shadow"]["sample"] == 0.5
        app = wait_for_status(release.namespace, APP, serving("4.0.0"), 400, "4.0.0 passed its shadow")
    assert load.failures == []
    passed = next(h for h in app["status"]["history"] if h["event"] == "ShadowPassed")
    assert "requests compared" in passed["message"]


def _steady(url: str, expected: list[float]) -> None:
    """Wait until the Service answers only with ``expected`` (the pods a rollout replaced are gone)."""

    def twenty_in_a_row() -> bool:
        return all(first_answer(url) == pytest.approx(expected, rel=1e-5) for _ in range(20))

    wait_until(twenty_in_a_row, timeout=60, interval=1, what="the Service to answer with one version")


def test_shadow_stops_a_shifted_model_and_clients_only_ever_see_the_serving_answers(release: Release) -> None:
    stable = predictions(release.bundles / "4.0.0")
    _steady(release.url(), stable)
    with Load(release.url()) as load:
        release.publish(release.changed("5.0.0", "0.0101", "40"), "5.0.0")
        app = wait_for_status(
            release.namespace, APP, _quarantined("5.0.0"), 400, "5.0.0 stopped by the shadow"
        )
    entry = next(q for q in app["status"]["quarantined"] if q["version"] == "5.0.0")
    assert entry["reason"] == "ShadowFailed"
    assert "mean absolute difference" in entry["message"]
    assert app["status"]["servingVersion"]["version"] == "4.0.0"
    assert load.failures == []
    assert load.answers
    assert all(a == pytest.approx(stable, rel=1e-5) for a in load.answers)
