"""The planner (pure): from one observation of a ModelApp's world, what to write and what to report."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelapp_operator import builders
from modelapp_operator.builders import Images, Target
from modelapp_operator.conditions import Condition, merge_conditions, rfc3339
from modelapp_operator.gates import (
    JobState,
    awaiting_approval,
    consume_user_actions,
    package,
    promotion_blocks,
)
from modelapp_operator.names import ANN_MODEL_SHA256, ANN_MODEL_VERSION, Cond, Reason, selector_labels
from modelapp_operator.policy import Published, Quarantine, Resolution, newest_first, resolve
from modelapp_operator.spec import AppSpec

HISTORY_LIMIT = 20
ROLLING_REQUEUE = 30.0  # a safety net: Deployment and Job events wake the app as they change
STALLED_REQUEUE = 10.0
# Store problems that do not go away by themselves (an outage does).
NEEDS_A_PERSON = (Reason.STORE_AUTH_FAILED, Reason.STORE_MISCONFIGURED)
POD_REJECTED = (Reason.BUILD_POD_REJECTED, Reason.VERIFY_POD_REJECTED)


@dataclass(frozen=True)
class ManifestInfo:
    version: str
    sha256: str
    etag: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreView:
    """The store as the shared poller last saw it. ``versions`` is None when it could not be listed."""

    versions: tuple[Published, ...] | None
    problem: tuple[str, str] | None = None  # (reason, message)
    manifests: dict[str, ManifestInfo] = field(default_factory=dict)  # read for the versions that matter


@dataclass(frozen=True)
class DeploymentState:
    generation: int
    observed_generation: int
    spec_replicas: int
    replicas: int
    updated: int
    available: int
    template: dict[str, Any]
    spec_hash: str
    last_good: dict[str, Any] | None
    deadline_exceeded: bool

    @property
    def template_hash(self) -> str:
        return builders.template_hash(self.template)

    @property
    def version(self) -> str:
        return str(self.template.get("metadata", {}).get("annotations", {}).get(ANN_MODEL_VERSION, ""))

    @property
    def settled(self) -> bool:
        """The Deployment controller has seen the latest spec, so its status speaks of it."""
        return self.observed_generation >= self.generation

    @property
    def complete(self) -> bool:
        n = self.spec_replicas
        return self.settled and self.updated == n and self.available == n and self.replicas == n


@dataclass(frozen=True)
class Observed:
    app: dict[str, Any]
    spec: AppSpec
    store: StoreView
    deployment: DeploymentState | None
    service_exists: bool
    now: datetime
    stalled: tuple[str, str] | None = None  # (reason, message): a problem only a person can fix
    jobs: dict[str, JobState] = field(default_factory=dict)  # this app's build and verify Jobs by name


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)  # server-side applied (Deployment, Service)
    create: list[dict[str, Any]] = field(default_factory=list)  # created once; 409 means done (Jobs)
    remove_annotations: list[str] = field(default_factory=list)  # user actions consumed
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    # (metric, value) observations for the act layer to record, e.g. time to serving.
    observations: list[tuple[str, float]] = field(default_factory=list)


def _seconds(since: str | None, now: datetime) -> float | None:
    if not since:
        return None
    try:
        start = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=now.tzinfo)
    except ValueError:
        return None
    return max(0.0, (now - start).total_seconds())


class _Status:
    """The status being written, starting from the previous one."""

    def __init__(self, previous: dict[str, Any], now: datetime) -> None:
        self.data = copy.deepcopy(previous)
        self.now = now
        self.data.setdefault("quarantined", [])
        self.data.setdefault("history", [])

    @property
    def quarantine(self) -> list[Quarantine]:
        return [Quarantine(q.get("version", ""), q.get("etag", "")) for q in self.data["quarantined"]]

    def record(
        self, event: str, version: str, message: str = "", image: str = "", duration: float | None = None
    ) -> None:
        entry: dict[str, Any] = {
            "version": version,
            "event": event,
            "at": rfc3339(self.now),
            "message": message,
        }
        if image:
            entry["image"] = image
        if duration is not None:
            entry["durationSeconds"] = round(duration, 3)
        self.data["history"] = [*self.data["history"], entry][-HISTORY_LIMIT:]

    def add_quarantine(self, version: str, etag: str, sha256: str, reason: str, message: str) -> None:
        kept = [q for q in self.data["quarantined"] if q.get("version") != version]
        entry = {"version": version, "etag": etag, "sha256": sha256, "reason": reason, "message": message}
        self.data["quarantined"] = [*kept, {**entry, "at": rfc3339(self.now)}]


def plan(obs: Observed, images: Images) -> Plan:
    """Decide everything for one reconcile of one ModelApp. No I/O, no clock: ``obs.now`` is the time."""
    p = Plan()
    app, spec, now = obs.app, obs.spec, obs.now
    st = _Status(app.get("status") or {}, now)
    dep = obs.deployment
    consume_user_actions(obs, st, p)

    # 1. Which version should serve.
    resolution, resolved_cond = _resolve(obs, st, p)
    # 2. The gates: promotion, build, verify, approval. Then what the pods should run.
    target, gate_conds, waiting, resolved_cond = _gates(obs, st, p, images, resolution, resolved_cond)

    if target is None and dep is not None:
        # No new version may roll (gated, building, store down): the serving one still follows spec
        # changes such as resources or the scorer image.
        target = _serving_target(obs, st, images)

    stalled: tuple[str, str] | None = obs.stalled
    if obs.store.versions is None and obs.store.problem and obs.store.problem[0] in NEEDS_A_PERSON:
        stalled = stalled or obs.store.problem
    rolled: Condition
    if dep is None and target is None:
        pending = st.data.get("pending") or {}
        what = f"{pending['stage']} {pending['version']}" if pending else "nothing to roll out yet"
        rolled = Condition(Cond.ROLLED_OUT, "False", Reason.NOT_SERVING, waiting or what)
    elif target is None:
        # Keep whatever serves; only scale changes are followed while no version resolves.
        assert dep is not None
        rolled = _follow(obs, st, p, dep, None, images)
    else:
        rolled, stalled_by_rollout = _roll(obs, st, p, target, images)
        stalled = stalled or stalled_by_rollout

    if not obs.service_exists:
        p.apply.append(builders.build_service(app, spec))

    # 3. Status.
    ready = _ready(obs, st, stalled, resolved_cond, rolled, gate_conds)
    _write_conditions(obs, st, p, stalled, [ready, resolved_cond, *gate_conds, rolled])
    if st.data.get("pending") and p.requeue_after is None:
        p.requeue_after = ROLLING_REQUEUE
    if obs.stalled and p.requeue_after is None:
        # Secrets are not watched (least privilege), so look again soon for the one that is missing.
        p.requeue_after = STALLED_REQUEUE
    return p


def _gates(
    obs: Observed, st: _Status, p: Plan, images: Images, resolution: Resolution | None, resolved: Condition
) -> tuple[Target | None, list[Condition], str | None, Condition]:
    """Promotion, build, verify and approval for the resolved version: (what the pods should run, the gates'
    conditions, why the rollout waits, the ModelResolved condition as the promotion gate leaves it)."""
    spec = obs.spec
    target: Target | None = None
    gate_conds: list[Condition] = []
    waiting: str | None = None
    if resolution is None or resolution.version is None:
        return target, gate_conds, waiting, resolved
    info: ManifestInfo | None = obs.store.manifests[resolution.version.version]
    assert info is not None
    blocked = promotion_blocks(obs, st, info)
    if blocked:
        resolved = Condition(Cond.MODEL_RESOLVED, "True", Reason.NOT_BETTER, blocked)
        _note_not_better(st, p, info.version, blocked)
        info = None  # keep what serves
    if info is not None and spec.packaging == "Image" and spec.build is not None:
        image, gate_conds = package(obs, st, p, info, images, _seconds)
        target = Target(info.version, info.sha256, image, baked=True) if image else None
    elif info is not None:
        target = Target(info.version, info.sha256, spec.image or images.scorer)
    gate_conds = _latest_failure(st, gate_conds)
    if info is not None and target is not None:
        waiting = awaiting_approval(obs, st, p, info, target)
        if waiting:
            target = None
    return target, gate_conds, waiting, resolved


def _write_conditions(
    obs: Observed, st: _Status, p: Plan, stalled: tuple[str, str] | None, conds: list[Condition]
) -> None:
    """Conditions (with Reconciling and Stalled) and the scale fields into the status being written."""
    rolled = next(c for c in conds if c.type == Cond.ROLLED_OUT)
    reconciling = (
        Condition(Cond.RECONCILING, "True", Reason.PROGRESSING, rolled.message)
        if st.data.get("pending")
        else Condition(Cond.RECONCILING, "False", Reason.SUCCEEDED, "")
    )
    stalled_cond = (
        Condition(Cond.STALLED, "True", stalled[0], stalled[1])
        if stalled
        else Condition(Cond.STALLED, "False", Reason.IDLE, "")
    )
    generation = int(obs.app["metadata"].get("generation", 0))
    st.data["conditions"] = merge_conditions(
        st.data.get("conditions", []), [*conds, reconciling, stalled_cond], generation, obs.now
    )
    st.data["observedGeneration"] = generation
    st.data["replicas"] = obs.deployment.available if obs.deployment else 0
    name = obs.app["metadata"]["name"]
    st.data["selector"] = ",".join(f"{k}={v}" for k, v in selector_labels(name).items())
    p.status = st.data


def _ready(
    obs: Observed,
    st: _Status,
    stalled: tuple[str, str] | None,
    resolved_cond: Condition,
    rolled: Condition,
    gate_conds: list[Condition],
) -> Condition:
    """The summary condition: serving or not, and if not, why."""
    dep, spec = obs.deployment, obs.spec
    serving = st.data.get("servingVersion")
    available = dep.available if dep else 0
    if stalled:
        return Condition(Cond.READY, "False", stalled[0], stalled[1] + _serving_note(serving, available))
    if serving and available > 0:
        message = f"serving {serving['version']} ({available}/{spec.replicas} available)"
        pending = st.data.get("pending")
        if pending:
            message += f"; {pending['stage']} {pending['version']}"
        if resolved_cond.status == "False":
            return Condition(Cond.READY, "True", resolved_cond.reason, f"{message}; {resolved_cond.message}")
        return Condition(Cond.READY, "True", Reason.SERVING, message)
    # Nothing serves: say why, the store's or policy's reason first, then a refused Job's, then the rollout's.
    refused = [c for c in gate_conds if c.reason in POD_REJECTED]
    if resolved_cond.status == "False":
        why = resolved_cond
    elif refused:
        why = refused[0]
    elif rolled.status == "False" and rolled.reason not in (Reason.PROGRESSING, Reason.NOT_SERVING):
        why = rolled
    else:
        why = Condition(Cond.READY, "False", Reason.PROGRESSING, rolled.message)
    return Condition(Cond.READY, "False", why.reason, why.message)


def _resolve(obs: Observed, st: _Status, p: Plan) -> tuple[Resolution | None, Condition]:
    """The version the policy picks (with its manifest read), or None and the ModelResolved condition saying why."""
    if obs.stalled:
        reason, message = obs.stalled
        return None, Condition(Cond.MODEL_RESOLVED, "False", reason, message)
    if obs.store.versions is None:
        reason, message = obs.store.problem or (
            Reason.STORE_UNAVAILABLE,
            "the model store could not be listed",
        )
        return None, Condition(Cond.MODEL_RESOLVED, "False", reason, message)
    _note_latest(obs, st, p)
    resolution = resolve(obs.spec.policy, obs.store.versions, st.quarantine)
    if resolution.version is None:
        return None, Condition(Cond.MODEL_RESOLVED, "False", resolution.reason, resolution.message)
    if resolution.version.version in obs.store.manifests:
        return resolution, Condition(Cond.MODEL_RESOLVED, "True", resolution.reason, resolution.message)
    if obs.store.problem:
        # Every candidate's manifest was unusable (observe skipped them in turn).
        return None, Condition(Cond.MODEL_RESOLVED, "False", Reason.MANIFEST_INVALID, obs.store.problem[1])
    # A user action changed the quarantine since observe read the manifests: look again soon.
    p.requeue_after = 0.5
    return None, Condition(
        Cond.MODEL_RESOLVED, "Unknown", Reason.PROGRESSING, "re-resolving after a user action"
    )


def _serving_target(obs: Observed, st: _Status, images: Images) -> Target | None:
    serving = st.data.get("servingVersion") or {}
    if not serving.get("version") or not serving.get("sha256"):
        return None
    if obs.spec.packaging == "Image" and obs.spec.build is not None:
        return Target(serving["version"], serving["sha256"], str(serving.get("image", "")), baked=True)
    return Target(serving["version"], serving["sha256"], obs.spec.image or images.scorer)


def _latest_failure(st: _Status, conds: list[Condition]) -> list[Condition]:
    """While the newest version sits in quarantine for a failed build or contract, ImageBuilt or Verified
    says so, even though an older version resolves and passes: the failure is what a person must see."""
    latest = (st.data.get("latestVersion") or {}).get("version")
    for q in st.data.get("quarantined") or []:
        if q.get("version") != latest:
            continue
        cond_type = {Reason.BUILD_FAILED: Cond.IMAGE_BUILT, Reason.CONTRACT_FAILED: Cond.VERIFIED}.get(
            q.get("reason", "")
        )
        if cond_type is None:
            continue
        failed = Condition(
            cond_type, "False", q["reason"], f"latest version {latest}: {q.get('message', '')}"
        )
        return (
            [failed if c.type == cond_type else c for c in conds]
            if any(c.type == cond_type for c in conds)
            else [*conds, failed]
        )
    return conds


def _note_not_better(st: _Status, p: Plan, version: str, message: str) -> None:
    """Report a version that loses the promotion gate once, not on every reconcile."""
    last = st.data.get("notBetter") or {}
    if last.get("version") != version:
        st.data["notBetter"] = {"version": version, "message": message, "at": rfc3339(st.now)}
        st.record("NotBetter", version, message=message)
        p.events.append(Event("Normal", Reason.NOT_BETTER, message))
    if (st.data.get("pending") or {}).get("version") == version:
        st.data.pop("pending", None)


def _serving_note(serving: dict[str, Any] | None, available: int) -> str:
    if serving and available:
        return f" (still serving {serving['version']})"
    return ""


def _note_latest(obs: Observed, st: _Status, p: Plan) -> None:
    """latestVersion is the newest complete version in the store, whatever the policy."""
    assert obs.store.versions is not None
    if not obs.store.versions:
        return
    newest = newest_first(obs.store.versions)[0]
    prev = st.data.get("latestVersion") or {}
    if prev.get("version") == newest.version and prev.get("etag") == newest.etag:
        info = obs.store.manifests.get(newest.version)
        if info and not prev.get("sha256"):
            st.data["latestVersion"] = {**prev, "sha256": info.sha256, "metrics": info.metrics}
        return
    latest: dict[str, Any] = {"version": newest.version, "etag": newest.etag, "seenAt": rfc3339(obs.now)}
    info = obs.store.manifests.get(newest.version)
    if info:
        latest |= {"sha256": info.sha256, "metrics": info.metrics}
    st.data["latestVersion"] = latest
    source = obs.spec.source
    p.events.append(
        Event(
            "Normal",
            Reason.NEW_VERSION,
            f"found model version {newest.version} in {source.container}/{source.prefix}",
        )
    )
    st.record("Detected", newest.version)
    p.observations.append(("versions_seen", 1.0))


def _deploy(obs: Observed, p: Plan, template: dict[str, Any], last_good: dict[str, Any] | None) -> None:
    p.apply.append(builders.build_deployment(obs.app, obs.spec, template, last_good))


def _roll(
    obs: Observed, st: _Status, p: Plan, target: Target, images: Images
) -> tuple[Condition, tuple[str, str] | None]:
    """Move the Deployment toward ``target``, follow it, and roll back when it cannot get there."""
    name = obs.app["metadata"]["name"]
    desired = builders.pod_template(name, obs.spec, target, images)
    desired_hash = builders.template_hash(desired)
    dep = obs.deployment

    if dep is None:
        _deploy(obs, p, desired, None)
        _start_pending(obs, st, p, target, desired_hash)
        return Condition(
            Cond.ROLLED_OUT, "False", Reason.PROGRESSING, f"creating the Deployment for {target.version}"
        ), None

    if dep.template_hash != desired_hash:
        if desired_hash == st.data.get("failedTemplateHash"):
            # This exact template already failed: keep following what runs, and wait for the spec to
            # change rather than loop.
            _follow(obs, st, p, dep, None, images)
            msg = "the last spec change failed to roll out and was rolled back; change the spec to try again"
            return Condition(Cond.ROLLED_OUT, "False", Reason.ROLLOUT_FAILED, msg), (
                Reason.ROLLOUT_FAILED,
                msg,
            )
        _deploy(obs, p, desired, dep.last_good)
        _start_pending(obs, st, p, target, desired_hash)
        return Condition(Cond.ROLLED_OUT, "False", Reason.PROGRESSING, f"rolling out {target.version}"), None

    return _follow(obs, st, p, dep, target, images), None


def _start_pending(obs: Observed, st: _Status, p: Plan, target: Target, template_hash: str) -> None:
    pending = st.data.get("pending") or {}
    if pending.get("templateHash") == template_hash:
        return
    st.data["pending"] = {
        "version": target.version,
        "sha256": target.sha256,
        "stage": "RollingOut",
        "image": target.image,
        "templateHash": template_hash,
        "since": rfc3339(obs.now),
    }
    serving = (st.data.get("servingVersion") or {}).get("version")
    what = (
        f"a spec change (image {target.image}) with model version {target.version}"
        if serving == target.version
        else f"model version {target.version} ({target.image})"
    )
    p.events.append(Event("Normal", Reason.ROLLOUT_STARTED, f"rolling out {what}"))
    st.record("RolloutStarted", target.version, image=target.image, message=f"rolling out {what}")


def _follow(
    obs: Observed, st: _Status, p: Plan, dep: DeploymentState, target: Target | None, images: Images
) -> Condition:
    """The Deployment already runs the template we want (or the one we keep): follow its rollout."""
    spec = obs.spec
    # Re-apply what the builder makes, not the template read back from the API server: that one
    # carries server defaults, and applying it would count as a spec change (a new generation).
    ours = _ours(obs, dep, target, images)
    if dep.spec_replicas != spec.replicas:
        # Scale: the pod template is untouched, so this is not a rollout.
        _deploy(obs, p, ours, dep.last_good)
        p.events.append(
            Event("Normal", Reason.SCALED, f"scaled from {dep.spec_replicas} to {spec.replicas} replicas")
        )
        return Condition(Cond.ROLLED_OUT, "False", Reason.PROGRESSING, f"scaling to {spec.replicas} replicas")

    if dep.settled and dep.deadline_exceeded and not dep.complete:
        return _roll_back(obs, st, p, dep, images)

    if not dep.complete:
        msg = f"rolling out {dep.version}: {dep.updated}/{spec.replicas} updated, {dep.available} available"
        serving_hash = (st.data.get("servingVersion") or {}).get("templateHash")
        if not st.data.get("pending") and target is not None and dep.template_hash != serving_hash:
            # A rollout we started before a restart, whose status write was lost: adopt it.
            _start_pending(obs, st, p, target, dep.template_hash)
        return Condition(Cond.ROLLED_OUT, "False", Reason.PROGRESSING, msg)

    # Complete. A pending build, verification or approval of the next version is not this rollout's.
    pending = st.data.get("pending")
    if pending and pending.get("stage") == "RollingOut":
        st.data.pop("pending")
    else:
        pending = None
    if pending and not pending.get("rollback"):
        st.data.pop("failedTemplateHash", None)
    serving = st.data.get("servingVersion") or {}
    changed = serving.get("templateHash") != dep.template_hash
    if changed:
        info = obs.store.manifests.get(dep.version)
        image = _scorer_image(dep.template)
        st.data["servingVersion"] = {
            "version": dep.version,
            "sha256": str(dep.template["metadata"]["annotations"].get(ANN_MODEL_SHA256, "")),
            "image": image,
            "since": rfc3339(obs.now),
            "templateHash": dep.template_hash,
            **({"metrics": info.metrics} if info and info.metrics else {}),
        }
        rollback = bool(pending and pending.get("rollback"))
        if not rollback:
            duration = _seconds((pending or {}).get("since"), obs.now)
            st.record("RolledOut", dep.version, image=image, duration=duration)
            p.events.append(
                Event("Normal", Reason.ROLLED_OUT, f"model version {dep.version} is serving ({image})")
            )
            latest = st.data.get("latestVersion") or {}
            detected = (
                _seconds(latest.get("seenAt"), obs.now) if latest.get("version") == dep.version else None
            )
            p.observations.append(("rollouts", 1.0))
            if detected is not None:
                p.observations.append(("time_to_serving", detected))
    if dep.last_good is None or builders.template_hash(dep.last_good) != dep.template_hash:
        # Remember this template as the one to come back to.
        _deploy(obs, p, ours, ours)
    last = (st.data.get("history") or [{}])[-1]
    if last.get("event") == "RolledBack":
        return Condition(Cond.ROLLED_OUT, "True", Reason.ROLLED_BACK, last.get("message", ""))
    return Condition(
        Cond.ROLLED_OUT, "True", Reason.ROLLED_OUT, f"{dep.version} rolled out to {dep.available} replicas"
    )


def _ours(obs: Observed, dep: DeploymentState, target: Target | None, images: Images) -> dict[str, Any]:
    """The builder's template for what the Deployment runs, when we can rebuild it exactly; else its own."""
    if target is not None:
        built = builders.pod_template(obs.app["metadata"]["name"], obs.spec, target, images)
        if builders.template_hash(built) == dep.template_hash:
            return built
    return dep.template


