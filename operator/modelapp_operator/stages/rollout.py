"""Stage 7, roll out: move the Deployment to the target, follow it, and record what serves."""

from __future__ import annotations

from typing import Any

from modelapp_operator import builders
from modelapp_operator.conditions import Condition
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Cond, Reason, Stage
from modelapp_operator.snapshot import DeploymentState, Stalled, Target, scorer_image, template_hash
from modelapp_operator.stages.build import image_packaging
from modelapp_operator.stages.rollback import roll_back
from modelapp_operator.status import Pending, ServingVersion, seconds_since

SPEC_CHANGE_FAILED = (
    "the last spec change failed to roll out and was rolled back; change the spec to try again"
)


def _rolled(status: str, reason: Reason, message: str) -> Condition:
    return Condition(Cond.ROLLED_OUT, status, reason, message)  # type: ignore[arg-type]


def roll_out(ctx: Context, d: Draft) -> Draft:
    dep = ctx.obs.deployment
    target = d.target
    if d.refused is not None:
        target = None  # keep what runs: the spec names an image the operator does not allow
    elif target is None and dep is not None:
        # No new version may roll (gated, building, store down): the serving one still follows spec
        # changes such as resources or the scorer image.
        target = serving_target(ctx, d)
    if not ctx.obs.service_exists:
        d = d.replace(apply=(*d.apply, builders.build_service(ctx.obs.app, ctx.obs.spec)))
    if dep is None and target is None:
        p = d.status.pending
        what = (
            d.waiting.message if d.waiting else (f"{p.stage} {p.version}" if p else "nothing to roll out yet")
        )
        return d.condition(_rolled("False", Reason.NOT_SERVING, what))
    if dep is None:
        assert target is not None
        return _create(ctx, d, target)
    if target is None:
        # Keep whatever serves; only scale changes are followed while no version resolves.
        return follow(ctx, d, dep, None)
    return _roll(ctx, d, dep, target)


def serving_target(ctx: Context, d: Draft) -> Target | None:
    serving = d.status.serving_version
    if serving is None or not serving.version or not serving.sha256:
        return None
    if image_packaging(ctx):
        return Target(serving.version, serving.sha256, serving.image, baked=True)
    return Target(serving.version, serving.sha256, ctx.obs.spec.image or ctx.images.scorer)


def deploy(ctx: Context, d: Draft, template: dict[str, Any], last_good: dict[str, Any] | None) -> Draft:
    return d.replace(
        apply=(*d.apply, builders.build_deployment(ctx.obs.app, ctx.obs.spec, template, last_good))
    )


def _create(ctx: Context, d: Draft, target: Target) -> Draft:
    desired = builders.pod_template(ctx.obs.name, ctx.obs.spec, target, ctx.images)
    d = start_pending(ctx, deploy(ctx, d, desired, None), target, template_hash(desired))
    return d.condition(_rolled("False", Reason.PROGRESSING, f"creating the Deployment for {target.version}"))


def _roll(ctx: Context, d: Draft, dep: DeploymentState, target: Target) -> Draft:
    desired = builders.pod_template(ctx.obs.name, ctx.obs.spec, target, ctx.images)
    desired_hash = template_hash(desired)
    if dep.template_hash == desired_hash:
        return follow(ctx, d, dep, target)
    if desired_hash == d.status.failed_template_hash:
        # This exact template already failed: keep following what runs, and wait for the spec to
        # change rather than loop.
        d = follow(ctx, d, dep, None)
        d = d.replace(stalled=d.stalled or Stalled(Reason.ROLLOUT_FAILED, SPEC_CHANGE_FAILED))
        return d.condition(_rolled("False", Reason.ROLLOUT_FAILED, SPEC_CHANGE_FAILED))
    d = start_pending(ctx, deploy(ctx, d, desired, dep.last_good), target, desired_hash)
    return d.condition(_rolled("False", Reason.PROGRESSING, f"rolling out {target.version}"))


def start_pending(ctx: Context, d: Draft, target: Target, hash_: str) -> Draft:
    pending = d.status.pending
    if pending is not None and pending.template_hash == hash_:
        return d
    d = d.set_pending(
        Pending(
            version=target.version,
            sha256=target.sha256,
            stage=Stage.ROLLING_OUT,
            image=target.image,
            template_hash=hash_,
            since=ctx.now,
            source=ctx.source_key,
        )
    )
    serving = d.status.serving_version
    what = (
        f"a spec change (image {target.image}) with model version {target.version}"
        if serving is not None and serving.version == target.version
        else f"model version {target.version} ({target.image})"
    )
    d = d.emit("Normal", Reason.ROLLOUT_STARTED, f"rolling out {what}")
    return d.record(
        ctx, Reason.ROLLOUT_STARTED, target.version, image=target.image, message=f"rolling out {what}"
    )


