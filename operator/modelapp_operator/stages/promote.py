"""Stage 3, promote: MLOpsPython's evaluate step; a candidate that does not beat what serves stays out."""

from __future__ import annotations

from modelapp_operator.conditions import Condition
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Cond, Reason
from modelapp_operator.policy import beats
from modelapp_operator.snapshot import ManifestInfo
from modelapp_operator.status import ModelAppStatus, NotBetter


def promote(ctx: Context, d: Draft) -> Draft:
    info = d.candidate
    if info is None:
        return d
    blocked = promotion_blocks(ctx, d.status, info)
    if blocked is None:
        return d
    d = d.condition(Condition(Cond.MODEL_RESOLVED, "True", Reason.NOT_BETTER, blocked))
    # Reported once per version, not on every reconcile.
    if d.status.not_better is None or d.status.not_better.version != info.version:
        d = d.with_status(not_better=NotBetter(info.version, blocked, ctx.now))
        d = d.record(ctx, Reason.NOT_BETTER, info.version, message=blocked)
        d = d.emit("Normal", Reason.NOT_BETTER, blocked)
    if d.status.pending_is(info.version):
        d = d.drop_pending()
    return d.replace(candidate=None)  # keep what serves


def promotion_blocks(ctx: Context, status: ModelAppStatus, info: ManifestInfo) -> str | None:
    """A message when the candidate does not beat what serves, else None."""
    promo = ctx.obs.spec.promotion
    serving = status.serving_version
    if promo is None or serving is None or serving.version == info.version:
        return None
    verdict = beats(promo, info.metrics, dict(serving.metrics or {}))
    if verdict is None:
        if promo.metric not in info.metrics:
            return f"{info.version} has no metric {promo.metric!r} in its manifest, so it cannot be compared"
        return None  # nothing to compare against: the serving version predates the metric
    if verdict:
        return None
    word = "higher" if promo.maximize else "lower"
    assert serving.metrics is not None
    return (
        f"{info.version} {promo.metric}={info.metrics[promo.metric]:.6g} is not {word} than serving "
        f"{serving.version} {promo.metric}={serving.metrics[promo.metric]:.6g}; keeping {serving.version}"
    )