def _scorer_image(template: dict[str, Any]) -> str:
    for c in template.get("spec", {}).get("containers", []):
        if c.get("name") == "scorer":
            return str(c.get("image", ""))
    return ""


def _roll_back(obs: Observed, st: _Status, p: Plan, dep: DeploymentState, images: Images) -> Condition:
    spec = obs.spec
    failed_version, failed_hash = dep.version, dep.template_hash
    why = f"did not become ready within {spec.progress_deadline_seconds}s (ProgressDeadlineExceeded)"
    last_good = dep.last_good
    if last_good is None and (
        any(q.get("version") == failed_version for q in st.data["quarantined"])
        or st.data.get("failedTemplateHash") == failed_hash
    ):
        # Already reported: with nothing to restore, the Deployment stays failed until a new version
        # or spec arrives. Reporting it again would repeat events on every reconcile.
        msg = f"model version {failed_version} {why}; there is no earlier good version to restore"
        return Condition(Cond.ROLLED_OUT, "False", Reason.ROLLOUT_FAILED, msg)
    p.observations.append(("rollout_failures", 1.0))
    blame_model = False
    if last_good is not None:
        good_version = str(last_good["metadata"]["annotations"].get(ANN_MODEL_VERSION, ""))
        good_sha = str(last_good["metadata"]["annotations"].get(ANN_MODEL_SHA256, ""))
        # If the last good version under today's spec gives the last good template, only the model
        # changed. Images baked per version (Image packaging) come with the version; otherwise the
        # image is the spec's.
        baked = "initContainers" not in last_good.get("spec", {})
        image = _scorer_image(last_good) if baked else (spec.image or images.scorer)
        same_spec = builders.pod_template(
            obs.app["metadata"]["name"], spec, Target(good_version, good_sha, image, baked=baked), images
        )
        blame_model = good_version != failed_version and builders.template_hash(
            same_spec
        ) == builders.template_hash(last_good)
    else:
        good_version = ""
        blame_model = True

    if blame_model:
        etag = next((v.etag for v in obs.store.versions or () if v.version == failed_version), "")
        sha = str(dep.template["metadata"]["annotations"].get(ANN_MODEL_SHA256, ""))
        st.add_quarantine(failed_version, etag, sha, Reason.ROLLOUT_FAILED, f"rollout {why}")
        p.events.append(
            Event("Warning", Reason.QUARANTINED, f"model version {failed_version} quarantined: rollout {why}")
        )
    else:
        st.data["failedTemplateHash"] = failed_hash

    if last_good is None:
        st.data.pop("pending", None)
        msg = f"model version {failed_version} {why}; there is no earlier good version to restore"
        st.record("RolloutFailed", failed_version, message=msg)
        p.events.append(Event("Warning", Reason.ROLLOUT_FAILED, msg))
        return Condition(Cond.ROLLED_OUT, "False", Reason.ROLLOUT_FAILED, msg)

    what = f"model version {failed_version}" if blame_model else "the new pod template (spec change)"
    msg = f"{what} {why}; restored {good_version}"
    _deploy(obs, p, last_good, last_good)
    st.data["pending"] = {
        "version": good_version,
        "stage": "RollingOut",
        "templateHash": builders.template_hash(last_good),
        "since": rfc3339(obs.now),
        "rollback": True,
        "message": msg,
    }
    st.record("RolledBack", good_version, message=msg, image=_scorer_image(last_good))
    p.events.append(Event("Warning", Reason.ROLLED_BACK, msg))
    return Condition(Cond.ROLLED_OUT, "False", Reason.ROLLED_BACK, msg)
