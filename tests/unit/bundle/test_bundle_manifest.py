"""The manifest schema, the file and bundle digests, names and paths."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from modelapp_bundle import (
    Batching,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    ManifestError,
    Preprocess,
    Sha256Stream,
    build_manifest,
    bundle_digest,
    check_entry,
    sha256_file,
    validate_segment,
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


def test_created_without_a_timezone_is_read_as_utc() -> None:
    manifest = Manifest.parse(orjson.dumps(_manifest(created="2026-01-02T03:04:05")))
    assert manifest.created == NOW


def test_created_is_written_in_utc_to_the_second_and_needs_a_timezone() -> None:
    files = {"model.onnx": FileEntry(sha256=A, size=3)}
    later = datetime(2026, 1, 2, 5, 4, 5, 999, tzinfo=timezone(timedelta(hours=2)))
    manifest = build_manifest(files, name="m", version="2", created=later)
    assert manifest.created == NOW
    assert orjson.loads(manifest.to_json())["created"] == "2026-01-02T03:04:05Z"
    with pytest.raises(ManifestError, match=r"created 2026-01-02T03:04:05 must carry a timezone"):
        build_manifest(files, name="m", version="2", created=NOW.replace(tzinfo=None))


def test_preprocess_is_typed_and_written_as_given() -> None:
    manifest = Manifest.parse(orjson.dumps(_manifest(preprocess={"size": [28, 28], "color": "grayscale"})))
    assert manifest.preprocess == Preprocess(size=(28, 28), color="grayscale")
    assert orjson.loads(manifest.to_json())["preprocess"] == {"size": [28, 28], "color": "grayscale"}


@pytest.mark.parametrize(
    ("preprocess", "fragment"),
    [
        ({"size": 8, "layout": "CHW"}, "preprocess.layout: Input should be 'NCHW' or 'NHWC'"),
        ({"size": [8, 0]}, "preprocess.size: Value error, size must be positive"),
        ({"size": 8, "std": [1, 0, 1]}, "preprocess.std: Value error, std must not contain 0"),
        ({"size": 8, "colour": "rgb"}, "preprocess.colour: Extra inputs are not permitted"),
        (
            {"size": 8, "mean": [0.5, 0.5]},
            "preprocess: Value error, mean needs 1 or 3 values for color 'rgb'",
        ),
        ({"size": 8, "color": "grayscale", "std": [1, 1, 1]}, "std needs 1 or 1 values"),
    ],
)
def test_preprocess_refusals_say_what_is_wrong(preprocess: dict[str, object], fragment: str) -> None:
    with pytest.raises(ManifestError, match=r"^invalid manifest: ") as info:
        Manifest.parse(orjson.dumps(_manifest(preprocess=preprocess)))
    assert fragment in str(info.value)


def test_batching_is_typed_camel_case_and_written_as_given() -> None:
    manifest = Manifest.parse(orjson.dumps(_manifest(batching={"maxBatchSize": 32, "maxDelayMs": 2})))
    assert manifest.batching == Batching(max_batch_size=32, max_delay_ms=2.0)
    assert orjson.loads(manifest.to_json())["batching"] == {"maxBatchSize": 32, "maxDelayMs": 2.0}
    assert Manifest.parse(orjson.dumps(_manifest(batching={"maxBatchSize": 8}))).batching == Batching(
        max_batch_size=8, max_delay_ms=2.0
    )


@pytest.mark.parametrize(
    ("batching", "fragment"),
    [
        ({"maxDelayMs": 2}, "batching.maxBatchSize: Field required"),
        ({"maxBatchSize": 0}, "batching.maxBatchSize: Input should be greater than or equal to 1"),
        (
            {"maxBatchSize": 8, "maxDelayMs": -1},
            "batching.maxDelayMs: Input should be greater than or equal to 0",
        ),
        (
            {"maxBatchSize": 8, "maxDelayMs": 5000},
            "batching.maxDelayMs: Input should be less than or equal to 1000",
        ),
        ({"maxBatchSize": 8, "maxDelay": 2}, "batching.maxDelay: Extra inputs are not permitted"),
        ({"maxBatchSize": "lots"}, "batching.maxBatchSize: Input should be a valid integer"),
    ],
)
def test_batching_refusals_say_what_is_wrong(batching: dict[str, object], fragment: str) -> None:
    with pytest.raises(ManifestError, match=r"^invalid manifest: ") as info:
        Manifest.parse(orjson.dumps(_manifest(batching=batching)))
    assert fragment in str(info.value)


def test_a_stream_hashes_like_a_file_and_sizes_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    stream = Sha256Stream()
    for start in range(0, 3000, 700):
        stream.update(path.read_bytes()[start : start + 700])
    assert stream.entry() == sha256_file(path)
    wrong_size = FileEntry(sha256=stream.entry().sha256, size=2999)
    with pytest.raises(ChecksumMismatch, match=r"checksum mismatch for f: expected size 2999, got 3000"):
        check_entry("f", wrong_size, sha256_file(path))


@pytest.mark.parametrize("value", ["1.0.0", "2026-01-01", "v1+build.5", "A_b"])
def test_segments_accepted(value: str) -> None:
    assert validate_segment(value, "version") == value


@pytest.mark.parametrize("value", ["", "a/b", ".x", "-x", "a b", "x" * 129, "é"])
def test_segments_rejected(value: str) -> None:
    with pytest.raises(ManifestError):
        validate_segment(value, "version")


def test_pure_core_imports_no_sdk() -> None:
    """The planner imports the bundle package and the store's types; neither may pull in an SDK."""
    import subprocess
    import sys

    code = (
        "import sys, modelapp_bundle, modelapp_operator.store;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('azure', 'kopf', 'kubernetes', 'kubernetes_asyncio')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
