"""The planner (pure): one reconcile's decisions as an ordered list of stages over one snapshot.

Each stage reads the ``Observed`` snapshot and the ``Draft`` the stages before it left, decides one thing
and returns the new ``Draft``; ``plan()`` runs them in order. Nothing here does I/O or reads a clock:
``obs.now`` is the time.
"""

from __future__ import annotations

from collections.abc import Callable

from modelapp_operator.draft import Context, Draft
from modelapp_operator.snapshot import Images, Observed, Plan
from modelapp_operator.stages.actions import user_actions
from modelapp_operator.stages.admit import admit
from modelapp_operator.stages.approve import approve
from modelapp_operator.stages.build import build
from modelapp_operator.stages.canary import canary
from modelapp_operator.stages.promote import promote
from modelapp_operator.stages.resolve import resolve_version
from modelapp_operator.stages.rollout import roll_out
from modelapp_operator.stages.shadow import shadow
from modelapp_operator.stages.soak import soak
from modelapp_operator.stages.summarize import ROLLING_REQUEUE, STALLED_REQUEUE, summarize
from modelapp_operator.stages.verify import verify

Stage = Callable[[Context, Draft], Draft]

STAGES: tuple[Stage, ...] = (
    admit,  # the spec names only images the operator allows
    user_actions,  # `modelapp reject/rollback/unquarantine` become status
    resolve_version,  # the version the policy picks, and the newest one in the store
    soak,  # versionPolicy.follow: the followed ModelApp has served it long enough
    promote,  # a candidate that does not beat what serves stays out
    build,  # Image packaging: the Kaniko Job
    verify,  # the contract-test Job
    approve,  # rollout.approval: Manual
    shadow,  # rollout.shadow: the candidate answers mirrored requests like what serves
    canary,  # rollout.strategy.canary: the candidate takes a growing share of the traffic
    roll_out,  # the Deployment: roll, follow, roll back
    summarize,  # conditions, scale fields, when to look again
)


def plan(obs: Observed, images: Images) -> Plan:
    """Decide everything for one reconcile of one ModelApp."""
    ctx = Context(obs, images)
    draft = Draft(status=obs.status)
    for stage in STAGES:
        draft = stage(ctx, draft)
    return draft.plan()


__all__ = ["ROLLING_REQUEUE", "STAGES", "STALLED_REQUEUE", "plan"]
