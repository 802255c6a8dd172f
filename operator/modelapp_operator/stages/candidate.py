"""What the shadow and canary stages share: which target they gate, how they hold it, how they fail it."""

from __future__ import annotations

from typing import Literal

from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import ANN_ABORT, ANN_PROMOTE, Reason, Stage
from modelapp_operator.snapshot import ManifestInfo, Target, Waiting

# While a candidate is measured, look again this often (its pods' metrics are not watched).
MEASURE_REQUEUE = 3.0


def gated(ctx: Context, d: Draft, later: tuple[Stage, ...]) -> tuple[ManifestInfo, Target] | None:
    """The candidate a gate must hold: a new model version (not a spec change of the one serving), while
    something serves, not already past the gate (``later`` stages of it, or the Deployment runs it)."""
    info, target, serving, dep = d.candidate, d.target, d.status.serving_version, ctx.obs.deployment
    if info is None or target is None or serving is None or dep is None:
        return None
    if target.version == serving.version or dep.version == target.version:
        return None
    pending = d.status.pending
    if pending is not None and pending.version == target.version and pending.stage in later:
        return None
    return info, target


def action(ctx: Context, key: str, version: str) -> bool:
    return ctx.obs.annotations.get(key, "").strip() == version


def promoted(ctx: Context, d: Draft, version: str, what: str) -> Draft:
    """`modelapp promote`: skip the rest of the gate; the version rolls."""
    d = d.record(ctx, Reason.PROMOTED, version, message=f"{what} skipped (modelapp promote)")
    d = d.emit(
        "Normal", Reason.PROMOTED, f"model version {version}: {what} skipped by a person (modelapp promote)"
    )
    return d.drop_pending().replace(remove_annotations=(*d.remove_annotations, ANN_PROMOTE))


def hold(d: Draft, reason: Reason, message: str, requeue: float = MEASURE_REQUEUE) -> Draft:
    """Keep what serves while the gate measures: nothing rolls the stable Deployment."""
    return d.replace(target=None, waiting=Waiting(reason, message)).requeue(requeue)


def fail(
    ctx: Context,
    d: Draft,
    info: ManifestInfo,
    reason: Reason,
    message: str,
    event: Literal["Normal", "Warning"] = "Warning",
) -> Draft:
    """The gate stops the candidate: quarantined with what was measured, what serves untouched."""
    etag = next((v.etag for v in ctx.obs.store.versions or () if v.version == info.version), info.etag)
    d = d.quarantine(ctx, info.version, etag, info.sha256, reason, message)
    d = d.record(ctx, reason, info.version, message=message)
    d = d.emit(event, reason, f"model version {info.version} quarantined: {message}")
    if ctx.obs.annotations.get(ANN_ABORT, "").strip():
        d = d.replace(remove_annotations=(*d.remove_annotations, ANN_ABORT))
    return d.drop_pending().replace(candidate=None, target=None)
