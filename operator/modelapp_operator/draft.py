"""What the planner's stages have decided so far in one reconcile (pure, immutable).

Each stage takes the ``Observed`` snapshot and the ``Draft`` the stages before it left, and returns a new
``Draft``: the status being written, the writes and Events it adds, and what it hands to the next stage
(the resolved manifest, the target, the conditions decided so far).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from modelapp_operator.conditions import Condition, cap
from modelapp_operator.names import Cond, Reason, Stage
from modelapp_operator.snapshot import Event, Images, ManifestInfo, Observed, Plan, Stalled, Target, Waiting
from modelapp_operator.status import (
    HistoryEntry,
    ImageRecord,
    ModelAppStatus,
    Pending,
    QuarantineEntry,
    rfc3339,
    seconds_since,
)


@dataclass(frozen=True)
class Context:
    """The inputs every stage reads: the snapshot and the operator's image defaults."""

    obs: Observed
    images: Images

    @property
    def now(self) -> str:
        return rfc3339(self.obs.now)

    @property
    def source_key(self) -> str | None:
        """``versionPolicy.follow``: the followed ModelApp (namespace/name)."""
        follow = self.obs.spec.follow
        return follow.key if follow is not None else None


@dataclass(frozen=True)
class Draft:
    status: ModelAppStatus
    # Handed from stage to stage.
    candidate: ManifestInfo | None = None  # the version that may roll (resolve, then the gates, may clear it)
    image: ImageRecord | None = None  # Image packaging: the built image of the candidate
    build_hash: str | None = None  # ... and the key of its record in status.images
    target: Target | None = None  # what the pods should run
    waiting: Waiting | None = None  # why the candidate does not roll yet (approval)
    stalled: Stalled | None = None
    refused: Stalled | None = None  # the spec names what the operator does not allow: nothing new rolls
    conditions: dict[str, Condition] = field(default_factory=dict)
    # The writes and reports.
    apply: tuple[dict[str, Any], ...] = ()
    create: tuple[dict[str, Any], ...] = ()
    remove_annotations: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    observations: tuple[tuple[str, float], ...] = ()
    requeue_after: float | None = None

    def replace(self, **changes: Any) -> Draft:
        return dataclasses.replace(self, **changes)

    def with_status(self, **changes: Any) -> Draft:
        return self.replace(status=dataclasses.replace(self.status, **changes))

    def condition(self, cond: Condition) -> Draft:
        return self.replace(conditions={**self.conditions, cond.type: cond})

    def decided(self, type_: Cond) -> Condition | None:
        return self.conditions.get(type_)

    def emit(self, type_: Literal["Normal", "Warning"], reason: Reason, message: str) -> Draft:
        return self.replace(events=(*self.events, Event(type_, reason, cap(message))))

    def record(
        self,
        ctx: Context,
        event: Reason,
        version: str,
        message: str = "",
        image: str = "",
        duration: float | None = None,
    ) -> Draft:
        """A ``status.history`` entry."""
        entry = HistoryEntry(
            version=version,
            event=event,
            at=ctx.now,
            message=cap(message),
            image=image or None,
            duration_seconds=round(duration, 3) if duration is not None else None,
        )
        return self.replace(status=self.status.with_history(entry))

    def quarantine(
        self, ctx: Context, version: str, etag: str, sha256: str, reason: Reason, message: str
    ) -> Draft:
        entry = QuarantineEntry(version, etag, sha256, reason, cap(message), ctx.now)
        return self.replace(status=self.status.with_quarantine(entry))

    def observe(self, metric: str, value: float) -> Draft:
        return self.replace(observations=(*self.observations, (metric, value)))

    def requeue(self, seconds: float) -> Draft:
        """Look again within ``seconds`` (the soonest of what the stages ask for)."""
        soonest = seconds if self.requeue_after is None else min(self.requeue_after, seconds)
        return self.replace(requeue_after=soonest)

    def set_pending(self, pending: Pending | None) -> Draft:
        return self.with_status(pending=pending)

    def drop_pending(self, stage: Stage | None = None) -> Draft:
        """Clear ``status.pending`` (only if it is in ``stage``, when given)."""
        p = self.status.pending
        if p is None or (stage is not None and p.stage != stage):
            return self
        return self.set_pending(None)

    def pending_seconds(self, ctx: Context) -> float | None:
        """Seconds since the pending stage began."""
        return seconds_since(self.status.pending.since if self.status.pending else None, ctx.obs.now)

    def plan(self) -> Plan:
        return Plan(
            status=self.status,
            apply=list(self.apply),
            create=list(self.create),
            remove_annotations=list(self.remove_annotations),
            events=list(self.events),
            requeue_after=self.requeue_after,
            observations=list(self.observations),
        )
