"""The wake loop's retry delays: exponential per app, jittered, capped."""

from __future__ import annotations

import pytest
from modelapp_operator.loop import BACKOFF_CAP, backoff

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("failures", "low", "high"), [(1, 0.5, 1.0), (2, 1.0, 2.0), (4, 4.0, 8.0), (30, 150.0, 300.0)]
)
def test_backoff_doubles_per_failure_within_its_jitter(failures: int, low: float, high: float) -> None:
    assert backoff(failures, lambda: 0.0) == low
    assert backoff(failures, lambda: 1.0) == high


def test_backoff_is_jittered_and_capped() -> None:
    draws = {round(backoff(3), 6) for _ in range(50)}
    assert len(draws) > 1
    assert max(backoff(n) for n in range(1, 40)) <= BACKOFF_CAP
