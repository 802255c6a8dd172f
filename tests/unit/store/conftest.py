"""Fixtures for the model store unit tests: isolated CLI settings (bundle_dir is in tests/unit/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_modelapp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MODELAPP_* variables must not leak into CLI tests."""
    import os

    for key in list(os.environ):
        if key.startswith("MODELAPP_"):
            monkeypatch.delenv(key)
