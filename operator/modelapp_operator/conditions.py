"""Status conditions (pure): lastTransitionTime moves only when a condition's status flips."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from modelapp_operator.status import ConditionStatus, rfc3339

Status = Literal["True", "False", "Unknown"]
# Messages carry what others wrote (a build log's tail, the API server's refusal): keep the status small.
MESSAGE_CHARS = 1024


@dataclass(frozen=True)
class Condition:
    """A condition as a stage decides it; ``merge_conditions`` stamps the times."""

    type: str
    status: Status
    reason: str
    message: str = ""


def merge_conditions(
    previous: Iterable[ConditionStatus], desired: Sequence[Condition], generation: int, now: datetime
) -> tuple[ConditionStatus, ...]:
    """The new conditions, in the order of ``desired``; others from ``previous`` are dropped."""
    old = {c.type: c for c in previous}
    out = []
    for cond in desired:
        prior = old.get(cond.type)
        kept = prior is not None and prior.status == cond.status and prior.last_transition_time
        out.append(
            ConditionStatus(
                type=cond.type,
                status=cond.status,
                reason=cond.reason,
                message=cap(cond.message),
                last_transition_time=prior.last_transition_time if kept and prior else rfc3339(now),
                observed_generation=generation,
            )
        )
    return tuple(out)


def find(conditions: Iterable[ConditionStatus], type_: str) -> ConditionStatus | None:
    return next((c for c in conditions if c.type == type_), None)


def cap(message: str, limit: int = MESSAGE_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
