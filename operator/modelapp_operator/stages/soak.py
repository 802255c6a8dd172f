"""Stage 3, soak (``versionPolicy.follow``): the version another ModelApp serves rolls here only once that
ModelApp has served it, Ready, for the soak. Staged promotion: QA serves it first, then production."""

from __future__ import annotations

from datetime import datetime, timedelta

from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Reason, Stage
from modelapp_operator.snapshot import ManifestInfo, SourceState, Waiting
from modelapp_operator.stages.jobs import set_pending
from modelapp_operator.status import rfc3339


def _parse(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def soak_start(source: SourceState) -> datetime | None:
    """Since when the source has served its version and been Ready (whichever came last)."""
    served = _parse(source.serving.since if source.serving else None)
    ready = _parse(source.ready_since)
    if served is None or not source.ready:
        return None
    return max(served, ready) if ready is not None else served


def soak(ctx: Context, d: Draft) -> Draft:
    follow, source, info = ctx.obs.spec.follow, ctx.obs.source, d.candidate
    if follow is None or source is None:
        return d
    d = d.requeue(ctx.obs.spec.poll_interval)  # the source's status is also watched; this is the backstop
    if info is None or _past_soak(ctx, d, info):
        return d
    start = soak_start(source)
    now = ctx.obs.now.replace(tzinfo=None)
    until = start + timedelta(seconds=follow.soak) if start is not None else None
    if until is not None and now >= until:
        if d.status.pending_is(info.version, Stage.SOAKING):
            d = d.drop_pending().record(ctx, Reason.SOAKED, info.version, message=f"soaked in {source.key}")
            d = d.emit(
                "Normal", Reason.SOAKED, f"model version {info.version} soaked in ModelApp {source.key}"
            )
        return d
    return _soaking(ctx, d, info, source, until)


def _past_soak(ctx: Context, d: Draft, info: ManifestInfo) -> bool:
    """The version serves here, rolls here, or is in a later stage: the soak was passed."""
    serving = d.status.serving_version
    dep = ctx.obs.deployment
    pending = d.status.pending
    return (
        (serving is not None and serving.version == info.version)
        or (dep is not None and dep.version == info.version)
        or (pending is not None and pending.version == info.version and pending.stage != Stage.SOAKING)
    )


def _soaking(
    ctx: Context, d: Draft, info: ManifestInfo, source: SourceState, until: datetime | None
) -> Draft:
    soak_until = rfc3339(until) if until is not None else None
    d, new = set_pending(ctx, d, info, Stage.SOAKING, source=source.key, soak_until=soak_until)
    if until is None:
        message = f"{info.version} waits for ModelApp {source.key} to be Ready; then it soaks there"
    else:
        message = f"{info.version} soaks in ModelApp {source.key} until {soak_until}"
        left = (until - ctx.obs.now.replace(tzinfo=None)).total_seconds()
        d = d.requeue(max(1.0, left))
    if new:
        d = d.record(ctx, Reason.SOAKING, info.version, message=message)
        d = d.emit("Normal", Reason.SOAKING, message)
    return d.replace(candidate=None, waiting=Waiting(Reason.SOAKING, message))
