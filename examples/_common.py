"""Shared helpers for the example `train.py` scripts (bundle writing lives in modelapp_bundle)."""

from __future__ import annotations

import argparse
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

# Pinned so a re-run produces the same model.onnx bytes, hence the same sha256.
TARGET_OPSET = 17
SEED = 0


def parse_args(name: str, alpha: float | None = None) -> argparse.Namespace:
    """--out and --version; --alpha too when the example has a regularisation strength (default alpha)."""
    parser = argparse.ArgumentParser(description=f"Train the {name} example and write a model bundle.")
    here = Path(__file__).resolve().parent / name
    parser.add_argument("--out", type=Path, default=here / "bundle", help="bundle directory to (re)create")
    parser.add_argument("--version", default="1.0.0", help="model version written to the manifest")
    if alpha is not None:
        parser.add_argument(
            "--alpha", type=float, default=alpha, help=f"regularisation strength (default {alpha})"
        )
    return parser.parse_args()


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def created_time() -> datetime:
    """SOURCE_DATE_EPOCH (reproducible builds convention) makes the manifest byte-identical too."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)


def write_json(path: Path, doc: Any) -> None:
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
