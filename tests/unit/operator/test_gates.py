"""Image packaging and the gates: build and verify Jobs, the promotion gate, manual approval, user actions."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import timedelta
from typing import Any

import orjson
import pytest
from modelapp_operator import builders
from modelapp_operator.names import (
    ANN_APPROVE,
    ANN_BUILD_HASH,
    ANN_IMAGE,
    ANN_MODEL_SHA256,
    ANN_MODEL_VERSION,
    ANN_QUARANTINE,
    ANN_REJECT,
    ANN_UNQUARANTINE,
    LABEL_COMPONENT,
    Reason,
    owner_reference,
    selector_labels,
)
from modelapp_operator.planner import ROLLING_REQUEUE, plan
from modelapp_operator.policy import effective_quarantine
from modelapp_operator.snapshot import JobState, Observed, Plan, StoreView, Target
from modelapp_operator.spec import AppSpec, BlobSource, Build, Promotion
from modelapp_operator.stages.jobs import TAIL
from modelapp_operator.status import parse_status
from unit.operator.conftest import (
    FAKE_ACCOUNT_KEY,
    FAKE_CONNECTION_STRING,
    IMAGES,
    NAME,
    NAMESPACE,
    SECRET_NAME,
    T0,
    after,
    cond,
    deployment,
    deployments,
    etag_of,
    make_app,
    make_spec,
    observe,
    reasons,
    serving_status,
    sha_of,
    store,
)

pytestmark = pytest.mark.unit

DEST = "registry.example/ml/diabetes"
PUSH_SECRET = "acr-push"
BUILD = Build(destination=DEST, push_secret=PUSH_SECRET)
SPEC = make_spec(packaging="Image", build=BUILD)
SOURCE_URL = "https://acct.blob.core.windows.net/models/diabetes/{version}/"
OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- helpers -------------------------------------------------------------------------------------------------


def image_spec(**changes: Any) -> AppSpec:
    return dataclasses.replace(SPEC, **changes)


def obs(
    app: dict[str, Any],
    view: StoreView,
    dep: Any = None,
    *,
    spec: AppSpec = SPEC,
    jobs: dict[str, JobState] | None = None,
    now: Any = T0,
) -> Observed:
    """conftest's observe() with Image packaging and the app's Jobs."""
    return dataclasses.replace(observe(app, view, dep, spec=spec, now=now), jobs=dict(jobs or {}))


def bhash(version: str, spec: AppSpec = SPEC) -> str:
    return builders.build_hash(spec, IMAGES, version, sha_of(version))


def the_build_job(version: str, spec: AppSpec = SPEC, attempt: int = 0) -> dict[str, Any]:
    return builders.build_job(
        make_app(), spec, IMAGES, version, sha_of(version), SOURCE_URL.format(version=version), attempt
    )


def build_name(version: str, spec: AppSpec = SPEC) -> str:
    return builders.job_name(NAME, "build", bhash(version, spec))


def the_verify_job(image: str, version: str, spec: AppSpec = SPEC) -> dict[str, Any]:
    return builders.verify_job(make_app(), spec, image, version, sha_of(version))


def verify_name(image: str, version: str) -> str:
    return str(the_verify_job(image, version)["metadata"]["name"])


def digest_of(version: str) -> str:
    return "sha256:" + hashlib.sha256(version.encode()).hexdigest()


def digest_image(version: str) -> str:
    return f"{DEST}@{digest_of(version)}"


def running(name: str) -> JobState:
    return JobState(name, active=True, succeeded=False, failed=False)


def succeeded(name: str, message: str = "") -> JobState:
    return JobState(name, active=False, succeeded=True, failed=False, message=message)


def failed(
    name: str, message: str = "", reason: str = "BackoffLimitExceeded: Job has reached the limit"
) -> JobState:
    return JobState(name, active=False, succeeded=False, failed=True, message=message, reason=reason)


def baked_template(version: str, spec: AppSpec = SPEC, image: str | None = None) -> dict[str, Any]:
    target = Target(version, sha_of(version), image or digest_image(version), baked=True)
    return builders.pod_template(NAME, spec, target, IMAGES)


def built_entry(version: str, *, verified: bool = True) -> dict[str, Any]:
    return {"image": digest_image(version), "byTag": False, "verified": verified, "version": version}


def serving_app(
    version: str = "1.0.0",
    *,
    spec: AppSpec = SPEC,
    metrics: dict[str, float] | None = None,
    images: dict[str, dict[str, Any]] | None = None,
    **extra: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``version`` serves from its built, verified image: (app, its template)."""
    t = baked_template(version, spec)
    status = serving_status(version, t, **extra)
    status["servingVersion"]["image"] = digest_image(version)
    if metrics:
        status["servingVersion"]["metrics"] = metrics
    status["images"] = {bhash(version, spec): built_entry(version), **(images or {})}
    return make_app(status), t


def with_annotations(app: dict[str, Any], **annotations: str) -> dict[str, Any]:
    app["metadata"]["annotations"] = dict(annotations)
    return app


def events(p: Plan, reason: str) -> list[str]:
    return [e.message for e in p.events if e.reason == reason]


def history(p: Plan) -> list[str]:
    return [h["event"] for h in p.body["history"]]


def scorer(template: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in template["spec"]["containers"] if c["name"] == "scorer")


def quarantined(p: Plan) -> dict[str, dict[str, Any]]:
    return {q["version"]: q for q in p.body["quarantined"]}


# --- builders: the build Job -----------------------------------------------------------------------------------


def test_build_job_identity_and_lifetime() -> None:
    spec = image_spec(build=dataclasses.replace(BUILD, timeout_seconds=900))
    job = the_build_job("1.0.0", spec)
    meta, jspec = job["metadata"], job["spec"]

    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert re.fullmatch(rf"{NAME}-b-[0-9a-f]{{8}}", meta["name"])
    assert meta["name"] == builders.job_name(NAME, "build", bhash("1.0.0", spec))
    assert meta["namespace"] == NAMESPACE
    assert meta["ownerReferences"] == [owner_reference(make_app())]
    assert meta["labels"][LABEL_COMPONENT] == "build"
    # The serving Deployment's selector must not pick the Job's pods.
    assert not selector_labels(NAME).items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert meta["annotations"] == {
        ANN_MODEL_VERSION: "1.0.0",
        ANN_MODEL_SHA256: sha_of("1.0.0"),
        ANN_BUILD_HASH: bhash("1.0.0", spec),
    }
    assert jspec["backoffLimit"] == 1
    assert jspec["activeDeadlineSeconds"] == 900
    assert jspec["ttlSecondsAfterFinished"] == builders.BUILD_TTL_SECONDS > 0
    pod = jspec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False


