"""Image packaging on the test bed: Kaniko build Jobs, deploy by digest, contract gate, approval, promotion, rollback."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from operator_kit import (
    apply,
    condition,
    create_push_secret,
    deployment,
    events,
    get_modelapp,
    modelapp_cli,
    modelapp_manifest,
    on_kwok,
    patch_modelapp,
    publish,
    serving,
    settle,
    wait_for_status,
)
from testbed import KUBECONFIG, Azurite, kubectl

pytestmark = pytest.mark.integration

DEST = "registry.example/team/diabetes"


@pytest.fixture
def push_secret(namespace: str) -> str:
    return create_push_secret(namespace)


def image_app(container: str, **spec: Any) -> dict[str, Any]:
    body = modelapp_manifest("diabetes", container, "diabetes/", **spec)
    body["spec"]["packaging"] = "Image"
    body["spec"].setdefault("build", {"destination": DEST, "pushSecretRef": {"name": "push-creds"}})
    body["spec"]["serve"] = on_kwok({"replicas": 2})
    return body


def jobs(namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(kubectl("-n", namespace, "get", "jobs", "-o", "json").stdout)[
        "items"
    ]
    return items


def scorer_image(namespace: str) -> str:
    spec = deployment(namespace, "diabetes")["spec"]["template"]["spec"]
    return str(spec["containers"][0]["image"])


@pytest.fixture
def ready_v1(
    namespace: str,
    blob_secret: str,
    push_secret: str,
    blob_container: str,
    azurite: Azurite,
    diabetes_bundle: Path,
    operator_factory: Any,
    request: pytest.FixtureRequest,
) -> dict[str, Any]:
    """1.0.0 built, verified and serving by digest; yields the ModelApp."""
    extra = getattr(request, "param", {})
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.0.0")
    operator_factory()
    assert apply(namespace, image_app(blob_container, **extra)).returncode == 0
    return wait_for_status(namespace, "diabetes", serving("1.0.0"), 90, "1.0.0 built, verified and serving")


def test_publish_builds_verifies_and_deploys_by_digest(namespace: str, ready_v1: dict[str, Any]) -> None:
    st = ready_v1["status"]
    built = [j for j in jobs(namespace) if j["metadata"]["labels"]["app.kubernetes.io/component"] == "build"]
    assert len(built) == 1
    job = built[0]
    digest = "sha256:" + hashlib.sha256(job["metadata"]["name"].encode()).hexdigest()  # what KWOK "pushed"
    assert st["servingVersion"]["image"] == f"{DEST}@{digest}"
    assert scorer_image(namespace) == f"{DEST}@{digest}"
    pod = deployment(namespace, "diabetes")["spec"]["template"]["spec"]
    assert "initContainers" not in pod  # the model is baked into the image

    # The build Job: owned, bounded, cleaned up, Kaniko reading the push secret, digest to the termination log.
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ModelApp"
    spec = job["spec"]
    assert spec["backoffLimit"] == 1
    assert spec["activeDeadlineSeconds"] == 1800
    assert spec["ttlSecondsAfterFinished"] > 0
    kaniko = spec["template"]["spec"]["containers"][0]
    assert "--context=dir:///workspace" in kaniko["args"]
    assert "--digest-file=/dev/termination-log" in kaniko["args"]
    assert any(a.startswith(f"--destination={DEST}:1.0.0-") for a in kaniko["args"])
    assert "--cache=true" in kaniko["args"]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["docker-config"]["secret"]["secretName"] == "push-creds"
    fetch = spec["template"]["spec"]["initContainers"][0]
    assert fetch["args"][:7] == [
        "fetch",
        "--version",
        "1.0.0",
        "--expect-sha256",
        st["latestVersion"]["sha256"],
        "--out",
        "/workspace",
    ]
    assert "--dockerfile" in fetch["args"]

    for cond, reason in (("ImageBuilt", "Built"), ("Verified", "ContractPassed"), ("Ready", "Serving")):
        assert condition(ready_v1, cond)["status"] == "True"
        assert condition(ready_v1, cond)["reason"] == reason
    timeline = [h["event"] for h in st["history"]]
    for a, b in (
        ("Detected", "BuildStarted"),
        ("BuildStarted", "Built"),
        ("Built", "Verified"),
        ("Verified", "RolledOut"),
    ):
        assert timeline.index(a) < timeline.index(b)
    built_entry = next(h for h in st["history"] if h["event"] == "Built")
    assert built_entry["durationSeconds"] >= 0
    verify = [
        j for j in jobs(namespace) if j["metadata"]["labels"]["app.kubernetes.io/component"] == "verify"
    ]
    assert verify[0]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "smoke",
        "--model-dir",
        "/models",
    ]


def test_restart_mid_build_creates_exactly_one_build_job(
    namespace: str,
    blob_secret: str,
    push_secret: str,
    blob_container: str,
    azurite: Azurite,
    diabetes_bundle: Path,
    operator_factory: Any,
) -> None:
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.0.0")
    first = operator_factory()
    apply(namespace, image_app(blob_container))
    wait_for_status(
        namespace,
        "diabetes",
        lambda a: (a.get("status", {}).get("pending") or {}).get("stage") == "Building",
        30,
        "the build to start",
    )
    first.kill(signal.SIGKILL)  # KWOK takes 3 s per build: this lands mid-build
    operator_factory()
    done = wait_for_status(namespace, "diabetes", serving("1.0.0"), 90, "1.0.0 serving after restart")
    assert len([j for j in jobs(namespace) if "-b-" in j["metadata"]["name"]]) == 1
    assert [h["event"] for h in done["status"]["history"]].count("BuildStarted") == 1


def test_failed_build_quarantines_the_version_and_leaves_serving_untouched(
    namespace: str, ready_v1: dict[str, Any], azurite: Azurite, blob_container: str, diabetes_bundle: Path
) -> None:
    before = scorer_image(namespace)
    patch_modelapp(
        namespace, "diabetes", '{"spec":{"build":{"kanikoImage":"registry.example/kwok-fail/kaniko:1"}}}'
    )
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "2.0.0")
    failed = wait_for_status(
        namespace,
        "diabetes",
        lambda a: any(q["version"] == "2.0.0" for q in a["status"].get("quarantined") or []),
        60,
        "2.0.0 quarantined after its build failed",
    )
    assert condition(failed, "ImageBuilt")["status"] == "False"
    assert condition(failed, "ImageBuilt")["reason"] == "BuildFailed"
    q = next(q for q in failed["status"]["quarantined"] if q["version"] == "2.0.0")
    assert q["reason"] == "BuildFailed"
    warning = [e for e in events(namespace, "diabetes") if e["reason"] == "BuildFailed"]
    assert any("kwok-fail" in e["message"] for e in warning)  # the tail of the termination message
    assert failed["status"]["servingVersion"]["version"] == "1.0.0"
    assert scorer_image(namespace) == before
    assert deployment(namespace, "diabetes")["status"]["availableReplicas"] == 2


def test_failed_contract_quarantines_and_rolls_nothing(
    namespace: str, ready_v1: dict[str, Any], azurite: Azurite, blob_container: str, diabetes_bundle: Path
) -> None:
    before = scorer_image(namespace)
    # KWOK fails verify pods of a version whose name says kwok-fail; its build still succeeds.
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "2.0.0-kwok-fail")
    failed = wait_for_status(
        namespace,
        "diabetes",
        lambda a: condition(a, "Verified").get("reason") == "ContractFailed",
        60,
        "ContractFailed",
    )
    assert failed["status"]["quarantined"][0]["version"] == "2.0.0-kwok-fail"
    assert condition(failed, "ImageBuilt")["status"] == "True"
    settle(2)
    assert scorer_image(namespace) == before
    assert get_modelapp(namespace, "diabetes")["status"]["servingVersion"]["version"] == "1.0.0"


@pytest.mark.parametrize("ready_v1", [{"rollout": {"approval": "Manual"}}], indirect=True)
def test_manual_approval_waits_for_modelapp_approve(
    namespace: str, ready_v1: dict[str, Any], azurite: Azurite, blob_container: str, diabetes_bundle: Path
) -> None:
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.1.0", "--metric", "r2=0.9")
    waiting = wait_for_status(
        namespace,
        "diabetes",
        lambda a: (a["status"].get("pending") or {}).get("stage") == "AwaitingApproval",
        60,
        "AwaitingApproval",
    )
    diff = waiting["status"]["pending"]["metricsDiff"]["r2"]
    assert diff["candidate"] == 0.9
    assert diff["serving"] < 0.9
    settle(2)
    assert get_modelapp(namespace, "diabetes")["status"]["servingVersion"]["version"] == "1.0.0"

    out = modelapp_cli("approve", "diabetes", "-n", namespace, "--kubeconfig", str(KUBECONFIG)).stdout
    assert "approved diabetes 1.1.0" in out
    done = wait_for_status(namespace, "diabetes", serving("1.1.0"), 60, "1.1.0 serving after approval")
    events_ = [h["event"] for h in done["status"]["history"]]
    assert events_.index("AwaitingApproval") < events_.index("Approved") < len(events_) - 1
    annotations = done["metadata"].get("annotations") or {}
    assert "modelapp.dev/approve" not in annotations  # consumed


@pytest.mark.parametrize(
    "ready_v1", [{"model": {"promotion": {"metric": "r2", "direction": "Maximize"}}}], indirect=True
)
def test_promotion_gate_keeps_a_worse_version_out(
    namespace: str, ready_v1: dict[str, Any], azurite: Azurite, blob_container: str, diabetes_bundle: Path
) -> None:
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.1.0", "--metric", "r2=0.01")
    worse = wait_for_status(
        namespace,
        "diabetes",
        lambda a: condition(a, "ModelResolved").get("reason") == "NotBetter",
        60,
        "NotBetter",
    )
    assert "1.1.0" in condition(worse, "ModelResolved")["message"]
    assert condition(worse, "Ready")["status"] == "True"
    assert not worse["status"].get("quarantined")  # not better is not failed
    assert not [j for j in jobs(namespace) if "1.1.0" in json.dumps(j["metadata"].get("annotations"))]

    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "1.2.0", "--metric", "r2=0.99")
    wait_for_status(namespace, "diabetes", serving("1.2.0"), 60, "the better 1.2.0 serving")


def test_rollback_command_pins_the_previous_version_and_quarantines_the_current(
    namespace: str, ready_v1: dict[str, Any], azurite: Azurite, blob_container: str, diabetes_bundle: Path
) -> None:
    v1_image = scorer_image(namespace)
    publish(azurite, diabetes_bundle, blob_container, "diabetes/", "2.0.0")
    wait_for_status(namespace, "diabetes", serving("2.0.0"), 60, "2.0.0 serving")

    out = modelapp_cli("rollback", "diabetes", "-n", namespace, "--kubeconfig", str(KUBECONFIG)).stdout
    assert "from 2.0.0 to 1.0.0" in out
    back = wait_for_status(namespace, "diabetes", serving("1.0.0"), 60, "1.0.0 serving again")
    assert back["spec"]["model"]["versionPolicy"] == {"pinned": {"version": "1.0.0"}}
    assert [q["version"] for q in back["status"]["quarantined"]] == ["2.0.0"]
    assert scorer_image(namespace) == v1_image  # the image built before: nothing was rebuilt
    assert len([j for j in jobs(namespace) if "-b-" in j["metadata"]["name"]]) == 2

    modelapp_cli("unquarantine", "diabetes", "2.0.0", "-n", namespace, "--kubeconfig", str(KUBECONFIG))
    released = wait_for_status(
        namespace, "diabetes", lambda a: not a["status"].get("quarantined"), 30, "released"
    )
    assert released["status"]["servingVersion"]["version"] == "1.0.0"  # still pinned
