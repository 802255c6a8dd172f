"""Fixtures shared by the unit tests of the bundle format and of the model store."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    """A small bundle: a fake model (bytes are never parsed here), a contract and a nested file."""
    root = tmp_path / "diabetes"
    (root / "extra").mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"\x08\x07onnx-bytes" * 1000)
    (root / "contract.json").write_text('{"samples": []}')
    (root / "extra" / "vocab.txt").write_text("a\nb\n")
    return root
