"""Each planner stage on its own, table-tested; and the bugs the stage redesign fixed, end to end."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from modelapp_operator.conditions import Condition
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import ANN_APPROVE, ANN_REJECT, ANN_UNQUARANTINE, Cond, Reason, Stage
from modelapp_operator.planner import STAGES, plan
from modelapp_operator.snapshot import DeploymentState, Observed, StoreView, Target, Waiting
from modelapp_operator.spec import Promotion, VersionPolicy
from modelapp_operator.stages.actions import user_actions
from modelapp_operator.stages.approve import approve
from modelapp_operator.stages.build import build
from modelapp_operator.stages.promote import promote
from modelapp_operator.stages.resolve import resolve_version
from modelapp_operator.stages.rollout import roll_out
from modelapp_operator.stages.summarize import summarize
from modelapp_operator.stages.verify import verify
from modelapp_operator.status import ImageRecord, QuarantineEntry, ServingVersion
from unit.operator.conftest import (
    IMAGES,
    after,
    cond,
    deployment,
    etag_of,
    make_app,
    make_spec,
    observe,
    serving_status,
    sha_of,
    store,
    template_for,
)
from unit.operator.test_gates import (
    SPEC,
    bhash,
    build_name,
    failed,
    obs,
    serving_app,
    succeeded,
    with_annotations,
)

pytestmark = pytest.mark.unit


def ctx_of(o: Observed) -> Context:
    return Context(o, IMAGES)


def start(o: Observed, **changes: Any) -> Draft:
    return dataclasses.replace(Draft(status=o.status), **changes)


def test_the_stages_run_in_the_documented_order() -> None:
    names = [s.__name__ for s in STAGES]
    assert names == [
        "admit",
        "user_actions",
        "resolve_version",
        "soak",
        "promote",
        "build",
        "verify",
        "approve",
        "shadow",
        "canary",
        "roll_out",
        "summarize",
    ]


# --- user actions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "quarantined", "consumed"),
    [
        ({}, set(), ()),
        ({ANN_REJECT: "1.1.0"}, {"1.1.0"}, (ANN_REJECT,)),
        ({ANN_UNQUARANTINE: "0.9.0"}, set(), (ANN_UNQUARANTINE,)),
        ({ANN_REJECT: "1.1.0", ANN_UNQUARANTINE: "1.1.0"}, set(), (ANN_REJECT, ANN_UNQUARANTINE)),
        ({ANN_APPROVE: "1.1.0"}, set(), ()),  # approval is the approve stage's
    ],
)
def test_user_actions(annotations: dict[str, str], quarantined: set[str], consumed: tuple[str, ...]) -> None:
    app = with_annotations(make_app({"quarantined": [{"version": "0.9.0"}]}), **annotations)
    o = observe(app, store("1.0.0", "1.1.0"), None)
    d = user_actions(ctx_of(o), start(o))
    assert {q.version for q in d.status.quarantined} - {"0.9.0"} == quarantined
    assert d.remove_annotations == consumed
    if ANN_UNQUARANTINE in annotations:
        assert d.status.attempt(annotations[ANN_UNQUARANTINE]) == 1


# --- resolve ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "view", "quarantine", "expected"),
    [
        (VersionPolicy(), store("1.0.0", "1.1.0"), [], ("True", Reason.RESOLVED, "1.1.0")),
        (VersionPolicy("pinned", "1.0.0"), store("1.0.0", "1.1.0"), [], ("True", Reason.RESOLVED, "1.0.0")),
        (VersionPolicy("semver", "<1.1"), store("1.0.0", "1.1.0"), [], ("True", Reason.RESOLVED, "1.0.0")),
        (VersionPolicy("pinned", "2.0.0"), store("1.0.0"), [], ("False", Reason.NO_MATCHING_VERSION, None)),
        (VersionPolicy(), store(), [], ("False", Reason.NO_VERSIONS, None)),
        (
            VersionPolicy(),
            StoreView(None, Waiting(Reason.STORE_UNAVAILABLE, "down")),
            [],
            ("False", Reason.STORE_UNAVAILABLE, None),
        ),
        # A quarantined pinned version says why it was quarantined, not that nothing matches.
        (
            VersionPolicy("pinned", "1.1.0"),
            store("1.0.0", "1.1.0"),
            [QuarantineEntry("1.1.0", etag_of("1.1.0"), reason=Reason.BUILD_FAILED, message="Job b failed")],
            ("False", Reason.BUILD_FAILED, None),
        ),
    ],
)
def test_resolve(
    policy: VersionPolicy,
    view: StoreView,
    quarantine: list[QuarantineEntry],
    expected: tuple[str, str, str | None],
) -> None:
    o = observe(make_app(), view, None, spec=make_spec(policy=policy))
    d = start(o)
    d = d.replace(status=dataclasses.replace(d.status, quarantined=tuple(quarantine)))
    d = resolve_version(ctx_of(o), d)
    got = d.decided(Cond.MODEL_RESOLVED)
    assert got is not None
    assert (got.status, got.reason) == expected[:2]
    assert (d.candidate.version if d.candidate else None) == expected[2]


def test_an_unusable_newer_manifest_does_not_hide_an_older_usable_version() -> None:
    view = store("1.0.0", "1.1.0")
    view = StoreView(
        view.versions, None, {"1.0.0": view.manifests["1.0.0"]}, {"1.1.0": "1.1.0: modelapp.json is not JSON"}
    )
    o = observe(make_app(), view, None)
    d = resolve_version(ctx_of(o), start(o))
    got = d.decided(Cond.MODEL_RESOLVED)
    assert got is not None
    assert (got.status, d.candidate.version if d.candidate else None) == ("True", "1.0.0")
    assert "skipped 1.1.0: modelapp.json is not JSON" in got.message


# --- promote ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serving", "candidate", "passes"),
    [(0.4, 0.5, True), (0.5, 0.4, False), (None, 0.4, True)],
)
def test_promote(serving: float | None, candidate: float, passes: bool) -> None:
    metrics = {"1.0.0": {"r2": serving} if serving is not None else {}, "1.1.0": {"r2": candidate}}
    view = store("1.0.0", "1.1.0", metrics=metrics)  # type: ignore[arg-type]
    t = template_for("1.0.0")
    status = serving_status("1.0.0", t)
    if serving is not None:
        status["servingVersion"]["metrics"] = {"r2": serving}
    o = observe(make_app(status), view, deployment(t), spec=make_spec(promotion=Promotion("r2")))
    d = promote(ctx_of(o), start(o, candidate=view.manifests["1.1.0"]))
    assert (d.candidate is not None) == passes
    assert (d.status.not_better is None) == passes


# --- build and verify ------------------------------------------------------------------------------------


def test_build_creates_the_job_then_hands_the_image_on() -> None:
    view = store("1.0.0")
    o = obs(make_app(), view)
    d = build(ctx_of(o), start(o, candidate=view.manifests["1.0.0"]))
    assert [j["metadata"]["name"] for j in d.create] == [build_name("1.0.0")]
    assert d.status.pending is not None
    assert d.status.pending.stage == Stage.BUILDING
    assert d.image is None

    o = obs(
        make_app(), view, jobs={build_name("1.0.0"): succeeded(build_name("1.0.0"), "sha256:" + "a" * 64)}
    )
    d = build(ctx_of(o), start(o, candidate=view.manifests["1.0.0"]))
    assert d.image is not None
    assert d.image.image == f"{SPEC.build.destination}@sha256:{'a' * 64}"  # type: ignore[union-attr]


def test_verify_skipped_when_the_contract_test_is_off() -> None:
    view = store("1.0.0")
    spec = dataclasses.replace(SPEC, contract_test=False)
    o = obs(make_app(), view, spec=spec)
    record = ImageRecord("1.0.0", image="acr/d@sha256:" + "b" * 64, verified=False)
    d = verify(ctx_of(o), start(o, candidate=view.manifests["1.0.0"], image=record, build_hash="h"))
    assert d.target is not None
    assert d.decided(Cond.VERIFIED) == Condition(
        Cond.VERIFIED, "True", Reason.SKIPPED, "rollout.contractTest is false"
    )


# --- approve ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("annotation", "waits"), [(None, True), ("1.1.0", False), ("1.2.0", True)])
def test_approve(annotation: str | None, waits: bool) -> None:
    app, t = serving_app("1.0.0")
    if annotation:
        app = with_annotations(app, **{ANN_APPROVE: annotation})
    view = store("1.0.0", "1.1.0")
    spec = dataclasses.replace(SPEC, manual_approval=True)
    o = obs(app, view, deployment(t), spec=spec)
    target = Target("1.1.0", sha_of("1.1.0"), "img", baked=True)
    d = approve(ctx_of(o), start(o, candidate=view.manifests["1.1.0"], target=target))
    assert (d.target is None) == waits
    assert (d.waiting is not None) == waits


# --- roll out and summarize ------------------------------------------------------------------------------


def test_roll_out_keeps_what_serves_when_no_target_and_says_not_serving_without_a_deployment() -> None:
    o = observe(make_app(), store(), None)
    d = roll_out(ctx_of(o), start(o, waiting=Waiting(Reason.AWAITING_APPROVAL, "waits")))
    rolled = d.decided(Cond.ROLLED_OUT)
    assert rolled == Condition(Cond.ROLLED_OUT, "False", Reason.NOT_SERVING, "waits")


def test_summarize_orders_the_conditions_and_requeues_while_pending() -> None:
    o = observe(make_app(), store("1.0.0"), None)
    d = start(o).condition(Condition(Cond.MODEL_RESOLVED, "True", Reason.RESOLVED, "1.0.0"))
    d = d.condition(Condition(Cond.ROLLED_OUT, "False", Reason.PROGRESSING, "rolling"))
    d = summarize(ctx_of(o), d)
    assert [c.type for c in d.status.conditions] == [
        "Ready",
        "ModelResolved",
        "RolledOut",
        "Reconciling",
        "Stalled",
    ]
    assert d.requeue_after is None  # nothing pending
    assert d.status.selector is not None


# --- the bugs the redesign fixed -------------------------------------------------------------------------


def test_a_pinned_versions_failed_build_stays_visible_and_ready_says_build_failed() -> None:
    """Before: the next reconcile dropped ImageBuilt and Ready said NoMatchingVersion."""
    spec = dataclasses.replace(SPEC, policy=VersionPolicy("pinned", "1.0.0"))
    view = store("1.0.0")
    name = build_name("1.0.0")
    p = plan(obs(make_app(), view, spec=spec), IMAGES)
    p = plan(obs(after(make_app(), p), view, spec=spec, jobs={name: failed(name, "push refused")}), IMAGES)
    assert cond(p, "ImageBuilt")["reason"] == Reason.BUILD_FAILED
    again = plan(
        obs(after(make_app(), p), view, spec=spec, jobs={name: failed(name, "push refused")}), IMAGES
    )
    assert cond(again, "ImageBuilt")["reason"] == Reason.BUILD_FAILED
    assert cond(again, "ImageBuilt")["status"] == "False"
    assert cond(again, "Ready")["reason"] == Reason.BUILD_FAILED
    assert "is quarantined" in cond(again, "ModelResolved")["message"]
    assert "push refused" in cond(again, "Ready")["message"]


def test_an_image_deployed_by_tag_is_marked_in_serving_version() -> None:
    """Before: status.servingVersion.imageByTag was in the CRD and the docs, and nothing wrote it."""
    view = store("1.0.0")
    name = build_name("1.0.0")
    p = plan(obs(make_app(), view, jobs={name: succeeded(name, "no digest here")}), IMAGES)
    (verify_job,) = p.create
    vname = verify_job["metadata"]["name"]
    p = plan(obs(after(make_app(), p), view, jobs={name: succeeded(name), vname: succeeded(vname)}), IMAGES)
    (dep,) = [o for o in p.apply if o["kind"] == "Deployment"]
    template = dep["spec"]["template"]
    done = plan(obs(after(make_app(), p), view, _complete(template)), IMAGES)
    serving = done.body["servingVersion"]
    assert serving["image"].endswith(":1.0.0-" + sha_of("1.0.0")[:12])
    assert serving["imageByTag"] is True
    record = (done.status.images or {})[bhash("1.0.0")]
    assert record.by_tag is True
    assert isinstance(done.status.serving_version, ServingVersion)


def _complete(template: dict[str, Any]) -> DeploymentState:
    return deployment(template)
