"""Status conditions (pure): lastTransitionTime moves only when a condition's status flips."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str = ""


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    previous: Sequence[dict[str, Any]], desired: Sequence[Condition], generation: int, now: datetime
) -> list[dict[str, Any]]:
    """The new conditions list, in the order of ``desired``; others from ``previous`` are dropped."""
    old = {c.get("type"): c for c in previous}
    out = []
    for cond in desired:
        prior = old.get(cond.type)
        flipped = prior is None or prior.get("status") != cond.status or not prior.get("lastTransitionTime")
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": rfc3339(now) if flipped else prior["lastTransitionTime"],  # type: ignore[index]
                "observedGeneration": generation,
            }
        )
    return out


def find(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
