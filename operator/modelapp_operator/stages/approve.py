"""Stage 6, approve: with ``rollout.approval: Manual`` a new version waits for `modelapp approve`."""

from __future__ import annotations

from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import ANN_APPROVE, Reason, Stage
from modelapp_operator.snapshot import ManifestInfo, Target, Waiting
from modelapp_operator.stages.jobs import set_pending
from modelapp_operator.status import MetricDiff, ModelAppStatus


def approve(ctx: Context, d: Draft) -> Draft:
    info, target = d.candidate, d.target
    if info is None or target is None or not _needs_approval(ctx, d, target):
        return d
    name = ctx.obs.name
    if ctx.obs.annotations.get(ANN_APPROVE, "").strip() == target.version:
        d, _ = set_pending(ctx, d, info, Stage.AWAITING_APPROVAL, approved=True)
        d = d.record(ctx, Reason.APPROVED, target.version, message="approved (modelapp approve)")
        d = d.emit("Normal", Reason.APPROVED, f"model version {target.version} approved for rollout")
        return d.replace(remove_annotations=(*d.remove_annotations, ANN_APPROVE))
    d = _await_approval(ctx, d, info, target)
    how = f"modelapp approve {name} --version {target.version}"
    return d.replace(
        target=None, waiting=Waiting(Reason.AWAITING_APPROVAL, f"{target.version} awaits approval: {how}")
    )


def _needs_approval(ctx: Context, d: Draft, target: Target) -> bool:
    if not ctx.obs.spec.manual_approval or d.status.serving_version is None:
        return False  # nothing serves yet: the first version needs no approval
    dep = ctx.obs.deployment
    if dep is not None and dep.version == target.version:
        return False  # the Deployment already runs or rolls this version: it was approved before
    pending = d.status.pending
    return not (pending is not None and pending.version == target.version and pending.approved)


def _await_approval(ctx: Context, d: Draft, info: ManifestInfo, target: Target) -> Draft:
    diff = metrics_diff(d.status, info)
    d, new = set_pending(ctx, d, info, Stage.AWAITING_APPROVAL, image=target.image, metrics_diff=diff)
    if not new:
        return d
    d = d.record(ctx, Reason.AWAITING_APPROVAL, target.version, image=target.image)
    shown = ", ".join(f"{k} {_shown(v.serving)} → {_shown(v.candidate)}" for k, v in diff.items())
    return d.emit(
        "Normal",
        Reason.AWAITING_APPROVAL,
        f"model version {target.version} awaits approval ({shown or 'no metrics'}): "
        f"modelapp approve {ctx.obs.name} --version {target.version}",
    )


def _shown(value: float | None) -> str:
    return "-" if value is None else str(value)


def metrics_diff(status: ModelAppStatus, info: ManifestInfo) -> dict[str, MetricDiff]:
    serving = dict((status.serving_version.metrics if status.serving_version else None) or {})
    return {
        k: MetricDiff(serving.get(k), info.metrics.get(k)) for k in sorted(set(serving) | set(info.metrics))
    }
