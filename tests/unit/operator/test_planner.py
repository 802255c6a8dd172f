"""The planner: hand-built observations in, the plan (writes, status, events, requeue) out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from modelapp_operator import builders
from modelapp_operator.names import ANN_LAST_GOOD, Reason
from modelapp_operator.planner import ROLLING_REQUEUE, STALLED_REQUEUE, plan
from modelapp_operator.snapshot import Plan, StoreView, Waiting, template_hash
from modelapp_operator.status import HISTORY_LIMIT
from unit.operator.conftest import (
    FAKE_ACCOUNT_KEY,
    FAKE_CONNECTION_STRING,
    IMAGES,
    NAME,
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
    template_for,
)

pytestmark = pytest.mark.unit


def _last_good(dep: dict[str, Any]) -> dict[str, Any] | None:
    return builders.parse_last_good(dep["metadata"]["annotations"].get(ANN_LAST_GOOD))


def _hash(template: dict[str, Any]) -> str:
    return template_hash(template)


def _serving_1_0(**status: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """1.0.0 serving, rolled out and remembered as last good: (app, its template)."""
    good = template_for("1.0.0")
    return make_app(serving_status("1.0.0", good, **status)), good


# --- first apply, rollout, completion ------------------------------------------------------------------


def test_first_apply_creates_the_deployment_and_service_and_a_pending_rollout() -> None:
    p = plan(observe(make_app(), store("1.0.0"), None, service_exists=False), IMAGES)

    kinds = sorted(o["kind"] for o in p.apply)
    assert kinds == ["Deployment", "Service"]
    (dep,) = deployments(p)
    assert _hash(dep["spec"]["template"]) == _hash(template_for("1.0.0"))
    assert ANN_LAST_GOOD not in dep["metadata"]["annotations"]

    st = p.body
    assert st["pending"]["version"] == "1.0.0"
    assert st["pending"]["stage"] == "RollingOut"
    assert st["pending"]["templateHash"] == _hash(template_for("1.0.0"))
    assert st["pending"]["since"] == "2026-01-02T03:04:05Z"
    assert "servingVersion" not in st
    assert st["latestVersion"] == {
        "version": "1.0.0",
        "etag": etag_of("1.0.0"),
        "seenAt": "2026-01-02T03:04:05Z",
        "sha256": sha_of("1.0.0"),
        "metrics": {},
    }
    assert reasons(p) == [Reason.NEW_VERSION, Reason.ROLLOUT_STARTED]
    assert [h["event"] for h in st["history"]] == ["Detected", "RolloutStarted"]
    assert cond(p, "Ready")["status"] == "False"
    assert cond(p, "Ready")["reason"] == Reason.PROGRESSING
    assert cond(p, "ModelResolved")["status"] == "True"
    assert cond(p, "RolledOut")["status"] == "False"
    assert cond(p, "Reconciling")["status"] == "True"
    assert cond(p, "Stalled")["status"] == "False"
    assert st["observedGeneration"] == 1
    assert st["selector"] == f"modelapp.dev/name={NAME},app.kubernetes.io/component=server"
    assert p.requeue_after == ROLLING_REQUEUE


def test_rollout_in_progress_is_reconciling() -> None:
    first = plan(observe(make_app(), store("1.0.0"), None), IMAGES)
    app = after(make_app(), first)
    dep = deployment(template_for("1.0.0"), updated=1, available=0)
    p = plan(observe(app, store("1.0.0"), dep, now=T0 + timedelta(seconds=5)), IMAGES)

    assert p.apply == []
    assert p.events == []
    assert cond(p, "Reconciling") == {
        **cond(p, "Reconciling"),
        "status": "True",
        "reason": Reason.PROGRESSING,
    }
    assert cond(p, "RolledOut")["reason"] == Reason.PROGRESSING
    assert "1/2 updated" in cond(p, "RolledOut")["message"]
    assert cond(p, "Ready")["status"] == "False"
    assert p.body["pending"] == first.body["pending"]
    assert p.requeue_after == ROLLING_REQUEUE
    # Conditions that did not flip keep their time.
    assert cond(p, "Reconciling")["lastTransitionTime"] == cond(first, "Reconciling")["lastTransitionTime"]


def test_a_deployment_the_controller_has_not_seen_yet_is_not_complete() -> None:
    app = after(make_app(), plan(observe(make_app(), store("1.0.0"), None), IMAGES))
    dep = deployment(template_for("1.0.0"), generation=2, observed_generation=1)  # counts describe gen 1
    p = plan(observe(app, store("1.0.0"), dep), IMAGES)
    assert "servingVersion" not in p.body
    assert p.body["pending"]["version"] == "1.0.0"


def test_rollout_complete_serves_and_records_last_good() -> None:
    first = plan(observe(make_app(), store("1.0.0", metrics={"1.0.0": {"r2": 0.46}}), None), IMAGES)
    app = after(make_app(), first)
    t = template_for("1.0.0")
    now = T0 + timedelta(seconds=42)
    p = plan(observe(app, store("1.0.0", metrics={"1.0.0": {"r2": 0.46}}), deployment(t), now=now), IMAGES)

    st = p.body
    assert "pending" not in st
    assert st["servingVersion"] == {
        "version": "1.0.0",
        "sha256": sha_of("1.0.0"),
        "image": IMAGES.scorer,
        "since": "2026-01-02T03:04:47Z",
        "templateHash": _hash(t),
        "metrics": {"r2": 0.46},
    }
    assert cond(p, "RolledOut")["status"] == "True"
    assert cond(p, "RolledOut")["reason"] == Reason.ROLLOUT_COMPLETE
    assert cond(p, "Ready")["status"] == "True"
    assert cond(p, "Ready")["reason"] == Reason.SERVING
    assert cond(p, "Ready")["message"] == "serving 1.0.0 (2/2 available)"
    assert cond(p, "Reconciling")["status"] == "False"
    assert st["history"][-1]["event"] == "RolledOut"
    assert st["history"][-1]["durationSeconds"] == 42.0
    assert reasons(p) == [Reason.ROLLOUT_COMPLETE]
    assert ("time_to_serving", 42.0) in p.observations
    # The template that worked is remembered on the Deployment, unchanged otherwise.
    (dep,) = deployments(p)
    assert _hash(dep["spec"]["template"]) == _hash(t)
    assert _last_good(dep) == t
    assert st["replicas"] == 2
    assert p.requeue_after is None

    # Steady state: nothing to write, nothing to say.
    steady = plan(observe(after(app, p), store("1.0.0"), deployment(t, last_good=t), now=now), IMAGES)
    assert steady.apply == []
    assert steady.events == []
    assert steady.body == p.body


# --- new versions ------------------------------------------------------------------------------------------


def test_new_version_is_announced_once_and_rolled_out() -> None:
    app, good = _serving_1_0()
    dep = deployment(good, last_good=good)
    p = plan(observe(app, store("1.0.0", "1.1.0"), dep), IMAGES)

    assert reasons(p) == [Reason.NEW_VERSION, Reason.ROLLOUT_STARTED]
    assert p.body["latestVersion"]["version"] == "1.1.0"
    (d,) = deployments(p)
    assert _hash(d["spec"]["template"]) == _hash(template_for("1.1.0"))
    assert _last_good(d) == good  # the way back stays on the Deployment
    assert p.body["pending"]["version"] == "1.1.0"
    assert p.body["servingVersion"]["version"] == "1.0.0"
    assert cond(p, "Ready")["status"] == "True"
    assert cond(p, "Ready")["message"].startswith("serving 1.0.0 (2/2 available); ")
    assert "1.1.0" in cond(p, "Ready")["message"]

    # The next plan, with the status written and the Deployment not yet moved: no repeats.
    again = plan(observe(after(app, p), store("1.0.0", "1.1.0"), dep), IMAGES)
    assert Reason.NEW_VERSION not in reasons(again)
    assert Reason.ROLLOUT_STARTED not in reasons(again)
    assert again.body["pending"] == p.body["pending"]
    assert [h["event"] for h in again.body["history"]] == ["Detected", "RolloutStarted"]


def test_a_republished_version_is_announced_again() -> None:
    app, good = _serving_1_0()
    p = plan(observe(app, store("1.0.0", republished=1), deployment(good, last_good=good)), IMAGES)
    assert reasons(p)[0] == Reason.NEW_VERSION
    assert p.body["latestVersion"]["etag"] == etag_of("1.0.0", 1)


# --- rollbacks ---------------------------------------------------------------------------------------------


def _failing_1_1() -> tuple[Plan, dict[str, Any], dict[str, Any]]:
    """1.0.0 served; 1.1.0's rollout exceeded its deadline: (plan, app as observed, good template)."""
    app, good = _serving_1_0()
    started = plan(observe(app, store("1.0.0", "1.1.0"), deployment(good, last_good=good)), IMAGES)
    app = after(app, started)
    bad = template_for("1.1.0")
    dep = deployment(bad, last_good=good, updated=1, available=2, total=3, deadline_exceeded=True)
    now = T0 + timedelta(seconds=301)
    return plan(observe(app, store("1.0.0", "1.1.0"), dep, now=now), IMAGES), app, good