def test_build_job_name_is_a_label_value_for_the_longest_app_name() -> None:
    long_name = "m" * 52  # the CRD's limit
    app = make_app()
    app["metadata"]["name"] = long_name
    job = builders.build_job(app, SPEC, IMAGES, "1.0.0", sha_of("1.0.0"), SOURCE_URL.format(version="1.0.0"))
    name = job["metadata"]["name"]
    assert len(name) == 63
    assert DNS_LABEL.fullmatch(name)
    verify = builders.verify_job(app, SPEC, digest_image("1.0.0"), "1.0.0", sha_of("1.0.0"))
    assert len(verify["metadata"]["name"]) <= 63
    assert DNS_LABEL.fullmatch(verify["metadata"]["name"])


@pytest.mark.parametrize(
    ("base_image", "expected_base"),
    [(None, IMAGES.base), ("myacr.azurecr.io/scoring-service:2.0", "myacr.azurecr.io/scoring-service:2.0")],
)
def test_build_job_fetches_the_model_and_writes_the_dockerfile(
    base_image: str | None, expected_base: str
) -> None:
    spec = image_spec(build=dataclasses.replace(BUILD, base_image=base_image))
    pod = the_build_job("1.0.0", spec)["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["image"] == IMAGES.fetch
    assert fetch["command"] == ["modelapp"]
    assert fetch["args"] == [
        "fetch",
        "--version",
        "1.0.0",
        "--expect-sha256",
        sha_of("1.0.0"),
        "--out",
        "/workspace",
        "--dockerfile",
        "--base-image",
        expected_base,
        "--source",
        SOURCE_URL.format(version="1.0.0"),
    ]
    assert {"name": "workspace", "mountPath": "/workspace"} in fetch["volumeMounts"]
    assert fetch["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("kaniko_image", [None, "myacr.azurecr.io/kaniko:v1"])
def test_build_job_runs_kaniko_with_the_digest_in_the_termination_log(
    cache: bool, kaniko_image: str | None
) -> None:
    spec = image_spec(build=dataclasses.replace(BUILD, cache=cache, kaniko_image=kaniko_image))
    pod = the_build_job("1.0.0+build.7", spec)["spec"]["template"]["spec"]
    (kaniko,) = pod["containers"]
    assert kaniko["image"] == (kaniko_image or IMAGES.kaniko)
    args = kaniko["args"]
    assert "--context=dir:///workspace" in args
    assert f"--destination={DEST}:1.0.0_build.7-{sha_of('1.0.0+build.7')[:12]}" in args
    assert "--digest-file=/dev/termination-log" in args
    assert [a for a in args if a.startswith("--destination")] == [
        f"--destination={DEST}:{builders.image_tag('1.0.0+build.7', sha_of('1.0.0+build.7'))}"
    ]
    cache_flags = [a for a in args if a.startswith("--cache")]
    if cache:
        assert "--cache=true" in cache_flags
        assert f"--cache-repo={DEST}/cache" in cache_flags
    else:
        assert cache_flags == []
    # Kaniko runs as root (it unpacks the base image) but may not escalate.
    assert kaniko["securityContext"]["allowPrivilegeEscalation"] is False


def test_build_job_mounts_the_push_secret_as_docker_config() -> None:
    pod = the_build_job("1.0.0")["spec"]["template"]["spec"]
    (kaniko,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in kaniko["volumeMounts"] if m["mountPath"] == "/kaniko/.docker")
    assert mount.get("readOnly") is True
    assert volumes[mount["name"]]["secret"] == {
        "secretName": PUSH_SECRET,
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    assert {"name": "DOCKER_CONFIG", "value": "/kaniko/.docker"} in kaniko["env"]


def test_build_and_verify_jobs_carry_no_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELAPP_CONNECTION_STRING", FAKE_CONNECTION_STRING)
    monkeypatch.setenv("AZURE_STORAGE_KEY", FAKE_ACCOUNT_KEY)
    jobs = [the_build_job("1.0.0"), the_verify_job(digest_image("1.0.0"), "1.0.0")]
    text = orjson.dumps(jobs).decode()
    assert FAKE_ACCOUNT_KEY not in text
    assert "AccountKey=" not in text
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            for e in c.get("env", []):
                if any(w in e["name"] for w in ("CONNECTION", "KEY", "SAS")):
                    assert "value" not in e, e
                    assert e["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME


def test_build_job_with_workload_identity_gets_the_webhook_label() -> None:
    source = BlobSource(
        account_url="https://acct.blob.core.windows.net",
        container="models",
        prefix="diabetes/",
        workload_identity_client_id="11111111-2222-3333-4444-555555555555",
    )
    spec = image_spec(source=source, service_account="diabetes-reader")
    job = the_build_job("1.0.0", spec)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "diabetes-reader"
    (fetch,) = pod["initContainers"]
    assert {"name": "AZURE_CLIENT_ID", "value": source.workload_identity_client_id} in fetch["env"]
    assert job["spec"]["template"]["metadata"]["labels"].get("azure.workload.identity/use") == "true"


# --- builders: hashes, tags, the verify Job --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"version": "1.0.1"}, True),
        ({"sha256": "f" * 64}, True),
        ({"build": dataclasses.replace(BUILD, base_image="myacr.azurecr.io/scoring:2")}, True),
        ({"build": dataclasses.replace(BUILD, destination="myacr.azurecr.io/other")}, True),
        ({"build": dataclasses.replace(BUILD, kaniko_image="myacr.azurecr.io/kaniko:v2")}, True),
        ({"build": dataclasses.replace(BUILD, cache=False)}, True),
        ({"images": dataclasses.replace(IMAGES, base="registry.example/scoring-service:2.0")}, True),
        ({"images": dataclasses.replace(IMAGES, kaniko="registry.example/kaniko:v2")}, True),
        ({"replicas": 7}, False),
        ({"port": 9000}, False),
        ({"resources": {"limits": {"memory": "1Gi"}}}, False),
        ({"manual_approval": True}, False),
        ({"build": dataclasses.replace(BUILD, push_secret="other-secret")}, False),
        ({"build": dataclasses.replace(BUILD, timeout_seconds=60)}, False),
    ],
)
def test_build_hash_depends_on_what_the_build_produces(change: dict[str, Any], differs: bool) -> None:
    base = builders.build_hash(SPEC, IMAGES, "1.0.0", sha_of("1.0.0"))
    change = dict(change)
    version = change.pop("version", "1.0.0")
    sha = change.pop("sha256", sha_of("1.0.0"))
    images = change.pop("images", IMAGES)
    changed = builders.build_hash(image_spec(**change), images, version, sha)
    assert (changed != base) is differs


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.0.0", "1.0.0"),
        ("1.0.0+build.7", "1.0.0_build.7"),
        ("v2_rc-1", "v2_rc-1"),
        ("2026/01/02 run#3", "2026_01_02_run_3"),
        (".hidden", "hidden"),
        ("x" * 300, "x" * 100),
        ("modèle-1", "mod_le-1"),
        ("-", "_"),
    ],
)
def test_image_tag_is_a_valid_oci_tag(version: str, expected: str) -> None:
    sha = sha_of("1.0.0")
    tag = builders.image_tag(version, sha)
    assert OCI_TAG.fullmatch(tag), tag
    assert tag == f"{expected}-{sha[:12]}"


