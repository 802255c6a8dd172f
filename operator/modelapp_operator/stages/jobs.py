"""What the build and the contract-test stages share: a Job per step, waited on, refused, or failed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from modelapp_operator.conditions import Condition
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Cond, Reason, Stage
from modelapp_operator.snapshot import JobState, ManifestInfo
from modelapp_operator.status import Pending

TAIL = 400
# A Job with no pod yet is looked at again this soon, for this long after it started: the API
# server's refusal of its pods shows only in its events, and the Job object may not change again.
POD_WAIT = 3.0
POD_WAIT_WINDOW = 60.0
REFUSAL_CHARS = 400
AFTER_FAILURE = 1.0


@dataclass(frozen=True)
class Step:
    """What differs between the build and the contract-test Job."""

    cond: Cond
    stage: Stage  # the pending stage, and the condition's reason while the Job runs
    started: Reason  # the history entry when it starts
    rejected: Reason
    failed: Reason
    what: str
    event_on_start: bool


BUILD = Step(
    Cond.IMAGE_BUILT,
    Stage.BUILDING,
    Reason.BUILD_STARTED,
    Reason.BUILD_POD_REJECTED,
    Reason.BUILD_FAILED,
    "build",
    True,
)
VERIFY = Step(
    Cond.VERIFIED,
    Stage.VERIFYING,
    Reason.VERIFY_STARTED,
    Reason.VERIFY_POD_REJECTED,
    Reason.CONTRACT_FAILED,
    "contract-test",
    False,
)


def tail(state: JobState) -> str:
    return state.message[-TAIL:] if state.message else state.reason or "no termination message"


def finished(state: JobState | None) -> bool:
    return state is not None and (state.succeeded or state.failed)


def set_pending(ctx: Context, d: Draft, info: ManifestInfo, stage: Stage, **extra: Any) -> tuple[Draft, bool]:
    """Put ``info`` in ``stage``; True when that is a new stage (a transition to report)."""
    given = {k: v for k, v in extra.items() if v is not None}
    p = d.status.pending
    if p is not None and p.version == info.version and p.sha256 == info.sha256 and p.stage == stage:
        return d.set_pending(replace(p, **given)), False
    approved = p.approved if p is not None and p.version == info.version else None
    fresh = Pending(
        version=info.version,
        sha256=info.sha256,
        stage=stage,
        since=ctx.now,
        **{"approved": approved, "source": ctx.source_key, **given},
    )
    return d.set_pending(fresh), True


def await_job(
    ctx: Context, d: Draft, step: Step, info: ManifestInfo, job: dict[str, Any], waiting: str, image: str = ""
) -> Draft:
    """A Job not finished yet (or not created yet: create it). Its pods may be refused by the API server."""
    name = job["metadata"]["name"]
    state = ctx.obs.jobs.get(name)
    if state is None:
        d = d.replace(create=(*d.create, job))
    d, new = set_pending(ctx, d, info, step.stage, job=name, image=image or None)
    if new:
        d = d.record(ctx, step.started, info.version, image=image, message=f"Job {name}")
        if step.event_on_start:
            d = d.emit("Normal", step.started, f"building model version {info.version} (Job {name})")
    if state is not None and state.rejected:
        return pod_rejected(ctx, d, step, info, name, state.rejected, image=image)
    if state is not None and state.active:
        assert d.status.pending is not None
        d = d.set_pending(
            replace(d.status.pending, pod_rejected=None)
        )  # a pod exists: the namespace admits them
    elif state is not None and (d.pending_seconds(ctx) or 0.0) < POD_WAIT_WINDOW:
        # No pod yet: a refusal shows only in the Job's events, and the Job may not change again.
        d = d.requeue(POD_WAIT)
    return d.condition(Condition(step.cond, "False", step.stage, waiting))


def pod_rejected(
    ctx: Context,
    d: Draft,
    step: Step,
    info: ManifestInfo,
    name: str,
    refusal: str,
    *,
    expired: bool = False,
    image: str = "",
) -> Draft:
    """The API server refuses the Job's pods: say so at once, with its words; Warn once per episode.
    Nothing is quarantined: the namespace is at fault, and the Job controller keeps trying."""
    words = " ".join(refusal.split())
    if len(words) > REFUSAL_CHARS:
        words = words[: REFUSAL_CHARS - 1] + "…"
    msg = f"the API server refuses the pods of {step.what} Job {name} for {info.version}: {words}"
    if expired:
        msg += "; the Job ran out of time, a new one tries again"
        d = d.requeue(AFTER_FAILURE)
    d, _ = set_pending(ctx, d, info, step.stage, job=name, image=image or None)
    pending = d.status.pending
    assert pending is not None
    if not pending.pod_rejected:
        d = d.set_pending(replace(pending, pod_rejected=True))
        d = d.record(ctx, step.rejected, info.version, image=image, message=msg)
        d = d.emit("Warning", step.rejected, msg)
    return d.condition(Condition(step.cond, "False", step.rejected, msg))


def fail(
    ctx: Context,
    d: Draft,
    step: Step,
    info: ManifestInfo,
    msg: str,
    remembered: Draft | None,
    image: str = "",
) -> Draft:
    """A Job failed: quarantine the version, or, when it serves already (``remembered`` is the draft that
    remembers the failure instead), keep serving it and do not loop on the failed build."""
    if remembered is not None:
        d = remembered
    else:
        d = d.quarantine(ctx, info.version, info.etag, info.sha256, step.failed, msg)
    d = d.record(ctx, step.failed, info.version, image=image, message=msg, duration=d.pending_seconds(ctx))
    d = d.drop_pending().emit("Warning", step.failed, msg).requeue(AFTER_FAILURE)
    return d.condition(Condition(step.cond, "False", step.failed, msg))