def test_deadline_after_a_model_change_rolls_back_and_quarantines_the_version() -> None:
    p, _, good = _failing_1_1()

    (dep,) = deployments(p)
    assert dep["spec"]["template"] == good
    assert _last_good(dep) == good
    q = p.body["quarantined"]
    assert len(q) == 1
    assert q[0]["version"] == "1.1.0"
    assert q[0]["etag"] == etag_of("1.1.0")
    assert q[0]["sha256"] == sha_of("1.1.0")
    assert q[0]["reason"] == Reason.ROLLOUT_FAILED
    warnings = {e.reason: e for e in p.events if e.type == "Warning"}
    assert set(warnings) == {Reason.ROLLED_BACK, Reason.QUARANTINED}
    assert "model version 1.1.0" in warnings[Reason.ROLLED_BACK].message
    assert "restored 1.0.0" in warnings[Reason.ROLLED_BACK].message
    assert "ProgressDeadlineExceeded" in warnings[Reason.QUARANTINED].message
    assert not any(e.type == "Normal" for e in p.events)
    assert p.body["pending"]["rollback"] is True
    assert p.body["pending"]["version"] == "1.0.0"
    assert "failedTemplateHash" not in p.body
    assert cond(p, "RolledOut")["reason"] == Reason.ROLLED_BACK
    assert cond(p, "Stalled")["status"] == "False"
    # The old pods never stopped serving.
    assert cond(p, "Ready")["status"] == "True"
    assert p.body["history"][-1]["event"] == "RolledBack"
    assert ("rollout_failures", 1.0) in p.observations


