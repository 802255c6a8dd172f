"""Manifest schema, digests and building a manifest from a directory."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from modelapp_operator.bundle import (
    BundleError,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    ManifestError,
    build_manifest,
    bundle_digest,
    manifest_for_directory,
    scan_bundle,
    sha256_file,
    validate_segment,
    verify_files,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
A = "a" * 64
B = "b" * 64


def test_bundle_digest_is_sha256_of_sorted_path_lines() -> None:
    files = {"model.onnx": A, "contract.json": B}
    text = f"contract.json {B}\nmodel.onnx {A}\n"
    assert bundle_digest(files) == hashlib.sha256(text.encode()).hexdigest()
    assert bundle_digest({p: FileEntry(sha256=h, size=1) for p, h in files.items()}) == bundle_digest(files)


def test_sha256_file_streams_content(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = b"x" * (3 * 1024 * 1024 + 7)
    path.write_bytes(data)
    assert sha256_file(path) == FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _manifest(**overrides: object) -> dict[str, object]:
    files = {"model.onnx": {"sha256": A, "size": 3}, "contract.json": {"sha256": B, "size": 2}}
    raw: dict[str, object] = {
        "schemaVersion": 1,
        "name": "diabetes",
        "version": "1.0.0",
        "created": "2026-01-02T03:04:05Z",
        "files": files,
        "sha256": bundle_digest({"model.onnx": A, "contract.json": B}),
        "contract": "contract.json",
    }
    raw.update(overrides)
    return raw


def test_parse_valid_manifest_round_trips() -> None:
    manifest = Manifest.parse(orjson.dumps(_manifest(metrics={"r2": 0.46}, labels=["a", "b"])))
    assert manifest.version == "1.0.0"
    assert manifest.metrics == {"r2": 0.46}
    assert manifest.created == NOW
    assert Manifest.parse(manifest.to_json()) == manifest
    assert orjson.loads(manifest.to_json())["schemaVersion"] == 1


def test_unknown_keys_survive_a_round_trip() -> None:
    manifest = Manifest.parse(orjson.dumps(_manifest(futureField={"x": 1})))
    assert orjson.loads(manifest.to_json())["futureField"] == {"x": 1}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"schemaVersion": 2}, "unsupported schemaVersion 2"),
        ({"sha256": "c" * 64}, "is not the bundle digest"),
        ({"files": {"contract.json": {"sha256": B, "size": 2}}}, "must list model.onnx"),
        ({"files": {"model.onnx": {"sha256": A, "size": 3}, "../x": {"sha256": B, "size": 1}}}, "'../x'"),
        ({"files": {"model.onnx": {"sha256": A, "size": 3}, "/etc/x": {"sha256": B, "size": 1}}}, "/etc/x"),
        ({"files": {"model.onnx": {"sha256": "XYZ", "size": 3}}}, "64 lowercase hex"),
        ({"files": {"model.onnx": {"sha256": A, "size": -1}}}, "size"),
        ({"contract": "missing.json"}, "contract 'missing.json' is not one of the listed files"),
        ({"version": "1/2"}, "invalid version"),
        ({"name": ".hidden"}, "invalid bundle name"),
        ({"created": "2026-01-02T03:04:05"}, "timezone"),
        ({"metrics": {"r2": "high"}}, "metrics.r2"),
    ],
)
def test_parse_rejects_with_a_message_naming_the_problem(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ManifestError, match=r"invalid manifest") as info:
        Manifest.parse(orjson.dumps(_manifest(**overrides)))
    assert fragment in str(info.value)


def test_manifest_listing_itself_is_rejected() -> None:
    files = {"model.onnx": A, "modelapp.json": B}
    raw = _manifest(
        files={p: {"sha256": h, "size": 1} for p, h in files.items()},
        sha256=bundle_digest(files),
        contract=None,
    )
    with pytest.raises(ManifestError, match=r"must not list modelapp.json"):
        Manifest.parse(orjson.dumps(raw))


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b""])
def test_parse_rejects_non_objects(data: bytes) -> None:
    with pytest.raises(ManifestError):
        Manifest.parse(data)


def test_build_manifest_computes_the_bundle_digest() -> None:
    files = {"model.onnx": FileEntry(sha256=A, size=3)}
    manifest = build_manifest(files, name="m", version="2", created=NOW, metrics={"acc": 1})
    assert manifest.sha256 == bundle_digest({"model.onnx": A})
    assert manifest.metrics == {"acc": 1.0}
    assert manifest.labels is None


def test_scan_bundle_lists_nested_files_but_not_the_manifest(bundle_dir: Path) -> None:
    (bundle_dir / "modelapp.json").write_text("{}")
    assert sorted(scan_bundle(bundle_dir)) == ["contract.json", "extra/vocab.txt", "model.onnx"]


def test_scan_bundle_needs_a_model(tmp_path: Path) -> None:
    (tmp_path / "readme").write_text("x")
    with pytest.raises(BundleError, match=r"no model.onnx"):
        scan_bundle(tmp_path)


def test_manifest_for_directory_keeps_local_descriptive_fields(bundle_dir: Path) -> None:
    stale = {
        "name": "diab",
        "version": "0.1",
        "files": {"gone": {"sha256": A, "size": 1}},
        "sha256": A,
        "metrics": {"r2": 0.1, "mae": 40.0},
        "labels": ["no", "yes"],
        "preprocess": {"size": [28, 28], "color": "grayscale"},
    }
    (bundle_dir / "modelapp.json").write_bytes(orjson.dumps(stale))
    manifest = manifest_for_directory(bundle_dir, version="1.2.0", metrics={"r2": 0.46}, created=NOW)
    assert manifest.name == "diab"
    assert manifest.version == "1.2.0"
    assert manifest.metrics == {"r2": 0.46, "mae": 40.0}
    assert manifest.labels == ["no", "yes"]
    assert manifest.preprocess == {"size": [28, 28], "color": "grayscale"}
    assert manifest.contract == "contract.json"
    assert set(manifest.files) == {"contract.json", "extra/vocab.txt", "model.onnx"}
    assert manifest.files["model.onnx"] == sha256_file(bundle_dir / "model.onnx")


def test_manifest_for_directory_defaults(bundle_dir: Path) -> None:
    (bundle_dir / "contract.json").unlink()
    manifest = manifest_for_directory(bundle_dir, version="3")
    assert manifest.name == "diabetes"
    assert manifest.contract is None
    assert manifest.metrics is None
    assert manifest.created.tzinfo is not None
    assert manifest_for_directory(bundle_dir, version="3", name="other").name == "other"


def test_verify_files_names_the_tampered_file(bundle_dir: Path) -> None:
    manifest = manifest_for_directory(bundle_dir, version="1")
    verify_files(bundle_dir, manifest)
    (bundle_dir / "extra" / "vocab.txt").write_text("tampered")
    with pytest.raises(ChecksumMismatch) as info:
        verify_files(bundle_dir, manifest)
    err = info.value
    assert err.file == "extra/vocab.txt"
    assert err.expected == manifest.files["extra/vocab.txt"].sha256
    assert err.actual == hashlib.sha256(b"tampered").hexdigest()
    for part in (err.expected, err.actual, "extra/vocab.txt"):
        assert part in str(err)


def test_verify_files_reports_missing_files(bundle_dir: Path) -> None:
    manifest = manifest_for_directory(bundle_dir, version="1")
    (bundle_dir / "model.onnx").unlink()
    with pytest.raises(ChecksumMismatch, match=r"model.onnx.*got missing"):
        verify_files(bundle_dir, manifest)


@pytest.mark.parametrize("value", ["1.0.0", "2026-01-01", "v1+build.5", "A_b"])
def test_segments_accepted(value: str) -> None:
    assert validate_segment(value, "version") == value


@pytest.mark.parametrize("value", ["", "a/b", ".x", "-x", "a b", "x" * 129, "é"])
def test_segments_rejected(value: str) -> None:
    with pytest.raises(ManifestError):
        validate_segment(value, "version")


def test_pure_core_imports_no_sdk() -> None:
    """The planner imports bundle and the store's types; neither may pull in an SDK."""
    import subprocess
    import sys

    code = (
        "import sys, modelapp_operator.bundle, modelapp_operator.store;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('azure', 'kopf', 'kubernetes', 'kubernetes_asyncio')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
