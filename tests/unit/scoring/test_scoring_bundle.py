"""Bundle format: manifest writing, digest rule, verification, discovery."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from scoring_service import bundle
from scoring_service.bundle import BundleError
from unit.scoring.scoring_models import linear_model, save

pytestmark = pytest.mark.unit


def test_write_manifest_lists_every_file_and_the_digest(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "contract.json").write_text("{}")
    (path / "extra").mkdir()
    (path / "extra" / "notes.txt").write_text("hi")
    manifest = bundle.write_manifest(path, "lin", "1.2.0", metrics={"r2": 1}, contract="contract.json")

    on_disk = orjson.loads((path / "modelapp.json").read_bytes())
    assert on_disk == manifest
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
    bundle.verify(bundle.read_bundle(path))


def test_digest_matches_the_operator_implementation(tmp_path: Path) -> None:
    operator_bundle = pytest.importorskip("modelapp_operator.bundle")
    path = save(linear_model(), tmp_path / "b")
    (path / "labels.txt").write_text("a\nb\n")
    ours = bundle.write_manifest(path, "lin", "1")
    theirs = operator_bundle.Manifest.model_validate(ours)  # validates the digest on their side
    assert theirs.sha256 == ours["sha256"]


@pytest.mark.parametrize("victim", ["model.onnx", "contract.json"])
def test_verify_detects_a_changed_file(tmp_path: Path, victim: str) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "contract.json").write_text('{"samples": []}')
    bundle.write_manifest(path, "lin", "1", contract="contract.json")
    data = bytearray((path / victim).read_bytes())
    data[-1] ^= 1  # same size, different content: only the hash can tell
    (path / victim).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{victim} sha256"):
        bundle.verify(bundle.read_bundle(path))


def test_verify_detects_missing_file_and_wrong_bundle_digest(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "extra.bin").write_bytes(b"x")
    bundle.write_manifest(path, "lin", "1")
    (path / "extra.bin").unlink()
    with pytest.raises(BundleError, match=r"extra\.bin is listed in the manifest but missing"):
        bundle.verify(bundle.read_bundle(path))

    manifest = orjson.loads((path / "modelapp.json").read_bytes())
    del manifest["files"]["extra.bin"]  # consistent files, stale bundle digest
    (path / "modelapp.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(BundleError, match="bundle sha256"):
        bundle.verify(bundle.read_bundle(path))


@pytest.mark.parametrize("bad", ["../model.onnx", "/etc/passwd", "a/./b", "a\\b", "modelapp.json"])
def test_manifest_rejects_unsafe_paths(tmp_path: Path, bad: str) -> None:
    path = save(linear_model(), tmp_path / "b")
    manifest = bundle.write_manifest(path, "lin", "1")
    manifest["files"][bad] = manifest["files"]["model.onnx"]
    (path / "modelapp.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(BundleError, match="invalid bundle file path"):
        bundle.read_bundle(path)


def test_manifest_schema_errors_are_readable(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    (path / "modelapp.json").write_text('{"schemaVersion": 2, "name": "x"}')
    with pytest.raises(BundleError, match="schemaVersion"):
        bundle.read_bundle(path)
    (path / "modelapp.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        bundle.read_bundle(path)


def test_bare_model_is_named_after_its_folder(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "my-model")
    found = bundle.read_bundle(path)
    assert (found.name, found.version, found.manifest) == ("my-model", "1", None)


def test_discover_one_bundle_or_a_folder_of_bundles(tmp_path: Path) -> None:
    one = save(linear_model(), tmp_path / "root" / "a")
    save(linear_model(), tmp_path / "root" / "b")
    (tmp_path / "root" / "not-a-bundle").mkdir()
    (tmp_path / "root" / "README").write_text("ignored")
    assert bundle.discover(one) == [one]
    assert [p.name for p in bundle.discover(tmp_path / "root")] == ["a", "b"]
    with pytest.raises(BundleError, match="does not exist"):
        bundle.discover(tmp_path / "nope")


def test_preprocess_block_is_validated(tmp_path: Path) -> None:
    path = save(linear_model(), tmp_path / "b")
    with pytest.raises(ValueError, match="layout"):
        bundle.write_manifest(path, "lin", "1", preprocess={"size": 8, "layout": "CHW"})
    manifest = bundle.write_manifest(path, "lin", "1", preprocess={"size": 8, "color": "grayscale"})
    parsed = bundle.read_bundle(path).manifest
    assert parsed is not None
    assert parsed.preprocess is not None
    assert parsed.preprocess.size == (8, 8)
    assert manifest["preprocess"] == {"size": 8, "color": "grayscale"}
