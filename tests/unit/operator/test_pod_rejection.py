"""Build and contract-test Jobs whose pods the API server refuses (e.g. Pod Security admission): reported at
once with the API's words, warned once, never a quarantine, and recovered when the namespace admits them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from modelapp_operator.names import Reason
from modelapp_operator.planner import ROLLING_REQUEUE, plan
from modelapp_operator.snapshot import JobState, Plan
from modelapp_operator.stages.jobs import POD_WAIT, POD_WAIT_WINDOW, REFUSAL_CHARS
from unit.operator.conftest import IMAGES, T0, after, cond, deployment, make_app, store
from unit.operator.test_gates import (
    bhash,
    build_name,
    built_entry,
    digest_image,
    events,
    history,
    obs,
    running,
    serving_app,
    verify_name,
)

pytestmark = pytest.mark.unit

# The FailedCreate event the Job controller posts when `enforce: restricted` refuses the build pod (taken
# from a kube-apiserver v1.34 with PodSecurity admission).
PSA_REFUSAL = (
    'Error creating: pods "diabetes-b-d18fd677-fk6vl" is forbidden: violates PodSecurity "restricted:latest": '
    'unrestricted capabilities (container "kaniko" must set securityContext.capabilities.drop=["ALL"]), '
    'runAsNonRoot != true (container "kaniko" must not set securityContext.runAsNonRoot=false), '
    'runAsUser=0 (container "kaniko" must not set runAsUser=0)'
)


def refused(name: str, refusal: str = PSA_REFUSAL, *, expired: bool = False) -> JobState:
    """A Job that never had a pod, with the API server's refusal; ``expired``: its deadline passed."""
    reason = "DeadlineExceeded: Job was active longer than specified deadline" if expired else ""
    return JobState(name, active=False, succeeded=False, failed=expired, reason=reason, rejected=refusal)


def podless(name: str) -> JobState:
    """A Job the Job controller has not given a pod yet, and no refusal seen (yet)."""
    return JobState(name, active=False, succeeded=False, failed=False)


def _refused_build() -> tuple[Plan, dict[str, Any]]:
    """1.0.0 was found, its build Job created, and the API server refuses its pod."""
    first = plan(obs(make_app(), store("1.0.0")), IMAGES)
    app = after(make_app(), first)
    name = build_name("1.0.0")
    p = plan(obs(app, store("1.0.0"), jobs={name: refused(name)}, now=T0 + timedelta(seconds=2)), IMAGES)
    return p, after(app, p)


def test_a_refused_build_pod_is_reported_at_once_with_the_api_servers_words() -> None:
    p, _ = _refused_build()
    built = cond(p, "ImageBuilt")
    assert (built["status"], built["reason"]) == ("False", Reason.BUILD_POD_REJECTED)
    assert build_name("1.0.0") in built["message"]
    assert 'violates PodSecurity "restricted:latest"' in built["message"]
    assert 'container "kaniko" must not set runAsUser=0' in built["message"]
    (warning,) = events(p, Reason.BUILD_POD_REJECTED)
    assert warning == built["message"]
    assert [e.type for e in p.events if e.reason == Reason.BUILD_POD_REJECTED] == ["Warning"]
    assert history(p)[-1] == Reason.BUILD_POD_REJECTED
    # The namespace is at fault, not the model: nothing is quarantined, the build stays pending.
    assert p.body["quarantined"] == []
    assert p.body["pending"]["stage"] == "Building"
    assert p.body["pending"]["podRejected"] is True
    assert p.create == []
    # Nothing serves, so Ready says why.
    assert (cond(p, "Ready")["status"], cond(p, "Ready")["reason"]) == ("False", Reason.BUILD_POD_REJECTED)


def test_a_refused_build_pod_is_warned_about_once() -> None:
    _, app = _refused_build()
    name = build_name("1.0.0")
    p = plan(obs(app, store("1.0.0"), jobs={name: refused(name)}, now=T0 + timedelta(seconds=40)), IMAGES)
    assert p.events == []
    assert history(p).count(Reason.BUILD_POD_REJECTED) == 1
    assert cond(p, "ImageBuilt")["reason"] == Reason.BUILD_POD_REJECTED
    assert p.requeue_after == ROLLING_REQUEUE  # the pod's admission is a Job change: it wakes the app


def test_a_long_refusal_is_trimmed_on_one_line() -> None:
    first = plan(obs(make_app(), store("1.0.0")), IMAGES)
    name = build_name("1.0.0")
    long = "Error creating: pods\n  is forbidden: " + "x" * 5000
    p = plan(obs(after(make_app(), first), store("1.0.0"), jobs={name: refused(name, long)}), IMAGES)
    message = cond(p, "ImageBuilt")["message"]
    assert "\n" not in message
    assert "pods is forbidden: xxx" in message
    assert message.endswith("…")
    assert len(message) < REFUSAL_CHARS + 200