def test_verify_job_smoke_tests_the_built_image_hardened() -> None:
    image = digest_image("1.0.0")
    job = the_verify_job(image, "1.0.0")
    meta, jspec = job["metadata"], job["spec"]
    assert re.fullmatch(rf"{NAME}-v-[0-9a-f]{{8}}", meta["name"])
    assert meta["ownerReferences"] == [owner_reference(make_app())]
    assert meta["labels"][LABEL_COMPONENT] == "verify"
    assert meta["annotations"][ANN_IMAGE] == image
    assert meta["annotations"][ANN_MODEL_VERSION] == "1.0.0"
    assert jspec["backoffLimit"] == 1
    assert jspec["activeDeadlineSeconds"] == builders.VERIFY_DEADLINE_SECONDS
    assert jspec["ttlSecondsAfterFinished"] > 0
    pod = jspec["template"]["spec"]
    assert "initContainers" not in pod
    (smoke,) = pod["containers"]
    assert smoke["image"] == image
    assert smoke["args"] == ["smoke", "--model-dir", "/models"]
    assert smoke["securityContext"] == builders.container_security_context()
    assert smoke["securityContext"]["readOnlyRootFilesystem"] is True
    assert smoke["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == builders.RUN_AS != 0
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    # Another image is another contract test.
    assert verify_name(f"{DEST}@sha256:{'d' * 64}", "1.0.0") != meta["name"]


# --- Image packaging through plan(): build -------------------------------------------------------------------


def _building_1_0() -> tuple[Plan, dict[str, Any]]:
    """Nothing serves; 1.0.0 was just found: (the first plan, the app as the next reconcile reads it)."""
    p = plan(obs(make_app(), store("1.0.0")), IMAGES)
    return p, after(make_app(), p)


def test_no_job_creates_the_build_job_and_reports_building() -> None:
    p, _ = _building_1_0()
    name = build_name("1.0.0")
    assert p.create == [the_build_job("1.0.0")]
    assert deployments(p) == []
    assert p.body["pending"] == {
        "version": "1.0.0",
        "sha256": sha_of("1.0.0"),
        "stage": "Building",
        "since": "2026-01-02T03:04:05Z",
        "job": name,
    }
    built = cond(p, "ImageBuilt")
    assert (built["status"], built["reason"]) == ("False", "Building")
    assert name in built["message"]
    assert reasons(p) == [Reason.NEW_VERSION, "BuildStarted"]
    assert history(p) == ["Detected", "BuildStarted"]
    assert cond(p, "RolledOut")["reason"] == Reason.NOT_SERVING
    assert cond(p, "RolledOut")["message"] == "Building 1.0.0"
    assert cond(p, "Reconciling")["status"] == "True"
    assert p.requeue_after == ROLLING_REQUEUE


@pytest.mark.parametrize("job_listed", [False, True], ids=["job-not-listed-yet", "job-active"])
def test_building_is_reported_once(job_listed: bool) -> None:
    first, app = _building_1_0()
    name = build_name("1.0.0")
    jobs = {name: running(name)} if job_listed else {}
    p = plan(obs(app, store("1.0.0"), jobs=jobs, now=T0 + timedelta(seconds=30)), IMAGES)
    # A Job not listed yet is created again (the act layer takes 409 as done); an active one is not.
    assert p.create == ([] if job_listed else [the_build_job("1.0.0")])
    assert p.events == []
    assert p.apply == []
    assert p.body["pending"] == first.body["pending"]
    assert history(p) == ["Detected", "BuildStarted"]
    assert cond(p, "ImageBuilt")["reason"] == "Building"


def test_a_restart_with_the_build_job_running_creates_nothing() -> None:
    # The status write of the first plan was lost; the Job it created exists.
    name = build_name("1.0.0")
    p = plan(obs(make_app(), store("1.0.0"), jobs={name: running(name)}), IMAGES)
    assert p.create == []
    assert p.body["pending"]["job"] == name
    assert cond(p, "ImageBuilt")["reason"] == "Building"


def test_a_restart_with_the_verify_job_running_creates_nothing() -> None:
    image = digest_image("1.0.0")
    app = make_app({"images": {bhash("1.0.0"): built_entry("1.0.0", verified=False)}})
    vname = verify_name(image, "1.0.0")
    p = plan(obs(app, store("1.0.0"), jobs={vname: running(vname)}), IMAGES)
    assert p.create == []
    assert p.body["pending"]["stage"] == "Verifying"
    assert cond(p, "Verified")["reason"] == "Verifying"


def test_a_built_image_is_recorded_by_digest_and_verified_next() -> None:
    _, app = _building_1_0()
    name = build_name("1.0.0")
    now = T0 + timedelta(seconds=120)
    p = plan(
        obs(app, store("1.0.0"), jobs={name: succeeded(name, digest_of("1.0.0") + "\n")}, now=now), IMAGES
    )

    image = digest_image("1.0.0")
    assert p.body["images"] == {bhash("1.0.0"): {**built_entry("1.0.0", verified=False)}}
    assert p.create == [the_verify_job(image, "1.0.0")]
    assert deployments(p) == []
    assert events(p, "Built") == [f"built {image} for model version 1.0.0"]
    built_h = next(h for h in p.body["history"] if h["event"] == "Built")
    assert built_h["image"] == image
    assert built_h["durationSeconds"] == 120.0
    assert ("build_seconds", 120.0) in p.observations
    assert p.body["history"][-1]["event"] == "VerifyStarted"
    assert p.body["pending"]["stage"] == "Verifying"
    assert p.body["pending"]["image"] == image
    assert p.body["pending"]["since"] == "2026-01-02T03:06:05Z"
    assert cond(p, "ImageBuilt")["status"] == "True"
    assert cond(p, "ImageBuilt")["reason"] == "Built"
    assert cond(p, "ImageBuilt")["message"] == image
    assert (cond(p, "Verified")["status"], cond(p, "Verified")["reason"]) == ("False", "Verifying")


@pytest.mark.parametrize(
    "message",
    [
        "",
        "not a digest",
        "sha256:" + "a" * 63,
        "sha256:" + "z" * 64,
    ],
)
def test_a_build_without_a_digest_is_used_by_tag(message: str) -> None:
    _, app = _building_1_0()
    name = build_name("1.0.0")
    p = plan(obs(app, store("1.0.0"), jobs={name: succeeded(name, message)}), IMAGES)
    tagged = f"{DEST}:{builders.image_tag('1.0.0', sha_of('1.0.0'))}"
    entry = p.body["images"][bhash("1.0.0")]
    assert entry["image"] == tagged
    assert entry["byTag"] is True
    assert cond(p, "ImageBuilt")["status"] == "True"
    assert "by tag" in cond(p, "ImageBuilt")["message"]
    assert p.create == [the_verify_job(tagged, "1.0.0")]


def test_a_verified_image_is_rolled_out_by_digest_without_init_containers() -> None:
    _, app = _building_1_0()
    name = build_name("1.0.0")
    built = plan(
        obs(
            app,
            store("1.0.0"),
            jobs={name: succeeded(name, digest_of("1.0.0"))},
            now=T0 + timedelta(seconds=120),
        ),
        IMAGES,
    )
    app = after(app, built)
    image = digest_image("1.0.0")
    vname = verify_name(image, "1.0.0")
    p = plan(
        obs(app, store("1.0.0"), jobs={vname: succeeded(vname)}, now=T0 + timedelta(seconds=300)), IMAGES
    )

    verified = cond(p, "Verified")
    assert (verified["status"], verified["reason"]) == ("True", "ContractPassed")
    assert p.body["images"][bhash("1.0.0")]["verified"] is True
    assert events(p, "Verified") == [f"{image} passed the contract test of model version 1.0.0"]
    verified_h = next(h for h in p.body["history"] if h["event"] == "Verified")
    assert verified_h["durationSeconds"] == 180.0
    assert ("verify_seconds", 180.0) in p.observations
    assert p.create == []
    (dep,) = deployments(p)
    template = dep["spec"]["template"]
    assert template == baked_template("1.0.0")
    assert scorer(template)["image"] == image
    assert "initContainers" not in template["spec"]
    assert "azure.workload.identity/use" not in template["metadata"]["labels"]
    assert p.body["pending"]["stage"] == "RollingOut"
    assert p.body["pending"]["image"] == image
    assert Reason.ROLLOUT_STARTED in reasons(p)


def test_contract_test_off_rolls_out_right_after_the_build() -> None:
    spec = image_spec(contract_test=False)
    p0 = plan(obs(make_app(), store("1.0.0"), spec=spec), IMAGES)
    app = after(make_app(), p0)
    name = build_name("1.0.0", spec)
    p = plan(obs(app, store("1.0.0"), spec=spec, jobs={name: succeeded(name, digest_of("1.0.0"))}), IMAGES)
    verified = cond(p, "Verified")
    assert (verified["status"], verified["reason"]) == ("True", "Skipped")
    assert p.create == []
    assert not [h for h in p.body["history"] if h["event"] in ("VerifyStarted", "Verified")]
    (dep,) = deployments(p)
    assert dep["spec"]["template"] == baked_template("1.0.0", spec)


# --- Image packaging through plan(): failures ------------------------------------------------------------------


def _failed_build_of_1_1(message: str) -> tuple[Plan, dict[str, Any], dict[str, Any]]:
    """1.0.0 serves; 1.1.0's build Job failed a minute after it started: (plan, app it read, serving template)."""
    app, t = serving_app()
    view = store("1.0.0", "1.1.0")
    started = plan(obs(app, view, deployment(t, last_good=t)), IMAGES)
    assert started.create == [the_build_job("1.1.0")]
    assert deployments(started) == []
    app = after(app, started)
    name = build_name("1.1.0")
    now = T0 + timedelta(seconds=60)
    p = plan(obs(app, view, deployment(t, last_good=t), jobs={name: failed(name, message)}, now=now), IMAGES)
    return p, app, t


def test_a_failed_build_of_a_new_version_quarantines_it_and_keeps_serving() -> None:
    log = "step 1/3 " + "x" * 1000 + " error pushing image: UNAUTHORIZED: authentication required"
    p, app, t = _failed_build_of_1_1(log)

    q = quarantined(p)["1.1.0"]
    assert q["reason"] == Reason.BUILD_FAILED
    assert q["etag"] == etag_of("1.1.0")
    assert q["sha256"] == sha_of("1.1.0")
    assert q["message"].endswith(log[-TAIL:])
    (warning,) = [e for e in p.events if e.type == "Warning"]
    assert warning.reason == Reason.BUILD_FAILED
    assert warning.message.endswith(log[-TAIL:])
    assert "step 1/3" not in warning.message  # only the tail
    assert build_name("1.1.0") in warning.message
    assert deployments(p) == []
    assert p.create == []
    assert (cond(p, "ImageBuilt")["status"], cond(p, "ImageBuilt")["reason"]) == (
        "False",
        Reason.BUILD_FAILED,
    )
    assert "pending" not in p.body
    failed_h = p.body["history"][-1]
    assert (failed_h["event"], failed_h["durationSeconds"]) == ("BuildFailed", 60.0)
    assert ("build_failures", 1.0) in p.observations
    assert p.requeue_after == 1.0
    assert p.body["servingVersion"]["version"] == "1.0.0"
    assert cond(p, "Ready")["status"] == "True"

    # Next: 1.0.0 resolves again, nothing is rebuilt or re-applied, the failure stays visible, once.
    name = build_name("1.1.0")
    again = plan(
        obs(
            after(app, p), store("1.0.0", "1.1.0"), deployment(t, last_good=t), jobs={name: failed(name, log)}
        ),
        IMAGES,
    )
    assert again.create == []
    assert again.apply == []
    assert again.events == []
    assert cond(again, "ImageBuilt")["reason"] == Reason.BUILD_FAILED
    assert cond(again, "ImageBuilt")["message"].startswith("latest version 1.1.0: ")


def test_a_failed_build_without_a_termination_message_gives_the_job_reason() -> None:
    p, _, _ = _failed_build_of_1_1("")
    assert "BackoffLimitExceeded" in quarantined(p)["1.1.0"]["message"]


def test_a_failed_rebuild_of_the_serving_version_is_remembered_not_quarantined() -> None:
    app, t = serving_app()
    dep = deployment(t, last_good=t)
    view = store("1.0.0")
    spec = image_spec(build=dataclasses.replace(BUILD, base_image="myacr.azurecr.io/scoring-service:2.0"))
    started = plan(obs(app, view, dep, spec=spec), IMAGES)
    assert started.create == [the_build_job("1.0.0", spec)]
    assert deployments(started) == []
    app = after(app, started)
    name = build_name("1.0.0", spec)
    jobs = {name: failed(name, "error building image: base image not found")}
    p = plan(obs(app, view, dep, spec=spec, jobs=jobs), IMAGES)

    assert p.body["quarantined"] == []
    entry = p.body["images"][bhash("1.0.0", spec)]
    assert entry["failed"] is True
    assert entry["version"] == "1.0.0"
    assert "base image not found" in entry["message"]
    assert p.body["images"][bhash("1.0.0")] == built_entry("1.0.0")  # the serving image is kept
    assert events(p, Reason.BUILD_FAILED)
    assert (cond(p, "ImageBuilt")["status"], cond(p, "ImageBuilt")["reason"]) == (
        "False",
        Reason.BUILD_FAILED,
    )
    assert deployments(p) == []
    assert p.body["servingVersion"]["version"] == "1.0.0"

    # Not retried: the same build settings would fail the same way.
    again = plan(obs(after(app, p), view, dep, spec=spec, jobs=jobs), IMAGES)
    assert again.create == []
    assert again.apply == []
    assert again.events == []
    assert "pending" not in again.body
    assert cond(again, "ImageBuilt")["reason"] == Reason.BUILD_FAILED
    assert again.body["quarantined"] == []


def _verifying_1_1() -> tuple[dict[str, Any], dict[str, Any], str]:
    """1.0.0 serves; 1.1.0 is built: (app, serving template, the verify Job's name)."""
    app, t = serving_app(images={bhash("1.1.0"): built_entry("1.1.0", verified=False)})
    return app, t, verify_name(digest_image("1.1.0"), "1.1.0")


def test_a_failed_contract_test_quarantines_and_rolls_nothing() -> None:
    app, t, vname = _verifying_1_1()
    view = store("1.0.0", "1.1.0")
    jobs = {vname: failed(vname, "smoke: POST /v2/models/diabetes/infer returned 500")}
    p = plan(obs(app, view, deployment(t, last_good=t), jobs=jobs), IMAGES)

    q = quarantined(p)["1.1.0"]
    assert q["reason"] == Reason.CONTRACT_FAILED
    assert "returned 500" in q["message"]
    assert events(p, Reason.CONTRACT_FAILED)
    assert [e.type for e in p.events if e.reason == Reason.CONTRACT_FAILED] == ["Warning"]
    assert (cond(p, "Verified")["status"], cond(p, "Verified")["reason"]) == ("False", Reason.CONTRACT_FAILED)
    assert cond(p, "ImageBuilt")["status"] == "True"
    assert deployments(p) == []
    assert p.create == []
    assert "pending" not in p.body
    assert p.body["history"][-1]["event"] == "ContractFailed"

    again = plan(obs(after(app, p), view, deployment(t, last_good=t), jobs=jobs), IMAGES)
    assert again.apply == []
    assert again.create == []
    assert again.events == []
    assert cond(again, "Verified")["reason"] == Reason.CONTRACT_FAILED


def test_a_failed_contract_test_of_the_serving_version_is_remembered_not_quarantined() -> None:
    spec = image_spec(build=dataclasses.replace(BUILD, cache=False))  # a rebuild of what serves
    app, t = serving_app(images={bhash("1.0.0", spec): {**built_entry("1.0.0", verified=False)}})
    dep = deployment(t, last_good=t)
    vname = verify_name(digest_image("1.0.0"), "1.0.0")
    jobs = {vname: failed(vname, "smoke failed")}
    p = plan(obs(app, store("1.0.0"), dep, spec=spec, jobs=jobs), IMAGES)
    assert p.body["quarantined"] == []
    assert p.body["images"][bhash("1.0.0", spec)]["failed"] is True
    assert cond(p, "Verified")["reason"] == Reason.CONTRACT_FAILED
    assert deployments(p) == []
    again = plan(obs(after(app, p), store("1.0.0"), dep, spec=spec, jobs=jobs), IMAGES)
    assert again.create == []
    assert again.events == []
    assert again.apply == []
    assert cond(again, "Verified")["reason"] == Reason.CONTRACT_FAILED


# --- _latest_failure ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "built", "verified"),
    [
        (Reason.BUILD_FAILED, ("False", Reason.BUILD_FAILED), ("True", "ContractPassed")),
        (Reason.CONTRACT_FAILED, ("True", "Built"), ("False", Reason.CONTRACT_FAILED)),
        ("Rejected", ("True", "Built"), ("True", "ContractPassed")),
        (Reason.ROLLOUT_FAILED, ("True", "Built"), ("True", "ContractPassed")),
    ],
)
def test_the_newest_versions_failure_shows_while_an_older_one_serves(
    reason: str, built: tuple[str, str], verified: tuple[str, str]
) -> None:
    q = [{"version": "1.1.0", "etag": etag_of("1.1.0"), "reason": reason, "message": "boom"}]
    app, t = serving_app(quarantined=q)
    app["status"]["latestVersion"] = {"version": "1.1.0", "etag": etag_of("1.1.0"), "sha256": sha_of("1.1.0")}
    p = plan(obs(app, store("1.0.0", "1.1.0"), deployment(t, last_good=t)), IMAGES)
    assert (cond(p, "ImageBuilt")["status"], cond(p, "ImageBuilt")["reason"]) == built
    assert (cond(p, "Verified")["status"], cond(p, "Verified")["reason"]) == verified
    failing = [c for c in p.body["conditions"] if c["status"] == "False" and c["reason"] == reason]
    for c in failing:
        assert c["message"] == "latest version 1.1.0: boom"
    assert p.apply == []
    assert p.create == []
    assert cond(p, "Ready")["status"] == "True"