def test_after_a_rollback_the_previous_version_resolves_and_settles() -> None:
    p, app, good = _failing_1_1()
    app = after(app, p)
    view = store("1.0.0", "1.1.0")

    # Rolling back: the Deployment runs the good template again, not complete yet.
    rolling = plan(observe(app, view, deployment(good, last_good=good, updated=1)), IMAGES)
    assert cond(rolling, "ModelResolved")["message"] == "1.0.0 (latest) (1 quarantined version skipped)"
    assert deployments(rolling) == []
    assert Reason.ROLLOUT_STARTED not in reasons(rolling)

    done = plan(observe(after(app, rolling), view, deployment(good, last_good=good)), IMAGES)
    assert deployments(done) == []
    assert done.events == []  # the rollback was announced already
    assert "pending" not in done.body
    assert done.body["servingVersion"]["version"] == "1.0.0"
    assert cond(done, "RolledOut") | {"lastTransitionTime": ""} == cond(done, "RolledOut") | {
        "lastTransitionTime": "",
        "status": "True",
        "reason": Reason.ROLLED_BACK,
    }
    assert cond(done, "Ready")["reason"] == Reason.SERVING
    assert [q["version"] for q in done.body["quarantined"]] == ["1.1.0"]

    # 1.1.0 republished (a new manifest ETag): it gets a new chance.
    retry = plan(
        observe(after(app, done), store("1.0.0", "1.1.0", republished=1), deployment(good, last_good=good)),
        IMAGES,
    )
    assert reasons(retry) == [Reason.NEW_VERSION, Reason.ROLLOUT_STARTED]
    assert _hash(deployments(retry)[0]["spec"]["template"]) == _hash(template_for("1.1.0"))


def _failing_image_change() -> tuple[Plan, dict[str, Any], dict[str, Any], Any]:
    """1.0.0 served with the default image; the spec moved to a broken image and its rollout timed out."""
    app, good = _serving_1_0()
    spec = make_spec(image="registry.example/scoring-service:broken")
    started = plan(observe(app, store("1.0.0"), deployment(good, last_good=good), spec=spec), IMAGES)
    assert "a spec change" in started.events[-1].message
    app = after(app, started)
    bad = template_for("1.0.0", spec)
    dep = deployment(bad, last_good=good, updated=1, available=2, total=3, deadline_exceeded=True)
    return plan(observe(app, store("1.0.0"), dep, spec=spec), IMAGES), app, good, spec


