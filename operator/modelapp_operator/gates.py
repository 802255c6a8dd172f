"""The gates between a resolved version and a rollout (pure): user actions, promotion, build, verify, approval."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelapp_operator import builders
from modelapp_operator.builders import Images, Target
from modelapp_operator.conditions import Condition, rfc3339
from modelapp_operator.names import ANN_APPROVE, ANN_QUARANTINE, ANN_REJECT, ANN_UNQUARANTINE, Cond, Reason
from modelapp_operator.policy import Quarantine, beats

if TYPE_CHECKING:
    from modelapp_operator.planner import ManifestInfo, Observed, Plan, _Status

TAIL = 400
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
IMAGES_KEPT = 10
USER_ACTIONS = (ANN_APPROVE, ANN_REJECT, ANN_QUARANTINE, ANN_UNQUARANTINE)


@dataclass(frozen=True)
class JobState:
    """A build or verify Job as observed, with the tail of its main container's termination message."""

    name: str
    active: bool
    succeeded: bool
    failed: bool
    message: str = ""
    reason: str = ""


def effective_quarantine(status: Mapping[str, Any], annotations: Mapping[str, str]) -> list[Quarantine]:
    """The quarantine list once pending user actions (annotations) are applied; observe and plan agree on it."""
    entries = [Quarantine(q.get("version", ""), q.get("etag", "")) for q in status.get("quarantined") or []]
    for key in (ANN_REJECT, ANN_QUARANTINE):
        version = annotations.get(key, "").strip()
        if version and not any(q.version == version for q in entries):
            entries.append(Quarantine(version))
    undo = annotations.get(ANN_UNQUARANTINE, "").strip()
    return [q for q in entries if q.version != undo]


def consume_user_actions(obs: Observed, st: _Status, p: Plan) -> None:
    """Turn `modelapp reject/rollback/unquarantine` annotations into status, then have them removed."""
    from modelapp_operator.planner import Event

    ann = obs.app["metadata"].get("annotations") or {}
    etags = {v.version: v.etag for v in obs.store.versions or ()}
    for key, reason, why in (
        (ANN_REJECT, "Rejected", "rejected by a person (modelapp reject)"),
        (ANN_QUARANTINE, "RolledBackByUser", "rolled back by a person (modelapp rollback)"),
    ):
        version = ann.get(key, "").strip()
        if version:
            st.add_quarantine(version, etags.get(version, ""), "", reason, why)
            st.record("Quarantined", version, message=why)
            p.events.append(
                Event("Warning", Reason.QUARANTINED, f"model version {version} quarantined: {why}")
            )
            if (st.data.get("pending") or {}).get("version") == version:
                st.data.pop("pending", None)
    undo = ann.get(ANN_UNQUARANTINE, "").strip()
    if undo:
        before = len(st.data["quarantined"])
        st.data["quarantined"] = [q for q in st.data["quarantined"] if q.get("version") != undo]
        if len(st.data["quarantined"]) != before:
            # A new attempt: build and verify Jobs get new names instead of finding the failed ones.
            attempts = dict(st.data.get("attempts") or {})
            attempts[undo] = int(attempts.get(undo, 0)) + 1
            st.data["attempts"] = attempts
            st.record("Unquarantined", undo, message="released by a person (modelapp unquarantine)")
            p.events.append(
                Event("Normal", "Unquarantined", f"model version {undo} released from quarantine")
            )
    p.remove_annotations = [k for k in (ANN_REJECT, ANN_QUARANTINE, ANN_UNQUARANTINE) if k in ann]


def promotion_blocks(obs: Observed, st: _Status, info: ManifestInfo) -> str | None:
    """MLOpsPython's evaluate step: a message when the candidate does not beat what serves, else None."""
    promo = obs.spec.promotion
    serving = st.data.get("servingVersion") or {}
    if promo is None or not serving or serving.get("version") == info.version:
        return None
    verdict = beats(promo, info.metrics, serving.get("metrics"))
    if verdict is None:
        if promo.metric not in info.metrics:
            return f"{info.version} has no metric {promo.metric!r} in its manifest, so it cannot be compared"
        return None  # nothing to compare against: the serving version predates the metric
    if verdict:
        return None
    word = "higher" if promo.maximize else "lower"
    return (
        f"{info.version} {promo.metric}={info.metrics[promo.metric]:.6g} is not {word} than serving "
        f"{serving['version']} {promo.metric}={serving['metrics'][promo.metric]:.6g}; keeping {serving['version']}"
    )


