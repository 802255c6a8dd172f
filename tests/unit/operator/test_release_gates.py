"""Staged promotion, canary and shadow, decided by the pure planner over observed snapshots (the real-node
stories in tests/integration/node run them for real)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from modelapp_operator import builders
from modelapp_operator.figures import CanaryFigures, ShadowFigures, canary_figures, quantile, samples
from modelapp_operator.gather import followed_view
from modelapp_operator.planner import plan as plan_unchecked
from modelapp_operator.snapshot import Observed, Plan, SourceState, Target
from modelapp_operator.spec import Analysis, Canary, CanaryStep, Follow, Shadow, VersionPolicy, parse_spec
from modelapp_operator.stages.canary import split
from modelapp_operator.status import ServingVersion
from unit.operator.conftest import (
    IMAGES,
    T0,
    after,
    deployment,
    make_app,
    make_spec,
    observe,
    serving_status,
    sha_of,
    store,
    template_for,
)
from unit.operator.test_status import crd_status_schema, schema_problems

pytestmark = pytest.mark.unit


SCHEMA = crd_status_schema()


def plan(obs: Observed, images: Any) -> Plan:
    """The planner, and a check that the status it writes is one the CRD's schema accepts."""
    decided = plan_unchecked(obs, images)
    assert schema_problems(decided.body, SCHEMA) == []
    return decided


METRICS = """
# TYPE scoring_requests counter
scoring_requests_total{model="diabetes",version="2.0.0",endpoint="infer",code="200"} 90
scoring_requests_total{model="diabetes",version="2.0.0",endpoint="infer",code="400"} 10
scoring_requests_total{model="diabetes",version="1.0.0",endpoint="infer",code="500"} 50
# TYPE scoring_inference_failures counter
scoring_inference_failures_total{model="diabetes",version="2.0.0"} 10
# TYPE scoring_request_duration_seconds histogram
scoring_request_duration_seconds_bucket{model="diabetes",version="2.0.0",endpoint="infer",le="0.001"} 50
scoring_request_duration_seconds_bucket{model="diabetes",version="2.0.0",endpoint="infer",le="0.01"} 99
scoring_request_duration_seconds_bucket{model="diabetes",version="2.0.0",endpoint="infer",le="+Inf"} 100
scoring_request_duration_seconds_count{model="diabetes",version="2.0.0",endpoint="infer"} 100
scoring_request_duration_seconds_sum{model="diabetes",version="2.0.0",endpoint="infer"} 0.3
"""


# --- figures -------------------------------------------------------------------------------------------


def test_canary_figures_count_server_errors_and_model_failures_of_the_version_over_all_pods() -> None:
    f = canary_figures([METRICS, METRICS], "diabetes", "2.0.0")
    assert (f.requests, f.errors) == (200, 20)
    assert f.error_ratio == pytest.approx(0.1)
    assert f.p99_seconds == pytest.approx(0.01)


def test_a_scrape_that_does_not_parse_counts_as_nothing() -> None:
    assert samples(["this is { not metrics"]) == []
    assert canary_figures(["garbage {"], "diabetes", "2.0.0") == CanaryFigures(0, 0, None)


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    found = samples([METRICS])
    median = quantile(0.5, found, "scoring_request_duration_seconds", lambda lb: True)
    assert median == pytest.approx(0.001)
    assert quantile(0.75, found, "scoring_request_duration_seconds", lambda lb: True) == pytest.approx(
        0.001 + 0.009 * (75 - 50) / 49
    )
    assert quantile(0.99, [], "x", lambda lb: True) is None


def test_shadow_figures_reduce_to_mean_abs_diff_agreement_and_latency_ratio() -> None:
    f = ShadowFigures(
        requests=10,
        failures=1,
        abs_diff_sum=5.0,
        values=20,
        rows=20,
        agreed_rows=19,
        serving_p99=0.002,
        candidate_p99=0.003,
    )
    assert (f.mean_abs_diff, f.agreement, f.latency_ratio) == (0.25, 0.95, pytest.approx(1.5))
    empty = ShadowFigures(0, 0, 0.0, 0, 0, 0, None, None)
    assert (empty.mean_abs_diff, empty.agreement, empty.latency_ratio) == (None, None, None)


