"""Stage 8, canary (``rollout.strategy.canary``): a second Deployment of the candidate behind the app's
Service, its share of the traffic set by replica ratio and raised step by step; between steps the analysis
reads the candidate pods' own metrics. A failed check aborts: the candidate scales to zero, stable never
stopped serving. After the last step the stable Deployment rolls to the candidate (the rollout stage)."""

from __future__ import annotations

from dataclasses import replace

from modelapp_operator import builders
from modelapp_operator.draft import Context, Draft
from modelapp_operator.figures import CanaryFigures
from modelapp_operator.names import ANN_ABORT, ANN_PROMOTE, Reason, Stage
from modelapp_operator.snapshot import ManifestInfo, Target
from modelapp_operator.spec import Canary
from modelapp_operator.stages.candidate import action, fail, gated, hold, promoted
from modelapp_operator.stages.jobs import set_pending
from modelapp_operator.status import CanaryStatus, seconds_since

_LATER = (Stage.ROLLING_OUT,)


def split(replicas: int, weight: int) -> tuple[int, float]:
    """Canary pods for ``weight`` percent beside ``replicas`` stable ones (stable keeps its full count), and
    the share of all pods they make: the traffic split, since the Service spreads connections over pods."""
    canary = max(1, round(replicas * weight / (100 - weight)))
    return canary, round(100.0 * canary / (replicas + canary), 1)


def canary(ctx: Context, d: Draft) -> Draft:
    spec = ctx.obs.spec.canary
    found = gated(ctx, d, _LATER) if spec is not None else None
    if spec is None or found is None:
        return _retire(ctx, d)
    info, target = found
    if action(ctx, ANN_PROMOTE, info.version):
        return promoted(ctx, d, info.version, "the canary steps")
    if action(ctx, ANN_ABORT, info.version):
        return _abort(ctx, d, info, Reason.ABORTED, "canary stopped by a person (modelapp abort)")
    d, state = _step(ctx, d, info, target, spec)
    pods = ctx.obs.canary
    if pods is None or not pods.complete or pods.spec_replicas != state.canary_replicas:
        waited = seconds_since(d.status.pending.since if d.status.pending else None, ctx.obs.now) or 0.0
        if not state.step_since and waited > ctx.obs.spec.progress_deadline_seconds:
            why = f"its canary pods did not become ready within {ctx.obs.spec.progress_deadline_seconds}s"
            return _abort(ctx, d, info, Reason.CANARY_FAILED, why)
        return hold(d, Reason.PROGRESSING, f"canary {info.version}: starting {state.canary_replicas} pod(s)")
    if not state.step_since:
        state = replace(state, step_since=ctx.now)
        d = _set(d, state)
    return _analyse(ctx, d, info, spec, state)


def _step(
    ctx: Context, d: Draft, info: ManifestInfo, target: Target, spec: Canary
) -> tuple[Draft, CanaryStatus]:
    """The step being held (the first one when the canary begins), its Deployment applied."""
    d, new = set_pending(ctx, d, info, Stage.CANARY, image=target.image)
    assert d.status.pending is not None
    state = d.status.pending.canary
    if new or state is None:
        state = _at(ctx, spec, 1)
        d = d.record(ctx, Reason.CANARY_STEP, info.version, image=target.image, message=_what(state))
        d = d.emit("Normal", Reason.CANARY_STEP, f"model version {info.version}: {_what(state)}")
    obs = ctx.obs
    template = builders.pod_template(obs.name, obs.spec, target, ctx.images, mirrors=False)
    body = builders.canary_deployment(obs.app, obs.spec, template, state.canary_replicas)
    return _set(d.replace(apply=(*d.apply, body)), state), state


def _at(ctx: Context, spec: Canary, step: int) -> CanaryStatus:
    weight = spec.steps[step - 1].weight
    pods, share = split(ctx.obs.spec.replicas, weight)
    return CanaryStatus(step, len(spec.steps), weight, pods, ctx.obs.spec.replicas, share)


def _what(state: CanaryStatus) -> str:
    return (
        f"canary step {state.step}/{state.steps}: weight {state.weight}% ({state.canary_replicas} canary, "
        f"{state.stable_replicas} stable pods: {state.share:g}% of the traffic)"
    )