def test_the_build_recovers_when_the_namespace_admits_the_pod() -> None:
    _, app = _refused_build()
    name = build_name("1.0.0")
    p = plan(obs(app, store("1.0.0"), jobs={name: running(name)}, now=T0 + timedelta(seconds=90)), IMAGES)
    assert cond(p, "ImageBuilt")["reason"] == "Building"
    assert "podRejected" not in p.body["pending"]
    assert p.events == []
    assert p.create == []
    assert cond(p, "Ready")["reason"] == Reason.PROGRESSING

    # Refused again later (the namespace changed back): reported again.
    again = plan(obs(after(app, p), store("1.0.0"), jobs={name: refused(name)}), IMAGES)
    assert events(again, Reason.BUILD_POD_REJECTED)


def test_a_job_without_a_pod_is_looked_at_again_soon_for_a_refusal() -> None:
    first = plan(obs(make_app(), store("1.0.0")), IMAGES)
    app = after(make_app(), first)
    name = build_name("1.0.0")
    soon = plan(obs(app, store("1.0.0"), jobs={name: podless(name)}, now=T0 + timedelta(seconds=1)), IMAGES)
    assert soon.requeue_after == POD_WAIT
    assert cond(soon, "ImageBuilt")["reason"] == "Building"
    # Not forever: after the window, the usual safety net.
    late = T0 + timedelta(seconds=POD_WAIT_WINDOW + 1)
    assert plan(obs(app, store("1.0.0"), jobs={name: podless(name)}, now=late), IMAGES).requeue_after == (
        ROLLING_REQUEUE
    )


def test_a_build_that_ran_out_of_time_with_its_pod_refused_is_tried_again_not_quarantined() -> None:
    _, app = _refused_build()
    name = build_name("1.0.0")
    p = plan(obs(app, store("1.0.0"), jobs={name: refused(name, expired=True)}), IMAGES)
    assert p.body["quarantined"] == []
    assert p.body["attempts"] == {"1.0.0": 1}
    assert cond(p, "ImageBuilt")["reason"] == Reason.BUILD_POD_REJECTED
    assert "a new one tries again" in cond(p, "ImageBuilt")["message"]
    assert p.events == []  # warned once already
    assert p.requeue_after == 1.0
    # The next reconcile creates a Job with a new name; the old failed one is left to its TTL.
    nxt = plan(obs(after(app, p), store("1.0.0"), jobs={name: refused(name, expired=True)}), IMAGES)
    (job,) = nxt.create
    assert job["metadata"]["name"] != name
    assert nxt.body["pending"]["job"] == job["metadata"]["name"]
    assert cond(nxt, "ImageBuilt")["reason"] == "Building"


def _verifying_1_1() -> tuple[dict[str, Any], Any, str, str]:
    """1.0.0 serves; 1.1.0 is built and its contract test about to start: (app, deployment, image, job)."""
    app, t = serving_app()
    app["status"]["images"][bhash("1.1.0")] = built_entry("1.1.0", verified=False)
    image = digest_image("1.1.0")
    return app, deployment(t, last_good=t), image, verify_name(image, "1.1.0")


def test_a_refused_contract_test_pod_is_reported_and_the_version_is_not_quarantined() -> None:
    app, dep, image, vname = _verifying_1_1()
    view = store("1.0.0", "1.1.0")
    started = plan(obs(app, view, dep), IMAGES)
    assert [j["metadata"]["name"] for j in started.create] == [vname]
    p = plan(obs(after(app, started), view, dep, jobs={vname: refused(vname)}), IMAGES)
    verified = cond(p, "Verified")
    assert (verified["status"], verified["reason"]) == ("False", Reason.VERIFY_POD_REJECTED)
    assert "PodSecurity" in verified["message"]
    assert len(events(p, Reason.VERIFY_POD_REJECTED)) == 1
    assert p.body["quarantined"] == []
    # 1.0.0 still serves: Ready stays True.
    assert cond(p, "Ready")["status"] == "True"

    # Out of time: a new contract-test Job, the image is not rebuilt.
    expired = plan(obs(after(app, p), view, dep, jobs={vname: refused(vname, expired=True)}), IMAGES)
    assert expired.body["quarantined"] == []
    assert expired.body["images"][bhash("1.1.0")]["verifyRetry"] == 1
    nxt = plan(obs(after(app, expired), view, dep, jobs={vname: refused(vname, expired=True)}), IMAGES)
    (job,) = nxt.create
    assert job["metadata"]["name"] != vname
    assert job["metadata"]["name"].startswith("diabetes-v-")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == image
