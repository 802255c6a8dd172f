"""Retry delays (pure), one formula for the wake loop's failed reconciles and the pollers' restarts."""

from __future__ import annotations

import random
from collections.abc import Callable

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0


def backoff(failures: int, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter for the ``failures``-th failure in a row: 1, 2, 4 … 300 s, each drawn
    from its upper half so that many apps (or pollers) failing together do not retry together."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, failures - 1))
    return float(ceiling / 2 + rand() * ceiling / 2)
