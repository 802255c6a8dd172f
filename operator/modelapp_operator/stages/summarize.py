"""Stage 8, summarize: the conditions (Ready says what happened), the scale fields, when to look again."""

from __future__ import annotations

from modelapp_operator.conditions import Condition, merge_conditions
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Cond, Reason, selector_labels
from modelapp_operator.snapshot import Stalled
from modelapp_operator.stages.build import image_packaging

ROLLING_REQUEUE = 30.0  # a safety net: Deployment and Job events wake the app as they change
STALLED_REQUEUE = 10.0
POD_REJECTED = (Reason.BUILD_POD_REJECTED, Reason.VERIFY_POD_REJECTED)
GATES = (Cond.IMAGE_BUILT, Cond.VERIFIED)
_FAILED_GATE = {Reason.BUILD_FAILED: Cond.IMAGE_BUILT, Reason.CONTRACT_FAILED: Cond.VERIFIED}


def summarize(ctx: Context, d: Draft) -> Draft:
    obs = ctx.obs
    d = _latest_failure(_kept_gates(ctx, d))
    stalled = obs.stalled or d.refused or d.stalled
    if obs.store.versions is None and isinstance(obs.store.problem, Stalled):
        stalled = stalled or obs.store.problem
    resolved = d.decided(Cond.MODEL_RESOLVED)
    rolled = d.decided(Cond.ROLLED_OUT)
    assert resolved is not None, "the resolve stage decides ModelResolved"
    assert rolled is not None, "the rollout stage decides RolledOut"
    gates = [c for t in GATES if (c := d.decided(t)) is not None]
    ready = _ready(ctx, d, stalled, resolved, rolled, gates)
    reconciling = (
        Condition(Cond.RECONCILING, "True", Reason.PROGRESSING, rolled.message)
        if d.status.pending
        else Condition(Cond.RECONCILING, "False", Reason.SUCCEEDED, "")
    )
    stalled_cond = (
        Condition(Cond.STALLED, "True", stalled.reason, stalled.message)
        if stalled
        else Condition(Cond.STALLED, "False", Reason.IDLE, "")
    )
    conditions = merge_conditions(
        d.status.conditions,
        [ready, resolved, *gates, rolled, reconciling, stalled_cond],
        obs.generation,
        obs.now,
    )
    d = d.with_status(
        conditions=conditions,
        observed_generation=obs.generation,
        replicas=obs.deployment.available if obs.deployment else 0,
        selector=",".join(f"{k}={v}" for k, v in selector_labels(obs.name).items()),
    )
    if d.status.pending is not None and d.requeue_after is None:
        d = d.requeue(ROLLING_REQUEUE)
    if obs.stalled is not None and d.requeue_after is None:
        # Secrets are not watched (least privilege), so look again soon for the one that is missing.
        d = d.requeue(STALLED_REQUEUE)
    return d


def _kept_gates(ctx: Context, d: Draft) -> Draft:
    """Condition types stay once they apply: with Image packaging, an ImageBuilt or Verified that this
    reconcile did not decide (nothing new to build, the store down) keeps what it said last."""
    if not image_packaging(ctx):
        return d
    for previous in d.status.conditions:
        if previous.type in GATES and d.decided(Cond(previous.type)) is None:
            d = d.condition(Condition(previous.type, previous.status, previous.reason, previous.message))  # type: ignore[arg-type]
    return d


def _latest_failure(d: Draft) -> Draft:
    """While the newest version sits in quarantine for a failed build or contract, ImageBuilt or Verified
    says so, even though an older version resolves and passes: the failure is what a person must see."""
    latest = d.status.latest_version.version if d.status.latest_version else None
    entry = d.status.quarantine_of(latest) if latest else None
    if entry is None or entry.reason not in _FAILED_GATE:
        return d
    cond_type = _FAILED_GATE[Reason(entry.reason)]
    return d.condition(
        Condition(cond_type, "False", entry.reason, f"latest version {latest}: {entry.message or ''}")
    )


def _ready(
    ctx: Context,
    d: Draft,
    stalled: Stalled | None,
    resolved: Condition,
    rolled: Condition,
    gates: list[Condition],
) -> Condition:
    """The summary condition: serving or not, and if not, why."""
    dep, serving = ctx.obs.deployment, d.status.serving_version
    available = dep.available if dep else 0
    if stalled:
        note = f" (still serving {serving.version})" if serving and available else ""
        return Condition(Cond.READY, "False", stalled.reason, stalled.message + note)
    if serving and available > 0:
        message = f"serving {serving.version} ({available}/{ctx.obs.spec.replicas} available)"
        if d.status.pending:
            message += f"; {d.status.pending.stage} {d.status.pending.version}"
        if resolved.status == "False":
            return Condition(Cond.READY, "True", resolved.reason, f"{message}; {resolved.message}")
        return Condition(Cond.READY, "True", Reason.SERVING, message)
    # Nothing serves: say why, the store's or policy's reason first, then a refused Job's, then the rollout's.
    refused = [c for c in gates if c.reason in POD_REJECTED]
    if resolved.status == "False":
        why = resolved
    elif refused:
        why = refused[0]
    elif rolled.status == "False" and rolled.reason not in (Reason.PROGRESSING, Reason.NOT_SERVING):
        why = rolled
    else:
        why = Condition(Cond.READY, "False", Reason.PROGRESSING, rolled.message)
    return Condition(Cond.READY, "False", why.reason, why.message)
