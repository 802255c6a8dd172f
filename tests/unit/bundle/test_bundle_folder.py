"""A bundle folder: scanning, the manifest for publishing or written in place, verification and discovery."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from modelapp_bundle import (
    BundleError,
    ChecksumMismatch,
    Manifest,
    Preprocess,
    discover,
    manifest_for_directory,
    read_bundle,
    scan_bundle,
    sha256_file,
    verify_bundle,
    verify_files,
    write_manifest,
)
from unit.scoring.scoring_models import linear_model, save

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
A = "a" * 64


# --- publishing a folder ----------------------------------------------------------------------------


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
    assert manifest.preprocess == Preprocess(size=(28, 28), color="grayscale")
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


# --- writing a manifest in place, reading and verifying it as the scorer does ------------------------


def test_write_manifest_lists_every_file_and_the_digest(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "contract.json").write_text("{}")
    (path / "extra").mkdir()
    (path / "extra" / "notes.txt").write_text("hi")
    manifest = write_manifest(path, "lin", "1.2.0", metrics={"r2": 1}, contract="contract.json")

    on_disk = orjson.loads((path / "modelapp.json").read_bytes())
    assert Manifest.parse(orjson.dumps(on_disk)) == manifest
    assert on_disk["schemaVersion"] == 1
    assert on_disk["created"].endswith("Z")
    assert sorted(on_disk["files"]) == ["contract.json", "extra/notes.txt", "model.onnx"]
    model_bytes = (path / "model.onnx").read_bytes()
    assert on_disk["files"]["model.onnx"] == {
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "size": len(model_bytes),
    }
    # The digest rule shared with `modelapp publish`: "<path> <sha256>\n" per file, paths sorted.
    text = "".join(f"{p} {on_disk['files'][p]['sha256']}\n" for p in sorted(on_disk["files"]))
    assert on_disk["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert on_disk["metrics"] == {"r2": 1.0}
    verify_bundle(read_bundle(path))


def test_written_and_published_manifests_agree(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "labels.txt").write_text("a\nb\n")
    written = write_manifest(path, "lin", "1", created=NOW)
    published = manifest_for_directory(path, version="1", name="lin", created=NOW)
    assert (published.files, published.sha256) == (written.files, written.sha256)
    assert Manifest.parse(written.to_json()) == written


@pytest.mark.parametrize("victim", ["model.onnx", "contract.json"])
def test_verify_detects_a_changed_file(tmp_path: Path, victim: str) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "contract.json").write_text('{"samples": []}')
    write_manifest(path, "lin", "1", contract="contract.json")
    data = bytearray((path / victim).read_bytes())
    data[-1] ^= 1  # same size, different content: only the hash can tell
    (path / victim).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"checksum mismatch for {victim}: expected sha256"):
        verify_bundle(read_bundle(path))


def test_verify_detects_missing_file_and_wrong_bundle_digest(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "extra.bin").write_bytes(b"x")
    write_manifest(path, "lin", "1")
    (path / "extra.bin").unlink()
    with pytest.raises(BundleError, match=rf"^{path}: checksum mismatch for extra\.bin: .* got missing"):
        verify_bundle(read_bundle(path))

    manifest = orjson.loads((path / "modelapp.json").read_bytes())
    del manifest["files"]["extra.bin"]  # consistent files, stale bundle digest
    (path / "modelapp.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(BundleError, match="is not the bundle digest of files"):
        read_bundle(path)


@pytest.mark.parametrize("bad", ["../model.onnx", "/etc/passwd", "a/./b", "a\\b", "modelapp.json"])
def test_manifest_rejects_unsafe_paths(tmp_path: Path, bad: str) -> None:
    path = save(linear_model(), tmp_path / "b")
    write_manifest(path, "lin", "1")
    manifest = orjson.loads((path / "modelapp.json").read_bytes())
    manifest["files"][bad] = manifest["files"]["model.onnx"]
    (path / "modelapp.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(BundleError, match="invalid bundle file path"):
        read_bundle(path)


def test_manifest_schema_errors_are_readable(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "modelapp.json").write_text('{"schemaVersion": 2, "name": "x"}')
    with pytest.raises(BundleError, match="schemaVersion"):
        read_bundle(path)
    (path / "modelapp.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(path)


def test_bare_model_is_named_after_its_folder(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "my-model")
    found = read_bundle(path)
    assert (found.name, found.version, found.manifest) == ("my-model", "1", None)


def test_discover_one_bundle_or_a_folder_of_bundles(tmp_path: Path) -> None:
    one = save(linear_model(), tmp_path / "root" / "a")
    save(linear_model(), tmp_path / "root" / "b")
    (tmp_path / "root" / "not-a-bundle").mkdir()
    (tmp_path / "root" / "README").write_text("ignored")
    assert discover(one) == [one]
    assert [p.name for p in discover(tmp_path / "root")] == ["a", "b"]
    with pytest.raises(BundleError, match="does not exist"):
        discover(tmp_path / "nope")


def test_preprocess_block_is_validated(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    with pytest.raises(ValueError, match="layout"):
        write_manifest(path, "lin", "1", preprocess={"size": 8, "layout": "CHW"})
    assert not (path / "modelapp.json").exists()
    write_manifest(path, "lin", "1", preprocess={"size": 8, "color": "grayscale"})
    parsed = read_bundle(path).manifest
    assert parsed is not None
    assert parsed.preprocess is not None
    assert parsed.preprocess.size == (8, 8)
    assert orjson.loads((path / "modelapp.json").read_bytes())["preprocess"] == {
        "size": [8, 8],
        "color": "grayscale",
    }