def test_an_older_quarantined_failure_is_not_reported() -> None:
    q = [{"version": "1.1.0", "etag": etag_of("1.1.0"), "reason": Reason.BUILD_FAILED, "message": "boom"}]
    app, t = serving_app("1.2.0", quarantined=q)
    p = plan(obs(app, store("1.0.0", "1.1.0", "1.2.0"), deployment(t, last_good=t)), IMAGES)
    assert cond(p, "ImageBuilt")["status"] == "True"


# --- promotion gate ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maximize", "metric", "serving", "candidate", "blocked"),
    [
        (True, "r2", 0.5, 0.4, True),
        (True, "r2", 0.5, 0.5, True),
        (True, "r2", 0.5, 0.6, False),
        (False, "rmse", 50.0, 55.0, True),
        (False, "rmse", 50.0, 50.0, True),
        (False, "rmse", 50.0, 45.0, False),
    ],
)
def test_promotion_gate(maximize: bool, metric: str, serving: float, candidate: float, blocked: bool) -> None:
    spec = image_spec(promotion=Promotion(metric, maximize=maximize))
    app, t = serving_app(spec=spec, metrics={metric: serving})
    view = store("1.0.0", "1.1.0", metrics={"1.0.0": {metric: serving}, "1.1.0": {metric: candidate}})
    dep = deployment(t, last_good=t)
    p = plan(obs(app, view, dep, spec=spec), IMAGES)

    resolved = cond(p, "ModelResolved")
    assert resolved["status"] == "True"
    assert p.body["quarantined"] == []
    if not blocked:
        assert resolved["reason"] == Reason.RESOLVED
        assert p.create == [the_build_job("1.1.0", spec)]
        assert Reason.NOT_BETTER not in reasons(p)
        return
    word = "higher" if maximize else "lower"
    assert resolved["reason"] == Reason.NOT_BETTER
    assert f"is not {word} than serving 1.0.0" in resolved["message"]
    assert p.create == []
    assert p.apply == []
    assert events(p, Reason.NOT_BETTER) == [resolved["message"]]
    assert history(p).count("NotBetter") == 1
    assert p.body["notBetter"]["version"] == "1.1.0"
    assert cond(p, "Ready")["status"] == "True"
    assert "pending" not in p.body

    again = plan(obs(after(app, p), view, dep, spec=spec, now=T0 + timedelta(minutes=1)), IMAGES)
    assert again.events == []
    assert again.create == []
    assert again.apply == []
    assert cond(again, "ModelResolved")["reason"] == Reason.NOT_BETTER
    assert history(again).count("NotBetter") == 1