def test_deadline_after_a_spec_change_restores_the_template_without_quarantine() -> None:
    p, _, good, spec = _failing_image_change()

    assert p.body["failedTemplateHash"] == _hash(template_for("1.0.0", spec))
    assert p.body["quarantined"] == []
    assert Reason.QUARANTINED not in reasons(p)
    assert reasons(p) == [Reason.ROLLED_BACK]
    assert "spec change" in p.events[0].message
    (dep,) = deployments(p)
    assert dep["spec"]["template"] == good


def test_a_failed_spec_change_is_not_retried_and_stalls() -> None:
    p, app, good, spec = _failing_image_change()
    app = after(app, p)
    for dep in (deployment(good, last_good=good, updated=1), deployment(good, last_good=good)):
        nxt = plan(observe(app, store("1.0.0"), dep, spec=spec), IMAGES)
        assert deployments(nxt) == [], "the failed template must not be applied again"
        assert cond(nxt, "Stalled")["status"] == "True"
        assert cond(nxt, "Stalled")["reason"] == Reason.ROLLOUT_FAILED
        assert Reason.ROLLOUT_STARTED not in reasons(nxt)
        assert nxt.body["failedTemplateHash"] == p.body["failedTemplateHash"]
        app = after(app, nxt)
    assert "still serving 1.0.0" in cond(nxt, "Ready")["message"]

    # Changing the spec again is the way out.
    fixed = make_spec(image="registry.example/scoring-service:fixed")
    retry = plan(observe(app, store("1.0.0"), deployment(good, last_good=good), spec=fixed), IMAGES)
    assert reasons(retry) == [Reason.ROLLOUT_STARTED]
    assert cond(retry, "Stalled")["status"] == "False"


def test_first_rollout_failing_has_nothing_to_restore() -> None:
    app = after(make_app(), plan(observe(make_app(), store("1.0.0"), None), IMAGES))
    dep = deployment(template_for("1.0.0"), updated=2, available=0, deadline_exceeded=True)
    p = plan(observe(app, store("1.0.0"), dep), IMAGES)

    assert deployments(p) == []
    assert "pending" not in p.body
    assert cond(p, "RolledOut")["reason"] == Reason.ROLLOUT_FAILED
    assert cond(p, "Ready")["status"] == "False"
    assert cond(p, "Ready")["reason"] == Reason.ROLLOUT_FAILED
    assert "no earlier good version" in cond(p, "Ready")["message"]
    assert Reason.ROLLOUT_FAILED in reasons(p)
    assert all(e.type == "Warning" for e in p.events)
    assert p.body["history"][-1]["event"] == "RolloutFailed"
    assert [q["version"] for q in p.body["quarantined"]] == ["1.0.0"]


def test_first_rollout_failure_is_reported_once() -> None:
    app = after(make_app(), plan(observe(make_app(), store("1.0.0"), None), IMAGES))
    dep = deployment(template_for("1.0.0"), updated=2, available=0, deadline_exceeded=True)
    failed = plan(observe(app, store("1.0.0"), dep), IMAGES)
    again = plan(observe(after(app, failed), store("1.0.0"), dep, now=T0 + timedelta(minutes=5)), IMAGES)
    assert again.events == []
    assert again.body["history"] == failed.body["history"]
    assert again.body["quarantined"] == failed.body["quarantined"]


def test_a_failure_after_a_model_and_image_change_does_not_blame_the_model() -> None:
    app, good = _serving_1_0()
    spec = make_spec(image="registry.example/scoring-service:broken")
    started = plan(observe(app, store("1.0.0", "1.1.0"), deployment(good, last_good=good), spec=spec), IMAGES)
    app = after(app, started)
    bad = template_for("1.1.0", spec)
    dep = deployment(bad, last_good=good, updated=1, available=2, total=3, deadline_exceeded=True)
    p = plan(observe(app, store("1.0.0", "1.1.0"), dep, spec=spec), IMAGES)
    assert p.body["quarantined"] == []
    assert p.body["failedTemplateHash"] == _hash(bad)


# --- store and Secret problems ---------------------------------------------------------------------------


