"""Stage 7, when a rollout cannot finish: restore the last good pod template and say whom to blame."""

from __future__ import annotations

from typing import Any

from modelapp_operator import builders
from modelapp_operator.conditions import Condition
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import ANN_MODEL_SHA256, ANN_MODEL_VERSION, Cond, Reason, Stage
from modelapp_operator.snapshot import (
    DeploymentState,
    Target,
    scorer_image,
    template_annotation,
    template_hash,
)
from modelapp_operator.status import Pending


def roll_back(ctx: Context, d: Draft, dep: DeploymentState) -> Draft:
    spec = ctx.obs.spec
    why = f"did not become ready within {spec.progress_deadline_seconds}s (ProgressDeadlineExceeded)"
    nothing_to_restore = f"model version {dep.version} {why}; there is no earlier good version to restore"
    if dep.last_good is None and (
        d.status.quarantine_of(dep.version) is not None or d.status.failed_template_hash == dep.template_hash
    ):
        # Already reported: with nothing to restore, the Deployment stays failed until a new version
        # or spec arrives. Reporting it again would repeat events on every reconcile.
        return d.condition(Condition(Cond.ROLLED_OUT, "False", Reason.ROLLOUT_FAILED, nothing_to_restore))
    d = d.observe("rollout_failures", 1.0)
    blame_model = dep.last_good is None or _only_the_model_changed(ctx, dep, dep.last_good)
    if blame_model:
        etag = next((v.etag for v in ctx.obs.store.versions or () if v.version == dep.version), "")
        d = d.quarantine(ctx, dep.version, etag, dep.sha256, Reason.ROLLOUT_FAILED, f"rollout {why}")
        d = d.emit("Warning", Reason.QUARANTINED, f"model version {dep.version} quarantined: rollout {why}")
    else:
        d = d.with_status(failed_template_hash=dep.template_hash)
    if dep.last_good is None:
        d = d.drop_pending().record(ctx, Reason.ROLLOUT_FAILED, dep.version, message=nothing_to_restore)
        d = d.emit("Warning", Reason.ROLLOUT_FAILED, nothing_to_restore)
        return d.condition(Condition(Cond.ROLLED_OUT, "False", Reason.ROLLOUT_FAILED, nothing_to_restore))
    return _restore(ctx, d, dep, dep.last_good, blame_model, why)


def _only_the_model_changed(ctx: Context, dep: DeploymentState, last_good: dict[str, Any]) -> bool:
    """If the last good version under today's spec gives the last good template, only the model changed.
    Images baked per version (Image packaging) come with the version; otherwise the image is the spec's."""
    good_version = template_annotation(last_good, ANN_MODEL_VERSION)
    good_sha = template_annotation(last_good, ANN_MODEL_SHA256)
    baked = "initContainers" not in last_good.get("spec", {})
    image = scorer_image(last_good) if baked else (ctx.obs.spec.image or ctx.images.scorer)
    same_spec = builders.pod_template(
        ctx.obs.name, ctx.obs.spec, Target(good_version, good_sha, image, baked=baked), ctx.images
    )
    return good_version != dep.version and template_hash(same_spec) == template_hash(last_good)


def _restore(
    ctx: Context, d: Draft, dep: DeploymentState, last_good: dict[str, Any], blame_model: bool, why: str
) -> Draft:
    good_version = template_annotation(last_good, ANN_MODEL_VERSION)
    what = f"model version {dep.version}" if blame_model else "the new pod template (spec change)"
    msg = f"{what} {why}; restored {good_version}"
    d = d.replace(
        apply=(*d.apply, builders.build_deployment(ctx.obs.app, ctx.obs.spec, last_good, last_good))
    )
    d = d.set_pending(
        Pending(
            version=good_version,
            stage=Stage.ROLLING_OUT,
            template_hash=template_hash(last_good),
            since=ctx.now,
            rollback=True,
            message=msg,
        )
    )
    d = d.record(ctx, Reason.ROLLED_BACK, good_version, message=msg, image=scorer_image(last_good))
    d = d.emit("Warning", Reason.ROLLED_BACK, msg)
    return d.condition(Condition(Cond.ROLLED_OUT, "False", Reason.ROLLED_BACK, msg))