def test_a_candidate_without_the_metric_is_blocked_with_a_clear_message() -> None:
    spec = image_spec(promotion=Promotion("r2"))
    app, t = serving_app(spec=spec, metrics={"r2": 0.5})
    view = store("1.0.0", "1.1.0", metrics={"1.0.0": {"r2": 0.5}, "1.1.0": {"mse": 3000.0}})
    p = plan(obs(app, view, deployment(t, last_good=t), spec=spec), IMAGES)
    resolved = cond(p, "ModelResolved")
    assert resolved["reason"] == Reason.NOT_BETTER
    assert resolved["message"] == "1.1.0 has no metric 'r2' in its manifest, so it cannot be compared"
    assert p.create == []
    assert p.body["quarantined"] == []


@pytest.mark.parametrize("serving_metrics", [None, {"mse": 3000.0}], ids=["no-metrics", "other-metric"])
def test_a_serving_version_without_the_metric_does_not_block(
    serving_metrics: dict[str, float] | None,
) -> None:
    spec = image_spec(promotion=Promotion("r2"))
    app, t = serving_app(spec=spec, metrics=serving_metrics)
    view = store("1.0.0", "1.1.0", metrics={"1.1.0": {"r2": 0.1}})
    p = plan(obs(app, view, deployment(t, last_good=t), spec=spec), IMAGES)
    assert cond(p, "ModelResolved")["reason"] == Reason.RESOLVED
    assert p.create == [the_build_job("1.1.0", spec)]


