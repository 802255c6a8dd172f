"""The scorer turns onnxruntime's telemetry off before onnxruntime loads (see scoring_service/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = (
    "import os, sys, scoring_service.runtime; "
    "print(os.environ.get('ORT_DISABLE_TELEMETRY'), 'onnxruntime' in sys.modules)"
)


def _probe(**env: str) -> str:
    clean = {name: value for name, value in os.environ.items() if name != "ORT_DISABLE_TELEMETRY"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_importing_the_scorer_sets_the_opt_out_before_onnxruntime_loads() -> None:
    assert _probe() == "1 True"


def test_an_explicit_setting_is_kept() -> None:
    assert _probe(ORT_DISABLE_TELEMETRY="0") == "0 True"