def metrics_diff(st: _Status, info: ManifestInfo) -> dict[str, dict[str, float]]:
    serving = (st.data.get("servingVersion") or {}).get("metrics") or {}
    diff: dict[str, dict[str, float]] = {}
    for k in sorted(set(serving) | set(info.metrics)):
        entry = {}
        if k in serving:
            entry["serving"] = serving[k]
        if k in info.metrics:
            entry["candidate"] = info.metrics[k]
        diff[k] = entry
    return diff


def _set_pending(st: _Status, info: ManifestInfo, stage: str, now: str, **extra: Any) -> bool:
    """Set the pending stage; True when it is a new stage (a transition to report)."""
    pending = st.data.get("pending") or {}
    if (
        pending.get("version") == info.version
        and pending.get("sha256") == info.sha256
        and pending.get("stage") == stage
    ):
        st.data["pending"] = {**pending, **extra}
        return False
    keep = {k: pending[k] for k in ("approved",) if k in pending and pending.get("version") == info.version}
    st.data["pending"] = {
        "version": info.version,
        "sha256": info.sha256,
        "stage": stage,
        "since": now,
        **keep,
        **extra,
    }
    return True


def _since(st: _Status) -> str | None:
    value = (st.data.get("pending") or {}).get("since")
    return str(value) if value else None


def _source_url(obs: Observed, version: str) -> str:
    src = obs.spec.source
    prefix = src.prefix.strip("/")
    return f"{src.account_url}/{src.container}/{prefix + '/' if prefix else ''}{version}/"


def package(
    obs: Observed, st: _Status, p: Plan, info: ManifestInfo, images: Images, seconds: Any
) -> tuple[str | None, list[Condition]]:
    """Image packaging: the built and verified image for ``info``, or None while building, verifying or failed.

    ``seconds(since, now)`` measures durations; it is passed in to keep this module free of planner imports.
    """
    from modelapp_operator.planner import Event

    spec, now = obs.spec, rfc3339(obs.now)
    assert spec.build is not None
    attempt = int((st.data.get("attempts") or {}).get(info.version, 0))
    bh = builders.build_hash(spec, images, info.version, info.sha256, attempt)
    known: dict[str, dict[str, Any]] = st.data.setdefault("images", {})
    built = known.get(bh)
    conds: list[Condition] = []
    if built is not None and built.get("failed"):
        # This exact build (or its contract test) already failed for the serving version: do not
        # loop on it; a change to the build settings (a new hash) tries again.
        cond = Cond.VERIFIED if built.get("image") else Cond.IMAGE_BUILT
        reason = Reason.CONTRACT_FAILED if built.get("image") else Reason.BUILD_FAILED
        return None, [Condition(cond, "False", reason, str(built.get("message", "")))]
    serving_now = (st.data.get("servingVersion") or {}).get("version") == info.version

    if built is None:
        job = builders.build_job(
            obs.app, spec, images, info.version, info.sha256, _source_url(obs, info.version), attempt
        )
        name = job["metadata"]["name"]
        state = obs.jobs.get(name)
        if state is None or state.active or not (state.succeeded or state.failed):
            if state is None:
                p.create.append(job)
            if _set_pending(st, info, "Building", now, job=name):
                st.record("BuildStarted", info.version, message=f"Job {name}")
                p.events.append(
                    Event("Normal", "BuildStarted", f"building model version {info.version} (Job {name})")
                )
            msg = f"building {info.version} in Job {name}"
            return None, [Condition(Cond.IMAGE_BUILT, "False", "Building", msg)]
        if state.failed:
            tail = state.message[-TAIL:] if state.message else state.reason or "no termination message"
            msg = f"build Job {name} of {info.version} failed: {tail}"
            if serving_now:
                # The version serves already (built with other settings): keep it, remember the failure.
                known[bh] = {"failed": True, "version": info.version, "message": msg}
            else:
                st.add_quarantine(info.version, info.etag, info.sha256, Reason.BUILD_FAILED, msg)
            st.record("BuildFailed", info.version, message=msg, duration=seconds(_since(st), obs.now))
            st.data.pop("pending", None)
            p.events.append(Event("Warning", Reason.BUILD_FAILED, msg))
            p.observations.append(("build_failures", 1.0))
            p.requeue_after = 1.0
            return None, [Condition(Cond.IMAGE_BUILT, "False", Reason.BUILD_FAILED, msg)]
        digest = state.message.strip()
        by_tag = _DIGEST.fullmatch(digest) is None
        destination = spec.build.destination
        image = (
            f"{destination}:{builders.image_tag(info.version, info.sha256)}"
            if by_tag
            else f"{destination}@{digest}"
        )
        built = {"image": image, "byTag": by_tag, "verified": False, "version": info.version}
        known[bh] = built
        while len(known) > IMAGES_KEPT:
            known.pop(next(iter(known)))
        took = seconds(_since(st), obs.now)
        st.record("Built", info.version, image=image, duration=took)
        if took is not None:
            p.observations.append(("build_seconds", took))
        p.events.append(Event("Normal", "Built", f"built {image} for model version {info.version}"))
    image = str(built["image"])
    note = " (by tag: the build reported no digest)" if built.get("byTag") else ""
    conds.append(Condition(Cond.IMAGE_BUILT, "True", "Built", f"{image}{note}"))

    if not spec.contract_test:
        conds.append(Condition(Cond.VERIFIED, "True", "Skipped", "rollout.contractTest is false"))
        return image, conds
    if built.get("verified"):
        conds.append(Condition(Cond.VERIFIED, "True", "ContractPassed", f"{image} passed its contract test"))
        return image, conds
    job = builders.verify_job(obs.app, spec, image, info.version, info.sha256, attempt)
    name = job["metadata"]["name"]
    state = obs.jobs.get(name)
    if state is None or state.active or not (state.succeeded or state.failed):
        if state is None:
            p.create.append(job)
        if _set_pending(st, info, "Verifying", now, job=name, image=image):
            st.record("VerifyStarted", info.version, image=image, message=f"Job {name}")
        conds.append(
            Condition(Cond.VERIFIED, "False", "Verifying", f"contract test of {image} in Job {name}")
        )
        return None, conds
    took = seconds(_since(st), obs.now)
    if state.failed:
        tail = state.message[-TAIL:] if state.message else state.reason or "no termination message"
        msg = f"contract test of {info.version} ({image}) failed: {tail}"
        if serving_now:
            built.update(failed=True, message=msg)
        else:
            st.add_quarantine(info.version, info.etag, info.sha256, Reason.CONTRACT_FAILED, msg)
        st.record("ContractFailed", info.version, image=image, message=msg, duration=took)
        st.data.pop("pending", None)
        p.events.append(Event("Warning", Reason.CONTRACT_FAILED, msg))
        p.requeue_after = 1.0
        conds.append(Condition(Cond.VERIFIED, "False", Reason.CONTRACT_FAILED, msg))
        return None, conds
    built["verified"] = True
    st.record("Verified", info.version, image=image, duration=took)
    if took is not None:
        p.observations.append(("verify_seconds", took))
    p.events.append(
        Event("Normal", "Verified", f"{image} passed the contract test of model version {info.version}")
    )
    conds.append(Condition(Cond.VERIFIED, "True", "ContractPassed", f"{image} passed its contract test"))
    return image, conds