@pytest.mark.parametrize(
    ("replicas", "weight", "pods", "share"),
    [
        (2, 10, 1, 33.3),
        (2, 34, 1, 33.3),
        (2, 50, 2, 50.0),
        (10, 10, 1, 9.1),
        (10, 50, 10, 50.0),
        (4, 90, 36, 90.0),
    ],
)
def test_the_canary_split_keeps_stable_whole_and_rounds_to_the_nearest_pod(
    replicas: int, weight: int, pods: int, share: float
) -> None:
    assert split(replicas, weight) == (pods, share)


# --- spec ------------------------------------------------------------------------------------------------


def test_the_spec_reads_follow_canary_and_shadow() -> None:
    spec = parse_spec(
        "prod",
        {
            "model": {"versionPolicy": {"follow": {"modelApp": "iris", "namespace": "qa", "soak": "30m"}}},
            "rollout": {
                "strategy": {"canary": {"steps": [{"weight": 10, "pause": "2m"}, {"weight": 50}]}},
                "shadow": {"sample": 0.2, "minRequests": 500, "maxMeanAbsDiff": 5.0},
            },
        },
        "prod-ns",
    )
    assert spec.source is None
    assert spec.follow == Follow("iris", "qa", 1800.0)
    assert spec.policy == VersionPolicy("follow", "qa/iris")
    assert spec.canary == Canary((CanaryStep(10, 120.0), CanaryStep(50, 60.0)), Analysis())
    assert spec.shadow == Shadow(sample=0.2, min_requests=500, max_mean_abs_diff=5.0)
    same_ns = parse_spec("prod", {"model": {"versionPolicy": {"follow": {"modelApp": "iris"}}}}, "ml")
    assert same_ns.follow == Follow("iris", "ml", 0.0)


# --- follow ----------------------------------------------------------------------------------------------

QA_IMAGE = "registry.example/qa/diabetes@sha256:" + "a" * 64


def _source(version: str = "2.0.0", since: str = "2026-01-02T03:04:05Z", ready: bool = True) -> SourceState:
    serving = ServingVersion(version=version, sha256=sha_of(version), image=QA_IMAGE, since=since)
    return SourceState("qa/diabetes", serving, ready, bakes=True, ready_since=since)


def _follower(
    source: SourceState, status: dict[str, Any] | None, now_minutes: float, **spec: Any
) -> Observed:
    follow = Follow("diabetes", "qa", 600.0)
    aspec = make_spec(
        source=None, policy=VersionPolicy("follow", follow.key), follow=follow, packaging="Image", **spec
    )
    dep = None
    if status is not None:
        dep = deployment(
            builders.pod_template("diabetes", aspec, Target("1.0.0", sha_of("1.0.0"), "img:1", True), IMAGES)
        )
    app = make_app(status)
    obs = observe(app, followed_view(source), dep, spec=aspec, now=T0 + timedelta(minutes=now_minutes))
    return dataclasses.replace(obs, source=source)


def test_the_followed_view_offers_only_what_the_source_serves_unless_it_quarantined_it() -> None:
    view = followed_view(_source())
    assert [v.version for v in view.versions or ()] == ["2.0.0"]
    assert view.manifests["2.0.0"].sha256 == sha_of("2.0.0")
    quarantined = dataclasses.replace(_source(), quarantined=frozenset({"2.0.0"}))
    assert followed_view(quarantined).versions == ()


