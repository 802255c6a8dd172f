"""Stage 1, people's actions: `modelapp reject/rollback/unquarantine` annotations become status, then go."""

from __future__ import annotations

from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import ANN_QUARANTINE, ANN_REJECT, ANN_UNQUARANTINE, Reason

_QUARANTINING = (
    (ANN_REJECT, Reason.REJECTED, "rejected by a person (modelapp reject)"),
    (ANN_QUARANTINE, Reason.ROLLED_BACK_BY_USER, "rolled back by a person (modelapp rollback)"),
)


def user_actions(ctx: Context, d: Draft) -> Draft:
    ann = ctx.obs.annotations
    etags = {v.version: v.etag for v in ctx.obs.store.versions or ()}
    for key, reason, why in _QUARANTINING:
        version = ann.get(key, "").strip()
        if not version:
            continue
        d = d.quarantine(ctx, version, etags.get(version, ""), "", reason, why)
        d = d.record(ctx, Reason.QUARANTINED, version, message=why)
        d = d.emit("Warning", Reason.QUARANTINED, f"model version {version} quarantined: {why}")
        if d.status.pending_is(version):
            d = d.drop_pending()
    d = _release(ctx, d, ann.get(ANN_UNQUARANTINE, "").strip())
    consumed = tuple(k for k in (ANN_REJECT, ANN_QUARANTINE, ANN_UNQUARANTINE) if k in ann)
    return d.replace(remove_annotations=consumed)


def _release(ctx: Context, d: Draft, version: str) -> Draft:
    if not version or d.status.quarantine_of(version) is None:
        return d
    d = d.replace(status=d.status.without_quarantine(version))
    # A new attempt: build and verify Jobs get new names instead of finding the failed ones.
    d = d.replace(status=d.status.with_attempt(version, d.status.attempt(version) + 1))
    d = d.record(ctx, Reason.UNQUARANTINED, version, message="released by a person (modelapp unquarantine)")
    return d.emit("Normal", Reason.UNQUARANTINED, f"model version {version} released from quarantine")