def _set(d: Draft, state: CanaryStatus) -> Draft:
    assert d.status.pending is not None
    return d.set_pending(replace(d.status.pending, canary=state))


def _analyse(ctx: Context, d: Draft, info: ManifestInfo, spec: Canary, state: CanaryStatus) -> Draft:
    pause = spec.steps[state.step - 1].pause
    held = seconds_since(state.step_since, ctx.obs.now) or 0.0
    figures = ctx.obs.canary_figures
    if figures is not None:
        state = _shown(state, figures)
        d = _set(d, state)
    if held < pause:
        return hold(d, Reason.PROGRESSING, f"canary {info.version}: {_what(state)}", min(pause - held, 5.0))
    a = spec.analysis
    got = figures.requests if figures else 0
    if figures is None or got < a.min_requests:
        if held > pause + ctx.obs.spec.progress_deadline_seconds:
            why = f"canary step {state.step}: only {got} of {a.min_requests} requests reached it"
            return _abort(ctx, d, info, Reason.CANARY_FAILED, why)
        return hold(d, Reason.PROGRESSING, f"canary {info.version}: {got}/{a.min_requests} requests so far")
    failed = _checks(spec, figures)
    if failed:
        return _abort(ctx, d, info, Reason.CANARY_FAILED, f"canary step {state.step}: {'; '.join(failed)}")
    if state.step < state.steps:
        nxt = _shown(_at(ctx, spec, state.step + 1), figures)  # the figures count since the canary began
        d = d.record(ctx, Reason.CANARY_STEP, info.version, message=f"{_figures(figures)}; {_what(nxt)}")
        d = d.emit("Normal", Reason.CANARY_STEP, f"model version {info.version}: {_what(nxt)}")
        return hold(_set(d, nxt), Reason.PROGRESSING, f"canary {info.version}: {_what(nxt)}", 1.0)
    message = f"canary passed {state.steps} step(s): {_figures(figures)}"
    d = d.record(ctx, Reason.CANARY_PASSED, info.version, message=message)
    return d.emit("Normal", Reason.CANARY_PASSED, f"model version {info.version} {message}")


def _checks(spec: Canary, f: CanaryFigures) -> list[str]:
    a, out = spec.analysis, []
    if f.error_ratio > a.max_error_ratio:
        out.append(f"error ratio {f.error_ratio:.4g} ({f.errors}/{f.requests}) > {a.max_error_ratio:g}")
    if a.max_p99_seconds is not None and f.p99_seconds is not None and f.p99_seconds > a.max_p99_seconds:
        out.append(f"p99 latency {f.p99_seconds:.4g}s > {a.max_p99_seconds:g}s")
    return out


def _figures(f: CanaryFigures) -> str:
    p99 = f"{f.p99_seconds:.4g}s" if f.p99_seconds is not None else "n/a"
    return f"{f.requests} requests, error ratio {f.error_ratio:.4g}, p99 {p99}"


def _shown(state: CanaryStatus, f: CanaryFigures) -> CanaryStatus:
    p99 = round(f.p99_seconds, 6) if f.p99_seconds is not None else None
    return replace(state, requests=f.requests, error_ratio=round(f.error_ratio, 6), p99_seconds=p99)


def _abort(ctx: Context, d: Draft, info: ManifestInfo, reason: Reason, message: str) -> Draft:
    """The candidate scales to zero and is quarantined; the stable Deployment was never touched."""
    return _retire(ctx, fail(ctx, d, info, reason, message), force=True)


def _retire(ctx: Context, d: Draft, *, force: bool = False) -> Draft:
    """Scale the canary to zero once it has no job: aborted, or the stable Deployment runs its version now,
    or its version is no longer on its way (rejected, superseded). While its step is held or the stable
    Deployment rolls to its version, it keeps serving."""
    obs, pods = ctx.obs, ctx.obs.canary
    if pods is None or pods.spec_replicas == 0:
        return d
    dep, pending = obs.deployment, d.status.pending
    stable_runs_it = dep is not None and dep.complete and dep.version == pods.version
    on_its_way = pending is not None and pending.version == pods.version
    if not force and obs.spec.canary is not None and on_its_way and not stable_runs_it:
        return d
    return d.replace(apply=(*d.apply, builders.canary_deployment(obs.app, obs.spec, pods.template, 0)))