def test_nothing_serving_is_never_blocked() -> None:
    spec = image_spec(promotion=Promotion("r2"))
    p = plan(obs(make_app(), store("1.0.0", metrics={"1.0.0": {"r2": -3.0}}), spec=spec), IMAGES)
    assert cond(p, "ModelResolved")["reason"] == Reason.RESOLVED
    assert p.create == [the_build_job("1.0.0", spec)]


def _resources_changed(spec: AppSpec) -> AppSpec:
    return dataclasses.replace(spec, resources={"requests": {"cpu": "2"}, "limits": {"memory": "2Gi"}})


def test_a_spec_change_rolls_out_the_serving_version() -> None:
    # The baseline for the two gate tests below: with no newer candidate, a spec change rolls.
    app, t = serving_app()
    spec = _resources_changed(SPEC)
    p = plan(obs(app, store("1.0.0"), deployment(t, last_good=t), spec=spec), IMAGES)
    (dep,) = deployments(p)
    assert dep["spec"]["template"] == baked_template("1.0.0", spec)


@pytest.mark.parametrize("gate", ["NotBetter", "AwaitingApproval"])
def test_a_spec_change_is_applied_while_a_candidate_is_held_at_a_gate(gate: str) -> None:
    if gate == "NotBetter":
        base = image_spec(promotion=Promotion("r2"))
        metrics = {"1.0.0": {"r2": 0.5}, "1.1.0": {"r2": 0.4}}
        app, t = serving_app(spec=base, metrics={"r2": 0.5})
    else:
        base = image_spec(manual_approval=True)
        metrics = {}
        app, t = serving_app(spec=base, images={bhash("1.1.0", base): built_entry("1.1.0")})
    spec = _resources_changed(base)
    p = plan(
        obs(app, store("1.0.0", "1.1.0", metrics=metrics), deployment(t, last_good=t), spec=spec), IMAGES
    )
    assert cond(p, "ModelResolved")["status"] == "True"
    assert [d["spec"]["template"] for d in deployments(p)] == [baked_template("1.0.0", spec)]


