"""The one version order: SemVer parsing and precedence, and newest first for the scorer."""

from __future__ import annotations

import itertools

import pytest
from modelapp_bundle.versions import SemVer, natural_key, newest_first

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3", SemVer(1, 2, 3)),
        ("v1.2.3", SemVer(1, 2, 3)),
        ("1", SemVer(1, 0, 0)),
        ("1.2", SemVer(1, 2, 0)),
        ("0.0.0", SemVer(0, 0, 0)),
        (" 2.0.1 ", SemVer(2, 0, 1)),
        ("1.2.3-rc.1", SemVer(1, 2, 3, ("rc", 1))),
        ("1.2.3-alpha", SemVer(1, 2, 3, ("alpha",))),
        ("1.2.3-0.3.7", SemVer(1, 2, 3, (0, 3, 7))),
        ("1.2.3+build.5", SemVer(1, 2, 3)),
        ("1.2.3-beta+exp.sha.5114f85", SemVer(1, 2, 3, ("beta",))),
    ],
)
def test_semver_parse(text: str, expected: SemVer) -> None:
    assert SemVer.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "1.2.3.4", "01.2.3", "1.02", "1.2.x", "latest", "1..2", "-1.0.0", "1.2.3-"]
)
def test_semver_parse_rejects(text: str) -> None:
    assert SemVer.parse(text) is None


def test_semver_precedence_follows_the_spec() -> None:
    # semver.org §11's example chain, plus release ordering across parts.
    chain = [
        "0.9.9",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "1.10.0",
        "2.0.0",
    ]
    parsed = [SemVer.parse(t) for t in chain]
    assert all(p is not None for p in parsed)
    for low, high in itertools.pairwise(parsed):
        assert low is not None
        assert high is not None
        assert low < high, f"{low} < {high}"
        assert not high < low
        assert high > low
    shuffled = parsed[::2] + parsed[1::2][::-1]
    assert shuffled != parsed
    assert sorted(v for v in shuffled if v is not None) == parsed


def test_semver_equality_ignores_v_and_build_metadata() -> None:
    assert SemVer.parse("v1.2.3") == SemVer.parse("1.2.3+build")
    assert SemVer.parse("1.2") == SemVer.parse("1.2.0")
    assert SemVer.parse("1.2.3-rc.1") != SemVer.parse("1.2.3")


@pytest.mark.parametrize(
    ("versions", "newest"),
    [
        (["1.0.0", "1.0.0-rc.1"], ["1.0.0", "1.0.0-rc.1"]),
        (["1.0.0-rc.2", "1.0.0-rc.10", "0.9.0"], ["1.0.0-rc.10", "1.0.0-rc.2", "0.9.0"]),
        (["1.9", "1.10", "v1.2.3"], ["1.10", "1.9", "v1.2.3"]),
        (["1.2.3", "v1.2.3"], ["v1.2.3", "1.2.3"]),  # the same version: the name breaks the tie
        # Not every name a semantic version: natural order, numbers before text.
        (["2", "10", "2a", "nightly"], ["nightly", "2a", "10", "2"]),
        (["2026-01-02", "2026-01-10", "2025-12-31"], ["2026-01-10", "2026-01-02", "2025-12-31"]),
    ],
)
def test_newest_first(versions: list[str], newest: list[str]) -> None:
    assert newest_first(versions) == newest
    assert newest_first(reversed(versions)) == newest


def test_natural_key_puts_numbers_before_text() -> None:
    assert natural_key("1.9") < natural_key("1.10") < natural_key("1.10a")
