"""Stage 7, shadow (``rollout.shadow``): before any live traffic moves, the candidate runs beside what
serves, the serving pods mirror a sample of their requests to it (off the request's path) and compare its
answers with their own; the gate reads their comparison and passes the candidate on, or quarantines it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelapp_operator import builders
from modelapp_operator.draft import Context, Draft
from modelapp_operator.figures import ShadowFigures
from modelapp_operator.names import ANN_ABORT, ANN_PROMOTE, Reason, Stage, shadow_label
from modelapp_operator.snapshot import ManifestInfo, Target
from modelapp_operator.spec import Shadow
from modelapp_operator.stages.candidate import action, fail, gated, hold, promoted
from modelapp_operator.stages.jobs import set_pending
from modelapp_operator.status import ShadowStatus, seconds_since

_LATER = (Stage.CANARY, Stage.ROLLING_OUT)


def shadow(ctx: Context, d: Draft) -> Draft:
    spec = ctx.obs.spec.shadow
    found = gated(ctx, d, _LATER) if spec is not None else None
    if spec is None or found is None:
        return _stop(ctx, d)
    info, target = found
    if action(ctx, ANN_PROMOTE, info.version):
        return _stop(ctx, promoted(ctx, d, info.version, "the shadow gate"))
    if action(ctx, ANN_ABORT, info.version):
        return _stop(ctx, fail(ctx, d, info, Reason.ABORTED, "shadow stopped by a person (modelapp abort)"))
    d = _run(ctx, d, info, target, spec)
    started = d.status.pending.shadow.since if d.status.pending and d.status.pending.shadow else ctx.now
    waited = seconds_since(started, ctx.obs.now) or 0.0
    shadow_dep, ip = ctx.obs.shadow, ctx.obs.shadow_service_ip
    if shadow_dep is None or not shadow_dep.complete or not ip:
        if waited > ctx.obs.spec.progress_deadline_seconds:
            why = f"its shadow pods did not become ready within {ctx.obs.spec.progress_deadline_seconds}s"
            return _stop(ctx, fail(ctx, d, info, Reason.SHADOW_FAILED, why))
        return hold(d, Reason.PROGRESSING, f"starting the shadow of {info.version}")
    label = shadow_label(info.version, d.status.attempt(info.version))
    mirror = {"url": f"http://{ip}:{builders.SERVICE_PORT}", "candidate": label, "sample": spec.sample}
    d = d.replace(apply=(*d.apply, builders.shadow_config(ctx.obs.app, mirror)))
    return _judge(ctx, d, info, spec, ctx.obs.shadow_figures, waited)


def _run(ctx: Context, d: Draft, info: ManifestInfo, target: Target, spec: Shadow) -> Draft:
    """The candidate's shadow Deployment and Service, and ``pending`` saying Shadowing."""
    obs = ctx.obs
    template = builders.pod_template(obs.name, obs.spec, target, ctx.images, mirrors=False)
    d = d.replace(
        apply=(
            *d.apply,
            builders.shadow_deployment(obs.app, obs.spec, template, 1),
            builders.shadow_service(obs.app, obs.spec),
        )
    )
    d, new = set_pending(ctx, d, info, Stage.SHADOWING, image=target.image)
    assert d.status.pending is not None
    if new or d.status.pending.shadow is None:
        d = d.set_pending(replace(d.status.pending, shadow=ShadowStatus(sample=spec.sample, since=ctx.now)))
        message = f"mirroring {spec.sample:.0%} of the requests to {info.version} and comparing its answers"
        d = d.record(ctx, Reason.SHADOW_STARTED, info.version, image=target.image, message=message)
        d = d.emit("Normal", Reason.SHADOW_STARTED, f"model version {info.version}: {message}")
    return d


def _judge(
    ctx: Context, d: Draft, info: ManifestInfo, spec: Shadow, figures: ShadowFigures | None, waited: float
) -> Draft:
    if figures is not None:
        assert d.status.pending is not None
        assert d.status.pending.shadow is not None
        d = d.set_pending(replace(d.status.pending, shadow=_shown(d.status.pending.shadow, figures)))
    if figures is None or figures.requests < spec.min_requests:
        got = figures.requests if figures else 0
        if waited > spec.timeout:
            why = (
                f"only {got} of {spec.min_requests} mirrored requests compared within {spec.timeout:g}s "
                "(not enough traffic); `modelapp unquarantine` tries again, `modelapp promote` skips the gate"
            )
            return _stop(ctx, fail(ctx, d, info, Reason.SHADOW_TIMED_OUT, why))
        return hold(
            d, Reason.PROGRESSING, f"shadowing {info.version}: {got}/{spec.min_requests} requests compared"
        )
    problems = _out_of_bounds(spec, figures)
    if problems:
        return _stop(ctx, fail(ctx, d, info, Reason.SHADOW_FAILED, f"shadow: {'; '.join(problems)}"))
    message = f"shadow passed: {_describe(figures)}"
    d = d.record(ctx, Reason.SHADOW_PASSED, info.version, message=message)
    d = d.emit("Normal", Reason.SHADOW_PASSED, f"model version {info.version} {message}")
    return _stop(ctx, d)  # the target goes on: to the canary steps if any, else the rollout


def _out_of_bounds(spec: Shadow, f: ShadowFigures) -> list[str]:
    out = []
    mad, agree, ratio = f.mean_abs_diff, f.agreement, f.latency_ratio
    if spec.max_mean_abs_diff is not None and (mad is None or mad > spec.max_mean_abs_diff):
        out.append(
            f"mean absolute difference {_num(mad)} > {spec.max_mean_abs_diff:g} over {f.requests} requests"
        )
    if spec.min_agreement is not None and (agree is None or agree < spec.min_agreement):
        out.append(f"top-1 agreement {_num(agree)} < {spec.min_agreement:g} over {f.rows} rows")
    if spec.max_p99_latency_ratio is not None and ratio is not None and ratio > spec.max_p99_latency_ratio:
        out.append(f"p99 latency ratio {ratio:.3g} > {spec.max_p99_latency_ratio:g}")
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _describe(f: ShadowFigures) -> str:
    parts = [f"{f.requests} requests compared"]
    if f.mean_abs_diff is not None:
        parts.append(f"mean abs diff {f.mean_abs_diff:.6g}")
    if f.agreement is not None:
        parts.append(f"agreement {f.agreement:.4g}")
    if f.latency_ratio is not None:
        parts.append(f"p99 latency ratio {f.latency_ratio:.3g}")
    return ", ".join(parts)


def _shown(prior: ShadowStatus, f: ShadowFigures) -> ShadowStatus:
    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 6)

    return replace(
        prior,
        requests=f.requests,
        failures=f.failures,
        mean_abs_diff=rounded(f.mean_abs_diff),
        agreement=rounded(f.agreement),
        latency_ratio=rounded(f.latency_ratio),
    )


def _stop(ctx: Context, d: Draft) -> Draft:
    """No shadow now: the serving pods mirror nothing and the shadow pods go (if there were any)."""
    obs = ctx.obs
    running = obs.shadow is not None and obs.shadow.spec_replicas > 0
    was = obs.status.pending is not None and obs.status.pending.stage == Stage.SHADOWING
    writes: list[dict[str, Any]] = []
    if running or was:
        writes.append(builders.shadow_config(obs.app, None))
    if obs.shadow is not None and running:
        writes.append(builders.shadow_deployment(obs.app, obs.spec, obs.shadow.template, 0))
    return d.replace(apply=(*d.apply, *writes))