def follow(ctx: Context, d: Draft, dep: DeploymentState, target: Target | None) -> Draft:
    """The Deployment already runs the template we want (or the one we keep): follow its rollout."""
    spec = ctx.obs.spec
    # Re-apply what the builder makes, not the template read back from the API server: that one
    # carries server defaults, and applying it would count as a spec change (a new generation).
    ours = _ours(ctx, dep, target)
    if dep.spec_replicas != spec.replicas:
        # Scale: the pod template is untouched, so this is not a rollout.
        d = deploy(ctx, d, ours, dep.last_good)
        d = d.emit("Normal", Reason.SCALED, f"scaled from {dep.spec_replicas} to {spec.replicas} replicas")
        return d.condition(_rolled("False", Reason.PROGRESSING, f"scaling to {spec.replicas} replicas"))
    if dep.settled and dep.deadline_exceeded and not dep.complete:
        return roll_back(ctx, d, dep)
    if not dep.complete:
        msg = f"rolling out {dep.version}: {dep.updated}/{spec.replicas} updated, {dep.available} available"
        reason = Reason.PROGRESSING
        if dep.pod_problem:
            # The rollout goes on (and rolls back at its deadline), but say now why the pods do not start.
            msg, reason = f"{msg}; {dep.pod_problem}", Reason.FETCH_FAILED
        serving_hash = d.status.serving_version.template_hash if d.status.serving_version else None
        if d.status.pending is None and target is not None and dep.template_hash != serving_hash:
            # A rollout we started before a restart, whose status write was lost: adopt it.
            d = start_pending(ctx, d, target, dep.template_hash)
        return d.condition(_rolled("False", reason, msg))
    return _complete(ctx, d, dep, ours)


def _complete(ctx: Context, d: Draft, dep: DeploymentState, ours: dict[str, Any]) -> Draft:
    # A pending build, verification or approval of the next version is not this rollout's.
    pending = d.status.pending if d.status.pending and d.status.pending.stage == Stage.ROLLING_OUT else None
    d = d.drop_pending(Stage.ROLLING_OUT)
    if pending is not None and not pending.rollback:
        d = d.with_status(failed_template_hash=None)
    serving = d.status.serving_version
    if serving is None or serving.template_hash != dep.template_hash:
        d = _now_serving(
            ctx, d, dep, rollback=bool(pending and pending.rollback), since=pending.since if pending else None
        )
    if dep.last_good is None or template_hash(dep.last_good) != dep.template_hash:
        d = deploy(ctx, d, ours, ours)  # remember this template as the one to come back to
    last = d.status.history[-1] if d.status.history else None
    if last is not None and last.event == Reason.ROLLED_BACK:
        return d.condition(_rolled("True", Reason.ROLLED_BACK, last.message))
    return d.condition(
        _rolled("True", Reason.ROLLOUT_COMPLETE, f"{dep.version} rolled out to {dep.available} replicas")
    )


def _now_serving(ctx: Context, d: Draft, dep: DeploymentState, *, rollback: bool, since: str | None) -> Draft:
    info = ctx.obs.store.manifests.get(dep.version)
    image = scorer_image(dep.template)
    by_tag = any(r.by_tag and r.image == image for r in (d.status.images or {}).values()) and image_packaging(
        ctx
    )
    serving = ServingVersion(
        version=dep.version,
        sha256=dep.sha256,
        image=image,
        since=ctx.now,
        template_hash=dep.template_hash,
        image_by_tag=True if by_tag else None,
        metrics=info.metrics if info and info.metrics else None,
        source=ctx.source_key,
    )
    d = d.with_status(serving_version=serving)
    if rollback:
        return d
    d = d.record(ctx, Reason.ROLLED_OUT, dep.version, image=image, duration=seconds_since(since, ctx.obs.now))
    d = d.emit("Normal", Reason.ROLLOUT_COMPLETE, f"model version {dep.version} is serving ({image})")
    d = d.observe("rollouts", 1.0)
    latest = d.status.latest_version
    if latest is not None and latest.version == dep.version:
        detected = seconds_since(latest.seen_at, ctx.obs.now)
        if detected is not None:
            d = d.observe("time_to_serving", detected)
    return d


def _ours(ctx: Context, dep: DeploymentState, target: Target | None) -> dict[str, Any]:
    """The builder's template for what the Deployment runs, when we can rebuild it exactly; else its own."""
    if target is not None:
        built = builders.pod_template(ctx.obs.name, ctx.obs.spec, target, ctx.images)
        if template_hash(built) == dep.template_hash:
            return built
    return dep.template