# --- manual approval ---------------------------------------------------------------------------------------------

APPROVAL = image_spec(manual_approval=True)
METRICS = {"1.0.0": {"r2": 0.5, "mse": 3100.0}, "1.1.0": {"r2": 0.6, "rmse": 52.0}}


def test_the_first_version_needs_no_approval() -> None:
    app = make_app({"images": {bhash("1.0.0", APPROVAL): built_entry("1.0.0")}})
    p = plan(obs(app, store("1.0.0"), spec=APPROVAL), IMAGES)
    (dep,) = deployments(p)
    assert dep["spec"]["template"] == baked_template("1.0.0", APPROVAL)
    assert p.body["pending"]["stage"] == "RollingOut"
    assert "AwaitingApproval" not in reasons(p)


def _awaiting_1_1() -> tuple[Plan, dict[str, Any], dict[str, Any]]:
    """1.0.0 serves; 1.1.0 is built and verified and waits for approval: (plan, app it read, serving template)."""
    app, t = serving_app(
        spec=APPROVAL, metrics=METRICS["1.0.0"], images={bhash("1.1.0", APPROVAL): built_entry("1.1.0")}
    )
    p = plan(
        obs(app, store("1.0.0", "1.1.0", metrics=METRICS), deployment(t, last_good=t), spec=APPROVAL), IMAGES
    )
    return p, app, t


def test_a_new_version_waits_for_approval() -> None:
    p, app, t = _awaiting_1_1()
    pending = p.body["pending"]
    assert pending["version"] == "1.1.0"
    assert pending["stage"] == "AwaitingApproval"
    assert pending["image"] == digest_image("1.1.0")
    assert pending["metricsDiff"] == {
        "mse": {"serving": 3100.0},
        "r2": {"serving": 0.5, "candidate": 0.6},
        "rmse": {"candidate": 52.0},
    }
    (msg,) = events(p, "AwaitingApproval")
    assert "r2 0.5 → 0.6" in msg
    assert f"modelapp approve {NAME} --version 1.1.0" in msg
    assert history(p)[-1] == "AwaitingApproval"
    assert deployments(p) == []
    assert p.create == []
    assert cond(p, "Ready")["status"] == "True"
    assert "AwaitingApproval 1.1.0" in cond(p, "Ready")["message"]

    again = plan(
        obs(
            after(app, p), store("1.0.0", "1.1.0", metrics=METRICS), deployment(t, last_good=t), spec=APPROVAL
        ),
        IMAGES,
    )
    assert again.events == []
    assert again.apply == []
    assert again.body["pending"] == pending


def test_the_approve_annotation_releases_the_rollout() -> None:
    p, app, t = _awaiting_1_1()
    app = with_annotations(after(app, p), **{ANN_APPROVE: "1.1.0"})
    view = store("1.0.0", "1.1.0", metrics=METRICS)
    approved = plan(obs(app, view, deployment(t, last_good=t), spec=APPROVAL), IMAGES)

    assert ANN_APPROVE in approved.remove_annotations
    assert "Approved" in history(approved)
    assert events(approved, "Approved") == ["model version 1.1.0 approved for rollout"]
    (dep,) = deployments(approved)
    assert dep["spec"]["template"] == baked_template("1.1.0", APPROVAL)
    assert approved.body["pending"]["stage"] == "RollingOut"
    assert approved.body["pending"]["version"] == "1.1.0"
    assert "AwaitingApproval" not in reasons(approved)

    # The annotation is gone, the Deployment rolls 1.1.0: no new approval is asked for.
    rolling = deployment(baked_template("1.1.0", APPROVAL), last_good=t, updated=1, available=2, total=3)
    nxt = plan(obs(after(app, approved), view, rolling, spec=APPROVAL), IMAGES)
    assert nxt.body["pending"]["stage"] == "RollingOut"
    assert "AwaitingApproval" not in reasons(nxt)
    assert nxt.apply == []


def test_an_approval_for_another_version_does_nothing() -> None:
    p, app, t = _awaiting_1_1()
    app = with_annotations(after(app, p), **{ANN_APPROVE: "1.0.9"})
    q = plan(
        obs(app, store("1.0.0", "1.1.0", metrics=METRICS), deployment(t, last_good=t), spec=APPROVAL), IMAGES
    )
    assert ANN_APPROVE not in q.remove_annotations
    assert "Approved" not in history(q)
    assert deployments(q) == []
    assert q.body["pending"]["stage"] == "AwaitingApproval"
    assert "approved" not in q.body["pending"]