def test_store_unavailable_while_serving_keeps_serving() -> None:
    app, good = _serving_1_0()
    view = StoreView(
        None, Waiting(Reason.STORE_UNAVAILABLE, "listing models/diabetes/ failed: connection refused")
    )
    p = plan(observe(app, view, deployment(good, last_good=good)), IMAGES)

    assert p.apply == []
    assert p.events == []
    ready = cond(p, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", Reason.STORE_UNAVAILABLE)
    assert "serving 1.0.0" in ready["message"]
    assert "connection refused" in ready["message"]
    assert cond(p, "ModelResolved")["status"] == "False"
    assert cond(p, "Stalled")["status"] == "False"
    assert p.body["servingVersion"] == app["status"]["servingVersion"]


def test_store_unavailable_still_follows_a_scale_change() -> None:
    app, good = _serving_1_0()
    p = plan(
        observe(app, StoreView(None), deployment(good, last_good=good), spec=make_spec(replicas=4)), IMAGES
    )
    (dep,) = deployments(p)
    assert dep["spec"]["replicas"] == 4
    assert dep["spec"]["template"] == good
    assert cond(p, "ModelResolved")["reason"] == Reason.STORE_UNAVAILABLE


def test_store_unavailable_before_anything_serves() -> None:
    p = plan(observe(make_app(), StoreView(None), None, service_exists=False), IMAGES)
    assert [o["kind"] for o in p.apply] == ["Service"]
    assert cond(p, "Ready")["status"] == "False"
    assert cond(p, "ModelResolved")["reason"] == Reason.STORE_UNAVAILABLE
    assert cond(p, "RolledOut")["reason"] == Reason.NOT_SERVING


@pytest.mark.parametrize(
    ("view", "reason"),
    [
        (StoreView(None, Waiting(Reason.STORE_UNAVAILABLE, "connection refused")), Reason.STORE_UNAVAILABLE),
        (store(), Reason.NO_VERSIONS),
    ],
    ids=["store-unavailable", "no-versions"],
)
def test_ready_says_why_nothing_serves(view: StoreView, reason: str) -> None:
    p = plan(observe(make_app(), view, None), IMAGES)
    assert cond(p, "Ready")["status"] == "False"
    assert cond(p, "Ready")["reason"] == reason
    assert cond(p, "Ready")["message"] == cond(p, "ModelResolved")["message"]


def test_missing_secret_stalls_and_requeues() -> None:
    why = (Reason.SECRET_NOT_FOUND, f"Secret {SECRET_NAME} (auth.secretRef) not found in namespace ml")
    p = plan(observe(make_app(), StoreView(None), None, stalled=why), IMAGES)

    assert deployments(p) == []
    assert (cond(p, "Ready")["status"], cond(p, "Ready")["reason"]) == ("False", Reason.SECRET_NOT_FOUND)
    assert cond(p, "Stalled") | {"lastTransitionTime": ""} == {
        "type": "Stalled",
        "status": "True",
        "reason": Reason.SECRET_NOT_FOUND,
        "message": why[1],
        "lastTransitionTime": "",
        "observedGeneration": 1,
    }
    assert cond(p, "ModelResolved")["reason"] == Reason.SECRET_NOT_FOUND
    assert p.requeue_after == STALLED_REQUEUE


def test_missing_secret_while_serving_keeps_the_deployment() -> None:
    app, good = _serving_1_0()
    why = (
        Reason.SECRET_NOT_FOUND,
        "Secret blob-creds has none of the keys connectionString, sasToken or accountKey",
    )
    p = plan(observe(app, StoreView(None), deployment(good, last_good=good), stalled=why), IMAGES)
    assert p.apply == []
    assert cond(p, "Stalled")["status"] == "True"
    assert cond(p, "Ready")["message"].endswith("(still serving 1.0.0)")
    assert p.requeue_after == STALLED_REQUEUE


def test_no_versions_yet() -> None:
    p = plan(observe(make_app(), store(), None), IMAGES)
    assert deployments(p) == []
    assert p.events == []
    assert cond(p, "ModelResolved")["reason"] == Reason.NO_VERSIONS
    assert cond(p, "Ready")["status"] == "False"
    assert "latestVersion" not in p.body


def test_unreadable_manifest_of_the_resolved_version() -> None:
    view = StoreView(store("1.0.0").versions, None, {}, {"1.0.0": "1.0.0: modelapp.json is not JSON"})
    p = plan(observe(make_app(), view, None), IMAGES)
    assert deployments(p) == []
    assert cond(p, "ModelResolved")["reason"] == Reason.MANIFEST_INVALID
    assert cond(p, "ModelResolved")["message"] == "1.0.0: modelapp.json is not JSON"


# --- scale, restart adoption, history ---------------------------------------------------------------------


def test_scale_change_reapplies_the_same_template() -> None:
    app, good = _serving_1_0()
    p = plan(
        observe(app, store("1.0.0"), deployment(good, last_good=good), spec=make_spec(replicas=5)), IMAGES
    )

    (dep,) = deployments(p)
    assert dep["spec"]["replicas"] == 5
    assert dep["spec"]["template"] == good
    assert _last_good(dep) == good
    assert reasons(p) == [Reason.SCALED]
    assert "from 2 to 5" in p.events[0].message
    assert "pending" not in p.body
    assert cond(p, "Reconciling")["status"] == "False"
    assert cond(p, "Ready")["status"] == "True"


def test_restart_adopts_a_rollout_whose_status_write_was_lost() -> None:
    app, good = _serving_1_0()
    moving = template_for("1.1.0")
    dep = deployment(moving, last_good=good, updated=1, available=2, total=3)
    view = store("1.0.0", "1.1.0")
    status = app["status"] | {"latestVersion": {"version": "1.1.0", "etag": etag_of("1.1.0")}}
    p = plan(observe(make_app(status), view, dep), IMAGES)

    assert deployments(p) == []
    assert reasons(p) == [Reason.ROLLOUT_STARTED]
    assert p.body["pending"]["templateHash"] == _hash(moving)
    assert p.body["pending"]["version"] == "1.1.0"
    again = plan(observe(after(make_app(status), p), view, dep), IMAGES)
    assert again.events == []
    assert again.body["pending"] == p.body["pending"]


def test_history_is_bounded() -> None:
    old = [
        {"version": f"0.0.{i}", "event": "Detected", "at": "2025-01-01T00:00:00Z", "message": ""}
        for i in range(30)
    ]
    app, good = _serving_1_0(history=old)
    p = plan(observe(app, store("1.0.0", "1.1.0"), deployment(good, last_good=good)), IMAGES)
    history = p.body["history"]
    assert len(history) == HISTORY_LIMIT
    assert [h["event"] for h in history[-2:]] == ["Detected", "RolloutStarted"]
    assert history[0]["version"] == "0.0.12"


def test_generation_is_observed() -> None:
    app, good = _serving_1_0()
    app["metadata"]["generation"] = 7
    p = plan(observe(app, store("1.0.0"), deployment(good, last_good=good)), IMAGES)
    assert p.body["observedGeneration"] == 7
    assert {c["observedGeneration"] for c in p.body["conditions"]} == {7}


def test_quarantine_survives_a_new_status() -> None:
    q = [
        {
            "version": "1.1.0",
            "etag": etag_of("1.1.0"),
            "reason": "RolloutFailed",
            "at": "2026-01-01T00:00:00Z",
        }
    ]
    app, good = _serving_1_0(quarantined=q)
    p = plan(observe(app, store("1.0.0", "1.1.0"), deployment(good, last_good=good)), IMAGES)
    assert deployments(p) == []
    assert Reason.ROLLOUT_STARTED not in reasons(p)
    assert p.body["quarantined"] == q


# --- no secrets in any output -------------------------------------------------------------------------------


def test_no_plan_output_carries_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # The operator's own environment may hold credentials; the planner must not echo them anywhere.
    monkeypatch.setenv("MODELAPP_CONNECTION_STRING", FAKE_CONNECTION_STRING)
    monkeypatch.setenv("AZURE_STORAGE_KEY", FAKE_ACCOUNT_KEY)
    plans = [
        plan(observe(make_app(), store("1.0.0"), None, service_exists=False), IMAGES),
        _failing_1_1()[0],
        _failing_image_change()[0],
        plan(
            observe(
                make_app(),
                StoreView(None),
                None,
                stalled=(Reason.SECRET_NOT_FOUND, f"Secret {SECRET_NAME} not found"),
            ),
            IMAGES,
        ),
    ]
    for p in plans:
        text = orjson.dumps(
            {"apply": p.apply, "status": p.body, "events": [e.message for e in p.events]}
        ).decode()
        assert FAKE_ACCOUNT_KEY not in text
        assert "AccountKey=" not in text
        for dep in deployments(p):
            for c in [
                *dep["spec"]["template"]["spec"].get("initContainers", []),
                *dep["spec"]["template"]["spec"]["containers"],
            ]:
                for e in c.get("env", []):
                    assert "value" not in e or not any(
                        w in e["name"] for w in ("CONNECTION", "KEY", "SAS")
                    ), e
