"""Computing complete versions per prefix from one container listing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from modelapp_operator.store import BlobInfo, ContainerSnapshot, normalize_prefix, version_path, versions_in

pytestmark = pytest.mark.unit

T = datetime(2026, 1, 1, tzinfo=UTC)


def snap(*names: str) -> ContainerSnapshot:
    return ContainerSnapshot("models", tuple(BlobInfo(n, f'"{n}"', T, 1) for n in names), T)


SNAPSHOT = snap(
    "diabetes/1.0/model.onnx",
    "diabetes/1.0/modelapp.json",
    "diabetes/2.0/model.onnx",
    "diabetes/2.0/modelapp.json",
    "diabetes/3.0/model.onnx",  # half uploaded: no manifest yet
    "diabetes2/9/modelapp.json",
    "team/a/mnist/7/modelapp.json",
    "team/a/mnist/7/extra/modelapp.json",  # a file named like a manifest deeper inside a bundle
    "5/modelapp.json",
    "modelapp.json",
)


def test_only_versions_with_a_manifest_directly_under_the_prefix() -> None:
    refs = versions_in(SNAPSHOT, "diabetes/")
    assert [r.version for r in refs] == ["1.0", "2.0"]
    assert refs[0].etag == '"diabetes/1.0/modelapp.json"'
    assert refs[0].last_modified == T


@pytest.mark.parametrize("prefix", ["diabetes", "/diabetes/", "diabetes/", "diabetes//"])
def test_prefix_spellings_are_equivalent(prefix: str) -> None:
    assert [r.version for r in versions_in(SNAPSHOT, prefix)] == ["1.0", "2.0"]


def test_nested_and_root_prefixes() -> None:
    assert [r.version for r in versions_in(SNAPSHOT, "team/a/mnist")] == ["7"]
    assert [r.version for r in versions_in(SNAPSHOT, "team/a/mnist/7")] == ["extra"]
    assert [r.version for r in versions_in(SNAPSHOT, "")] == ["5"]
    assert [r.version for r in versions_in(SNAPSHOT, "diabetes2")] == ["9"]
    assert versions_in(SNAPSHOT, "nothing") == []
    assert versions_in(snap(), "diabetes") == []


def test_snapshots_compare_by_content_not_by_cost() -> None:
    a = ContainerSnapshot("c", (BlobInfo("x", "e", T, 1),), T, calls=1)
    b = ContainerSnapshot("c", (BlobInfo("x", "e", T, 1),), T, calls=3)
    assert a == b


def test_prefix_helpers() -> None:
    assert normalize_prefix("") == ""
    assert normalize_prefix("/") == ""
    assert normalize_prefix("a/b") == "a/b/"
    assert version_path("a", "1") == "a/1/"
    assert version_path("", "1") == "1/"
