"""Stage 2, resolve: which version the policy picks (once per reconcile), and the newest one in the store."""

from __future__ import annotations

from dataclasses import replace

from modelapp_operator.conditions import Condition
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Cond, Reason
from modelapp_operator.policy import Quarantine, Resolution, newest_first, resolve
from modelapp_operator.snapshot import Waiting
from modelapp_operator.status import LatestVersion

RE_RESOLVE = 0.5


def _resolved(status: str, reason: str, message: str) -> Condition:
    return Condition(Cond.MODEL_RESOLVED, status, reason, message)  # type: ignore[arg-type]


def resolve_version(ctx: Context, d: Draft) -> Draft:
    obs = ctx.obs
    if obs.stalled:
        return d.condition(_resolved("False", obs.stalled.reason, obs.stalled.message))
    if obs.store.versions is None:
        problem = obs.store.problem or Waiting(
            Reason.STORE_UNAVAILABLE, "the model store could not be listed"
        )
        return d.condition(_resolved("False", problem.reason, problem.message))
    d = _note_latest(ctx, d)
    unusable = [Quarantine(v.version, v.etag) for v in obs.store.versions if v.version in obs.store.unusable]
    excluded = [*(Quarantine(q.version, q.etag or "") for q in d.status.quarantined), *unusable]
    res = resolve(obs.spec.policy, obs.store.versions, excluded)
    if res.version is None:
        return d.condition(_unresolved(d, res, obs.store.unusable))
    info = obs.store.manifests.get(res.version.version)
    if info is None:
        # A user action changed the quarantine since gather read the manifests: look again soon.
        return d.requeue(RE_RESOLVE).condition(
            _resolved("Unknown", Reason.PROGRESSING, "re-resolving after a user action")
        )
    skipped = "".join(f"; skipped {why}" for why in obs.store.unusable.values())
    return d.replace(candidate=info).condition(_resolved("True", res.reason, res.message + skipped))


def _unresolved(d: Draft, res: Resolution, unusable: dict[str, str]) -> Condition:
    """Why nothing resolves, in the words of what happened: a quarantined version says why it was."""
    if unusable and (res.blocked is None or res.blocked in unusable):
        return _resolved("False", Reason.MANIFEST_INVALID, "; ".join(unusable.values()))
    entry = d.status.quarantine_of(res.blocked) if res.blocked else None
    if entry is not None and entry.reason:
        why = f": {entry.message}" if entry.message else ""
        return _resolved("False", entry.reason, f"{res.message} ({entry.reason}{why})")
    return _resolved("False", res.reason, res.message)


def _note_latest(ctx: Context, d: Draft) -> Draft:
    """latestVersion is the newest complete version in the store, whatever the policy."""
    versions = ctx.obs.store.versions or ()
    if not versions:
        return d
    newest = newest_first(versions)[0]
    info = ctx.obs.store.manifests.get(newest.version)
    prev = d.status.latest_version
    if prev is not None and prev.version == newest.version and prev.etag == newest.etag:
        if info and not prev.sha256:
            return d.with_status(latest_version=replace(prev, sha256=info.sha256, metrics=info.metrics))
        return d
    latest = LatestVersion(newest.version, newest.etag, ctx.now)
    if info:
        latest = LatestVersion(newest.version, newest.etag, ctx.now, info.sha256, info.metrics)
    spec = ctx.obs.spec
    where = (
        f"served by ModelApp {spec.follow.key}"
        if spec.follow
        else f"in {spec.store.container}/{spec.store.prefix}"
    )
    d = d.with_status(latest_version=latest)
    d = d.emit("Normal", Reason.NEW_VERSION, f"found model version {newest.version} {where}")
    return d.record(ctx, Reason.DETECTED, newest.version).observe("versions_seen", 1.0)
