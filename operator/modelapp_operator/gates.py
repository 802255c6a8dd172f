"""The gates between a resolved version and a rollout (pure): user actions, promotion, build, verify, approval."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from modelapp_operator import builders
from modelapp_operator.builders import Images, Target
from modelapp_operator.conditions import Condition, rfc3339
from modelapp_operator.names import ANN_APPROVE, ANN_QUARANTINE, ANN_REJECT, ANN_UNQUARANTINE, Cond, Reason
from modelapp_operator.policy import Quarantine, beats

if TYPE_CHECKING:
    from modelapp_operator.planner import Event, ManifestInfo, Observed, Plan, _Status

TAIL = 400
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
IMAGES_KEPT = 10
# A Job with no pod yet is looked at again this soon, for this long after it started: the API
# server's refusal of its pods shows only in its events, and the Job object may not change again.
POD_WAIT = 3.0
POD_WAIT_WINDOW = 60.0
REFUSAL_CHARS = 400
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
    # While the Job has never had a pod: the API server's refusal of them (its FailedCreate event).
    rejected: str = ""


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


@dataclass(frozen=True)
class _Step:
    """What differs between the build and the contract-test Job."""

    cond: str
    waiting: str  # the pending stage and the condition's reason while the Job runs
    started: str  # the history entry when it starts
    rejected: str
    failed: str
    what: str
    event_on_start: bool


_BUILD = _Step(
    Cond.IMAGE_BUILT,
    "Building",
    "BuildStarted",
    Reason.BUILD_POD_REJECTED,
    Reason.BUILD_FAILED,
    "build",
    True,
)
_VERIFY = _Step(
    Cond.VERIFIED,
    "Verifying",
    "VerifyStarted",
    Reason.VERIFY_POD_REJECTED,
    Reason.CONTRACT_FAILED,
    "contract-test",
    False,
)


@dataclass(frozen=True)
class _Gate:
    """One version on its way through the build and contract-test Jobs, in one reconcile."""

    obs: Observed
    st: _Status
    p: Plan
    info: ManifestInfo
    seconds: Any  # seconds(since, now), passed in to keep this module free of planner imports
    attempt: int
    serving_now: bool  # the version serves already (built with other settings)

    def took(self) -> float | None:
        """Seconds since the pending stage began."""
        value: float | None = self.seconds(_since(self.st), self.obs.now)
        return value


def _event(type_: Literal["Normal", "Warning"], reason: str, message: str) -> Event:
    from modelapp_operator.planner import Event

    return Event(type_, reason, message)


def _tail(state: JobState) -> str:
    return state.message[-TAIL:] if state.message else state.reason or "no termination message"


def package(
    obs: Observed, st: _Status, p: Plan, info: ManifestInfo, images: Images, seconds: Any
) -> tuple[str | None, list[Condition]]:
    """Image packaging: the built and verified image for ``info``, or None while building, verifying or failed."""
    spec = obs.spec
    assert spec.build is not None
    attempt = int((st.data.get("attempts") or {}).get(info.version, 0))
    bh = builders.build_hash(spec, images, info.version, info.sha256, attempt)
    known: dict[str, dict[str, Any]] = st.data.setdefault("images", {})
    built = known.get(bh)
    if built is not None and built.get("failed"):
        # This exact build (or its contract test) already failed for the serving version: do not
        # loop on it; a change to the build settings (a new hash) tries again.
        cond = Cond.VERIFIED if built.get("image") else Cond.IMAGE_BUILT
        reason = Reason.CONTRACT_FAILED if built.get("image") else Reason.BUILD_FAILED
        return None, [Condition(cond, "False", reason, str(built.get("message", "")))]
    serving_now = (st.data.get("servingVersion") or {}).get("version") == info.version
    gate = _Gate(obs, st, p, info, seconds, attempt, serving_now)
    if built is None:
        outcome = _build(gate, images, bh, known)
        if isinstance(outcome, Condition):
            return None, [outcome]
        built = outcome
    image = str(built["image"])
    note = " (by tag: the build reported no digest)" if built.get("byTag") else ""
    conds = [Condition(Cond.IMAGE_BUILT, "True", "Built", f"{image}{note}")]
    passed = f"{image} passed its contract test"
    if not spec.contract_test:
        return image, [*conds, Condition(Cond.VERIFIED, "True", "Skipped", "rollout.contractTest is false")]
    if built.get("verified"):
        return image, [*conds, Condition(Cond.VERIFIED, "True", "ContractPassed", passed)]
    verdict = _verify(gate, built, image)
    return (image if verdict.status == "True" else None), [*conds, verdict]


def _build(
    gate: _Gate, images: Images, bh: str, known: dict[str, dict[str, Any]]
) -> dict[str, Any] | Condition:
    """The build Job of ``gate.info``: its image entry once built, else the ImageBuilt condition to report."""
    obs, st, p, info = gate.obs, gate.st, gate.p, gate.info
    job = builders.build_job(
        obs.app, obs.spec, images, info.version, info.sha256, _source_url(obs, info.version), gate.attempt
    )
    name = job["metadata"]["name"]
    state = obs.jobs.get(name)
    if state is None or not (state.succeeded or state.failed):
        return _await_job(gate, _BUILD, job, state, f"building {info.version} in Job {name}")
    if state.failed and state.rejected:
        # The deadline passed with every pod refused: nothing was built and the model is not at
        # fault, so a new attempt (a new Job) waits for the namespace to admit its pod.
        st.data["attempts"] = {**(st.data.get("attempts") or {}), info.version: gate.attempt + 1}
        return _pod_rejected(gate, _BUILD, name, state.rejected, expired=True)
    if state.failed:
        msg = f"build Job {name} of {info.version} failed: {_tail(state)}"
        p.observations.append(("build_failures", 1.0))
        entry = {"failed": True, "version": info.version, "message": msg}
        return _fail(gate, _BUILD, msg, lambda: known.__setitem__(bh, entry))
    digest = state.message.strip()
    by_tag = _DIGEST.fullmatch(digest) is None
    assert obs.spec.build is not None
    destination = obs.spec.build.destination
    tag = builders.image_tag(info.version, info.sha256)
    image = f"{destination}:{tag}" if by_tag else f"{destination}@{digest}"
    built = {"image": image, "byTag": by_tag, "verified": False, "version": info.version}
    known[bh] = built
    while len(known) > IMAGES_KEPT:
        known.pop(next(iter(known)))
    took = gate.took()
    st.record("Built", info.version, image=image, duration=took)
    if took is not None:
        p.observations.append(("build_seconds", took))
    p.events.append(_event("Normal", "Built", f"built {image} for model version {info.version}"))
    return built


def _verify(gate: _Gate, built: dict[str, Any], image: str) -> Condition:
    """The contract-test Job of ``image``: the Verified condition (True once it passed)."""
    obs, st, p, info = gate.obs, gate.st, gate.p, gate.info
    retry = int(built.get("verifyRetry", 0))
    job = builders.verify_job(obs.app, obs.spec, image, info.version, info.sha256, gate.attempt, retry)
    name = job["metadata"]["name"]
    state = obs.jobs.get(name)
    if state is None or not (state.succeeded or state.failed):
        return _await_job(gate, _VERIFY, job, state, f"contract test of {image} in Job {name}", image=image)
    if state.failed and state.rejected:
        built["verifyRetry"] = retry + 1  # as for a build: a new Job, no verdict on the model
        return _pod_rejected(gate, _VERIFY, name, state.rejected, expired=True, image=image)
    if state.failed:
        msg = f"contract test of {info.version} ({image}) failed: {_tail(state)}"
        return _fail(gate, _VERIFY, msg, lambda: built.update(failed=True, message=msg), image=image)
    built["verified"] = True
    took = gate.took()
    st.record("Verified", info.version, image=image, duration=took)
    if took is not None:
        p.observations.append(("verify_seconds", took))
    p.events.append(
        _event("Normal", "Verified", f"{image} passed the contract test of model version {info.version}")
    )
    return Condition(Cond.VERIFIED, "True", "ContractPassed", f"{image} passed its contract test")


def _await_job(
    gate: _Gate, step: _Step, job: dict[str, Any], state: JobState | None, waiting: str, **extra: Any
) -> Condition:
    """A Job not finished yet (or not created yet: create it). Its pods may be refused by the API server."""
    st, p, info = gate.st, gate.p, gate.info
    name = job["metadata"]["name"]
    if state is None:
        p.create.append(job)
    if _set_pending(st, info, step.waiting, rfc3339(gate.obs.now), job=name, **extra):
        st.record(step.started, info.version, image=str(extra.get("image", "")), message=f"Job {name}")
        if step.event_on_start:
            p.events.append(
                _event("Normal", step.started, f"building model version {info.version} (Job {name})")
            )
    if state is not None and state.rejected:
        return _pod_rejected(gate, step, name, state.rejected)
    if state is not None and state.active:
        st.data["pending"].pop("podRejected", None)  # a pod exists: the namespace admits them (again)
    elif state is not None and (gate.took() or 0.0) < POD_WAIT_WINDOW:
        # No pod yet: a refusal shows only in the Job's events, and the Job may not change again.
        p.requeue_after = min(p.requeue_after or POD_WAIT, POD_WAIT)
    return Condition(step.cond, "False", step.waiting, waiting)


def _pod_rejected(
    gate: _Gate, step: _Step, name: str, refusal: str, *, expired: bool = False, image: str = ""
) -> Condition:
    """The API server refuses the Job's pods: say so at once, with its words; Warn once per episode.
    Nothing is quarantined: the namespace is at fault, and the Job controller keeps trying."""
    st, p, info = gate.st, gate.p, gate.info
    words = " ".join(refusal.split())
    if len(words) > REFUSAL_CHARS:
        words = words[: REFUSAL_CHARS - 1] + "…"
    msg = f"the API server refuses the pods of {step.what} Job {name} for {info.version}: {words}"
    if expired:
        msg += "; the Job ran out of time, a new one tries again"
        p.requeue_after = 1.0
    _set_pending(
        st, info, step.waiting, rfc3339(gate.obs.now), job=name, **({"image": image} if image else {})
    )
    pending = st.data["pending"]
    if not pending.get("podRejected"):
        pending["podRejected"] = True
        st.record(step.rejected, info.version, image=image, message=msg)
        p.events.append(_event("Warning", step.rejected, msg))
    return Condition(step.cond, "False", step.rejected, msg)


def _fail(gate: _Gate, step: _Step, msg: str, remember: Callable[[], None], image: str = "") -> Condition:
    """A Job failed: quarantine the version, or, when it serves already, remember the failure instead."""
    st, p, info = gate.st, gate.p, gate.info
    if gate.serving_now:
        remember()
    else:
        st.add_quarantine(info.version, info.etag, info.sha256, step.failed, msg)
    st.record(step.failed, info.version, image=image, message=msg, duration=gate.took())
    st.data.pop("pending", None)
    p.events.append(_event("Warning", step.failed, msg))
    p.requeue_after = 1.0
    return Condition(step.cond, "False", step.failed, msg)


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