def awaiting_approval(obs: Observed, st: _Status, p: Plan, info: ManifestInfo, target: Target) -> str | None:
    """Manual approval: a message while the rollout of ``target`` waits for `modelapp approve`, else None."""
    from modelapp_operator.planner import Event

    if not obs.spec.manual_approval:
        return None
    serving = st.data.get("servingVersion") or {}
    if not serving:
        return None  # nothing serves yet: the first version needs no approval
    dep = obs.deployment
    if dep is not None and dep.version == target.version:
        return None  # the Deployment already runs or rolls this version: it was approved before
    pending = st.data.get("pending") or {}
    if pending.get("version") == target.version and pending.get("approved"):
        return None
    ann = (obs.app["metadata"].get("annotations") or {}).get(ANN_APPROVE, "").strip()
    if ann == target.version:
        _set_pending(st, info, "AwaitingApproval", rfc3339(obs.now), approved=True)
        st.record("Approved", target.version, message="approved (modelapp approve)")
        p.events.append(Event("Normal", "Approved", f"model version {target.version} approved for rollout"))
        p.remove_annotations.append(ANN_APPROVE)
        return None
    diff = metrics_diff(st, info)
    if _set_pending(st, info, "AwaitingApproval", rfc3339(obs.now), image=target.image, metricsDiff=diff):
        st.record("AwaitingApproval", target.version, image=target.image)
        shown = ", ".join(f"{k} {v.get('serving', '-')} → {v.get('candidate', '-')}" for k, v in diff.items())
        p.events.append(
            Event(
                "Normal",
                "AwaitingApproval",
                f"model version {target.version} awaits approval ({shown or 'no metrics'}): "
                f"modelapp approve {obs.app['metadata']['name']} --version {target.version}",
            )
        )
    return f"{target.version} awaits approval: modelapp approve {obs.app['metadata']['name']} --version {target.version}"