# --- user actions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "reason"), [(ANN_REJECT, "Rejected"), (ANN_QUARANTINE, "RolledBackByUser")])
def test_reject_and_quarantine_annotations_quarantine_a_pending_version(key: str, reason: str) -> None:
    app, t = serving_app()
    view = store("1.0.0", "1.1.0")
    building = plan(obs(app, view, deployment(t, last_good=t)), IMAGES)
    assert building.body["pending"]["version"] == "1.1.0"
    app = with_annotations(after(app, building), **{key: "1.1.0"})
    name = build_name("1.1.0")
    p = plan(obs(app, view, deployment(t, last_good=t), jobs={name: running(name)}), IMAGES)

    q = quarantined(p)["1.1.0"]
    assert q["reason"] == reason
    assert q["etag"] == etag_of("1.1.0")
    assert p.remove_annotations == [key]
    (warning,) = [e for e in p.events if e.type == "Warning"]
    assert warning.reason == Reason.QUARANTINED
    assert "1.1.0" in warning.message
    assert "Quarantined" in history(p)
    assert "pending" not in p.body
    assert p.create == []
    assert p.apply == []
    assert "1.1.0" in {
        q.version for q in effective_quarantine(parse_status(app["status"]), app["metadata"]["annotations"])
    }


def test_rollback_of_the_serving_version_restores_the_previous_image() -> None:
    app, t = serving_app("1.1.0", images={bhash("1.0.0"): built_entry("1.0.0")})
    app = with_annotations(app, **{ANN_QUARANTINE: "1.1.0"})
    p = plan(obs(app, store("1.0.0", "1.1.0"), deployment(t, last_good=t)), IMAGES)
    assert quarantined(p)["1.1.0"]["reason"] == "RolledBackByUser"
    (dep,) = deployments(p)
    assert dep["spec"]["template"] == baked_template("1.0.0")
    assert p.create == []


def test_the_unquarantine_annotation_releases_a_version() -> None:
    q = [{"version": "1.1.0", "etag": etag_of("1.1.0"), "reason": "Rejected", "message": "no"}]
    app, t = serving_app(quarantined=q)
    app["status"]["latestVersion"] = {"version": "1.1.0", "etag": etag_of("1.1.0"), "sha256": sha_of("1.1.0")}
    app = with_annotations(app, **{ANN_UNQUARANTINE: "1.1.0"})
    p = plan(obs(app, store("1.0.0", "1.1.0"), deployment(t, last_good=t)), IMAGES)
    assert p.body["quarantined"] == []
    assert p.remove_annotations == [ANN_UNQUARANTINE]
    assert events(p, "Unquarantined") == ["model version 1.1.0 released from quarantine"]
    assert "Unquarantined" in history(p)
    assert p.body["attempts"] == {"1.1.0": 1}
    assert p.create == [the_build_job("1.1.0", attempt=1)]  # it resolves again, and builds anew


def test_unquarantine_of_a_version_not_quarantined_is_consumed_quietly() -> None:
    app, t = serving_app()
    app = with_annotations(app, **{ANN_UNQUARANTINE: "9.9.9"})
    p = plan(obs(app, store("1.0.0"), deployment(t, last_good=t)), IMAGES)
    assert p.remove_annotations == [ANN_UNQUARANTINE]
    assert p.events == []
    assert p.body["quarantined"] == []


@pytest.mark.parametrize(
    ("stage", "reason"), [("build", Reason.BUILD_FAILED), ("verify", Reason.CONTRACT_FAILED)]
)
def test_unquarantine_after_a_failed_job_retries_instead_of_requarantining(stage: str, reason: str) -> None:
    q = [{"version": "1.1.0", "etag": etag_of("1.1.0"), "reason": reason, "message": "registry down"}]
    images = {bhash("1.1.0"): built_entry("1.1.0", verified=False)} if stage == "verify" else {}
    app, t = serving_app(quarantined=q, images=images)
    app = with_annotations(app, **{ANN_UNQUARANTINE: "1.1.0"})
    name = build_name("1.1.0") if stage == "build" else verify_name(digest_image("1.1.0"), "1.1.0")
    p = plan(
        obs(
            app,
            store("1.0.0", "1.1.0"),
            deployment(t, last_good=t),
            jobs={name: failed(name, "registry down")},
        ),
        IMAGES,
    )
    assert p.body["quarantined"] == []
    assert reason not in reasons(p)


_Q = [{"version": "1.1.0", "etag": etag_of("1.1.0"), "reason": "Rejected"}]


@pytest.mark.parametrize(
    ("status_q", "annotations"),
    [
        ([], {}),
        ([], {ANN_REJECT: "1.1.0"}),
        ([], {ANN_QUARANTINE: " 1.1.0 "}),
        ([], {ANN_QUARANTINE: "1.0.0"}),
        ([], {ANN_REJECT: "1.1.0", ANN_QUARANTINE: "1.0.0"}),
        (_Q, {}),
        (_Q, {ANN_UNQUARANTINE: "1.1.0"}),
        (_Q, {ANN_UNQUARANTINE: "9.9.9"}),
        (_Q, {ANN_REJECT: "1.1.0"}),
        ([], {ANN_REJECT: "1.1.0", ANN_UNQUARANTINE: "1.1.0"}),
        ([], {ANN_APPROVE: "1.1.0"}),
    ],
)
def test_effective_quarantine_agrees_with_plan(
    status_q: list[dict[str, Any]], annotations: dict[str, str]
) -> None:
    app, t = serving_app(quarantined=[dict(q) for q in status_q])
    app = with_annotations(app, **annotations)
    p = plan(obs(app, store("1.0.0", "1.1.0"), deployment(t, last_good=t)), IMAGES)
    predicted = {q.version for q in effective_quarantine(parse_status(app["status"]), annotations)}
    assert predicted == set(quarantined(p))
    assert set(p.remove_annotations) == set(annotations) - {ANN_APPROVE}


def test_workload_identity_build_pods_keep_the_token_from_kaniko() -> None:
    spec = image_spec(
        source=BlobSource("https://a.blob.core.windows.net", "models", "d/", None, "client-guid")
    )
    meta = the_build_job("1.0.0", spec)["spec"]["template"]["metadata"]
    assert meta["labels"]["azure.workload.identity/use"] == "true"
    assert meta["annotations"]["azure.workload.identity/skip-containers"] == "kaniko"
    # With a Secret instead: mounted into the fetch step alone.
    pod = the_build_job("1.0.0")["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    (kaniko,) = pod["containers"]
    assert any(m["name"] == "store-credentials" for m in fetch["volumeMounts"])
    assert all(m["name"] != "store-credentials" for m in kaniko["volumeMounts"])
