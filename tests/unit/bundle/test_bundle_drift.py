"""The operator and the scorer read one bundle format: each test here failed while both kept their own copy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from modelapp_bundle import write_manifest
from modelapp_operator.cli import CliSettings, main
from modelapp_operator.policy import Published, newest_first
from modelapp_operator.store import ChecksumMismatch, InMemoryStore
from scoring_service.metrics import Metrics
from scoring_service.repository import ModelRepository
from scoring_service.settings import Settings
from unit.scoring.scoring_models import linear_model, save

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def load(model_dir: Path) -> ModelRepository:
    repository = ModelRepository(Settings(model_dir=model_dir), Metrics())
    repository.load_all()
    return repository


def bundle(path: Path, version: str = "1", **edits: Any) -> Path:
    """A linear-model bundle whose written manifest then gets ``edits`` (None deletes a key)."""
    save(linear_model(), path)
    write_manifest(path, "lin", version)
    raw = orjson.loads((path / "modelapp.json").read_bytes())
    for key, value in edits.items():
        raw[key] = value
    (path / "modelapp.json").write_bytes(orjson.dumps(raw))
    return path


@pytest.mark.parametrize(
    "preprocess",
    [
        {"size": 8, "layout": "CHW"},
        {"size": 0},
        {"size": 8, "std": [0]},
        {"size": 8, "colour": "rgb"},
        {"size": 8, "color": "grayscale", "mean": [0.1, 0.2]},
    ],
)
def test_publish_refuses_the_preprocess_block_the_scorer_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], preprocess: dict[str, Any]
) -> None:
    path = bundle(tmp_path / "lin", preprocess=preprocess)
    [refusal] = load(path).errors
    argv = ["publish", str(path), "--version", "2", "--connection-string", "x", "--container", "c"]
    assert main(argv, settings=CliSettings()) == 1
    said = refusal.removeprefix("lin unknown: modelapp.json: ")  # readiness names no paths
    assert said != refusal, "the scorer refused the manifest itself, not the model"
    assert capsys.readouterr().err == f"error: {said}\n"


def test_created_without_a_timezone_reads_as_utc_in_the_operator_and_the_scorer(tmp_path: Path) -> None:
    path = bundle(tmp_path / "lin", created="2026-01-02T03:04:05")
    meant = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    served = load(path).get("lin", "1")
    assert served.bundle is not None
    assert served.bundle.manifest is not None
    assert served.bundle.manifest.created == meant
    store = InMemoryStore()
    store.put_blob("lin/1/modelapp.json", (path / "modelapp.json").read_bytes())
    manifest = asyncio.run(store.read_manifest("lin", "1"))
    assert manifest is not None
    assert manifest.created == meant


def test_file_sizes_are_checked_by_the_operator_as_by_the_scorer(tmp_path: Path) -> None:
    path = bundle(tmp_path / "lin")
    raw = orjson.loads((path / "modelapp.json").read_bytes())
    raw["files"]["model.onnx"]["size"] += 1  # the right sha256, a wrong size
    (path / "modelapp.json").write_bytes(orjson.dumps(raw))
    [refusal] = load(path).errors
    assert "size" in refusal
    store = InMemoryStore()
    store.put_blob("lin/1/modelapp.json", (path / "modelapp.json").read_bytes())
    manifest = asyncio.run(store.read_manifest("lin", "1"))
    assert manifest is not None
    with pytest.raises(ChecksumMismatch, match="size"):
        asyncio.run(store.upload_version("other", path, manifest))
    assert store.blob_names() == ["lin/1/modelapp.json"]


@pytest.mark.parametrize(
    "versions",
    [
        ["1.0.0-rc.1", "1.0.0"],
        ["0.9.0", "1.0.0", "1.0.0-rc.2", "1.0.0-rc.10"],
        ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta"],
        ["1.9", "1.10", "v1.2.3"],
    ],
)
def test_the_scorer_serves_the_version_the_operator_calls_newest(tmp_path: Path, versions: list[str]) -> None:
    for version in versions:
        bundle(tmp_path / version, version)
    operator_says = newest_first([Published(v, v, T0) for v in versions])[0].version
    assert load(tmp_path).latest["lin"].version == operator_says