def test_a_follower_waits_for_the_soak_then_deploys_the_source_image_without_a_build() -> None:
    src = _source()
    early = plan(_follower(src, None, 5), IMAGES)
    assert early.status.pending is not None
    assert (early.status.pending.stage, early.status.pending.source) == ("Soaking", "qa/diabetes")
    assert early.status.pending.soak_until == "2026-01-02T03:14:05Z"
    assert early.apply == [o for o in early.apply if o["kind"] == "Service"]  # no Deployment yet
    assert early.requeue_after is not None
    assert early.requeue_after <= 300
    late = plan(_follower(src, after(make_app(None), early).get("status"), 11), IMAGES)
    (dep,) = [o for o in late.apply if o["kind"] == "Deployment"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == QA_IMAGE
    assert "initContainers" not in dep["spec"]["template"]["spec"]
    assert late.create == []  # no build or contract-test Job
    assert "Soaked" in [e.reason for e in late.events]


def test_a_source_that_is_not_ready_does_not_soak() -> None:
    p = plan(_follower(_source(ready=False), None, 60), IMAGES)
    assert p.status.pending is not None
    assert p.status.pending.stage == "Soaking"
    assert p.status.pending.soak_until is None


# --- canary and shadow -----------------------------------------------------------------------------------

CANARY = Canary((CanaryStep(34, 10.0), CanaryStep(50, 10.0)), Analysis(max_error_ratio=0.05, min_requests=20))


def _serving_one(
    spec_changes: dict[str, Any], status_extra: dict[str, Any] | None = None, **obs: Any
) -> Observed:
    spec = make_spec(**spec_changes)
    template = template_for("1.0.0", spec)
    status = serving_status("1.0.0", template, **(status_extra or {}))
    base = observe(
        make_app(status), store("1.0.0", "2.0.0"), deployment(template), spec=spec, now=obs.pop("now", T0)
    )
    return dataclasses.replace(base, **obs)


def _canary_pods(spec_changes: dict[str, Any], replicas: int) -> Any:
    spec = make_spec(**spec_changes)
    template = builders.pod_template(
        "diabetes", spec, Target("2.0.0", sha_of("2.0.0"), IMAGES.scorer), IMAGES, mirrors=False
    )
    return deployment(template, replicas=replicas)


def test_a_new_version_starts_at_canary_step_one_and_stable_is_untouched() -> None:
    p = plan(_serving_one({"canary": CANARY}), IMAGES)
    deps = [o for o in p.apply if o["kind"] == "Deployment"]
    (canary,) = [d for d in deps if d["metadata"]["name"] == "diabetes-canary"]
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["template"]["metadata"]["labels"]["modelapp.dev/track"] == "canary"
    assert _stable_untouched(p)
    assert p.status.pending is not None
    assert p.status.pending.stage == "Canary"
    assert p.status.pending.canary is not None
    assert (p.status.pending.canary.step, p.status.pending.canary.share) == (1, 33.3)


def _stable_untouched(p: Any) -> bool:
    """The serving Deployment is applied, if at all, with the serving version's pod template."""
    stable = [o for o in p.apply if o["kind"] == "Deployment" and o["metadata"]["name"] == "diabetes"]
    return all(
        o["spec"]["template"]["metadata"]["annotations"]["modelapp.dev/model-version"] == "1.0.0"
        for o in stable
    )


def _held(figures: CanaryFigures | None, seconds: float) -> Any:
    first = plan(_serving_one({"canary": CANARY}, canary=_canary_pods({"canary": CANARY}, 1)), IMAGES)
    status = after(make_app(None), first)["status"]
    return plan(
        _serving_one(
            {"canary": CANARY},
            status,
            canary=_canary_pods({"canary": CANARY}, 1),
            canary_figures=figures,
            now=T0 + timedelta(seconds=seconds),
        ),
        IMAGES,
    )


def test_a_step_whose_candidate_errs_aborts_scales_it_to_zero_and_quarantines_it() -> None:
    p = _held(CanaryFigures(requests=40, errors=10, p99_seconds=0.01), 30)
    (entry,) = p.status.quarantined
    assert (entry.version, entry.reason) == ("2.0.0", "CanaryFailed")
    assert "error ratio 0.25 (10/40) > 0.05" in (entry.message or "")
    canary = [o for o in p.apply if o["metadata"]["name"] == "diabetes-canary"]
    assert canary[-1]["spec"]["replicas"] == 0
    assert _stable_untouched(p)
    assert "CanaryFailed" in [e.reason for e in p.events]


def test_a_step_that_passes_moves_to_the_next_weight() -> None:
    p = _held(CanaryFigures(requests=40, errors=0, p99_seconds=0.01), 30)
    assert p.status.pending is not None
    assert p.status.pending.canary is not None
    assert (p.status.pending.canary.step, p.status.pending.canary.canary_replicas) == (2, 2)


def test_a_step_without_enough_requests_waits() -> None:
    p = _held(CanaryFigures(requests=3, errors=0, p99_seconds=None), 30)
    assert p.status.quarantined == ()
    assert p.status.pending is not None
    assert p.status.pending.canary is not None
    assert p.status.pending.canary.step == 1


SHADOW = Shadow(sample=0.2, min_requests=100, max_mean_abs_diff=5.0, timeout=600.0)


def _shadowed(figures: ShadowFigures | None, seconds: float) -> Any:
    spec = {"shadow": SHADOW}
    shadow_pods = _canary_pods(spec, 1)
    first = plan(_serving_one(spec, shadow=shadow_pods, shadow_service_ip="10.96.0.9"), IMAGES)
    status = after(make_app(None), first)["status"]
    obs = _serving_one(
        spec,
        status,
        shadow=shadow_pods,
        shadow_service_ip="10.96.0.9",
        shadow_figures=figures,
        now=T0 + timedelta(seconds=seconds),
    )
    return first, plan(obs, IMAGES)


def _figures(requests: int, diff: float) -> ShadowFigures:
    return ShadowFigures(requests, 0, diff * requests, requests, 0, 0, 0.001, 0.001)


def test_shadow_mirrors_to_the_candidate_service_and_holds_the_rollout() -> None:
    first, p = _shadowed(_figures(10, 0.1), 5)
    config = next(o for o in first.apply if o["kind"] == "ConfigMap")
    assert '"url":"http://10.96.0.9:80"' in config["data"]["shadow.json"]
    assert p.status.pending is not None
    assert p.status.pending.stage == "Shadowing"
    assert p.status.pending.shadow is not None
    assert p.status.pending.shadow.requests == 10
    assert _stable_untouched(p)


def test_shadow_within_bounds_passes_and_rolls() -> None:
    _, p = _shadowed(_figures(150, 0.1), 30)
    assert "ShadowPassed" in [e.reason for e in p.events]
    assert any(o["metadata"]["name"] == "diabetes" for o in p.apply if o["kind"] == "Deployment")
    off = [o for o in p.apply if o["kind"] == "ConfigMap"]
    assert off[-1]["data"]["shadow.json"] == "{}"


def test_shadow_out_of_bounds_quarantines_with_the_measured_difference() -> None:
    _, p = _shadowed(_figures(150, 40.0), 30)
    (entry,) = p.status.quarantined
    assert entry.reason == "ShadowFailed"
    assert "mean absolute difference 40 > 5 over 150 requests" in (entry.message or "")


def test_shadow_without_enough_traffic_times_out_with_its_own_reason() -> None:
    _, p = _shadowed(_figures(20, 0.1), 700)
    (entry,) = p.status.quarantined
    assert entry.reason == "ShadowTimedOut"
    assert "only 20 of 100" in (entry.message or "")


async def test_every_kind_a_plan_applies_has_an_apply_call() -> None:
    """Plans apply Deployments, Services and the shadow ConfigMap: the applier knows each of them."""
    from kubernetes_asyncio import client
    from modelapp_operator.apply import Applier

    app = make_app(None)
    spec = make_spec(shadow=SHADOW, canary=CANARY)
    template = template_for("1.0.0", spec)
    kinds = {
        o["kind"]
        for o in (
            builders.build_deployment(app, spec, template, None),
            builders.build_service(app, spec),
            builders.canary_deployment(app, spec, template, 1),
            builders.shadow_deployment(app, spec, template, 1),
            builders.shadow_service(app, spec),
            builders.shadow_config(app, None),
        )
    }
    async with client.ApiClient() as api:
        applier = Applier(api, lambda *_: None, 1.0)
        for kind in kinds:
            assert callable(applier.patcher(kind))
