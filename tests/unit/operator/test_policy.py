"""Version policies: semver ranges, ordering, resolution, quarantine and promotion (SemVer itself: tests/unit/bundle)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from modelapp_bundle.versions import SemVer
from modelapp_operator.policy import (
    Published,
    Quarantine,
    SemverRange,
    beats,
    newest_first,
    resolve,
)
from modelapp_operator.spec import Promotion, VersionPolicy

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pub(version: str, minutes: int = 0, etag: str = "") -> Published:
    return Published(version, etag or f"etag-{version}", T0 + timedelta(minutes=minutes))


# --- SemverRange ----------------------------------------------------------------------------------

RANGE_CASES: list[tuple[str, list[str], list[str]]] = [
    (">=1.0 <2", ["1.0.0", "1.5.2", "1.99.99"], ["0.9.9", "2.0.0", "2.0.1", "1.5.0-rc.1"]),
    ("^1.2.3", ["1.2.3", "1.2.9", "1.9.0"], ["1.2.2", "2.0.0", "1.3.0-rc.1", "0.2.3"]),
    ("^1.2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.2.2", "0.3.0", "1.0.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2", "0.1.0"]),
    ("^0", ["0.0.1", "0.9.9"], ["1.0.0"]),
    ("~1.2", ["1.2.0", "1.2.99"], ["1.3.0", "1.1.9"]),
    ("~1.2.3", ["1.2.3", "1.2.8"], ["1.3.0", "1.2.2"]),
    ("~1", ["1.0.0", "1.9.9"], ["2.0.0", "0.9.0"]),
    ("1.x", ["1.0.0", "1.9.3"], ["2.0.0", "0.9.9"]),
    ("1.2.x", ["1.2.0", "1.2.7"], ["1.3.0", "1.1.0"]),
    ("1", ["1.0.0", "1.4.0"], ["2.0.0"]),
    ("1.2.3", ["1.2.3", "v1.2.3"], ["1.2.4", "1.2.2"]),
    ("=1.2.3", ["1.2.3"], ["1.2.4"]),
    ("*", ["0.0.1", "1.0.0", "99.0.0"], ["1.0.0-rc.1"]),
    ("x", ["3.1.4"], []),
    (">= 1.2", ["1.2.0", "5.0.0"], ["1.1.9"]),
    (">=  1.2   <  1.4", ["1.2.0", "1.3.9"], ["1.4.0", "1.1.0"]),
    (">1.2", ["1.3.0", "2.0.0"], ["1.2.0", "1.2.9"]),
    (">1.2.3", ["1.2.4"], ["1.2.3"]),
    ("<=1.2", ["1.2.9", "0.1.0"], ["1.3.0"]),
    ("<=1.2.3", ["1.2.3"], ["1.2.4"]),
    ("<2", ["1.9.9", "0.0.1"], ["2.0.0"]),
    (">=1.0 <2 || 3.x", ["1.0.0", "3.0.0", "3.9.9"], ["2.0.0", "2.5.0", "4.0.0", "0.9.0"]),
    ("1.x||^3.1", ["1.1.0", "3.1.0", "3.9.0"], ["2.0.0", "3.0.0", "4.0.0"]),
    # A range that mentions a pre-release lets pre-releases in.
    (">=1.0.0-rc.1 <2", ["1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.5.0"], ["1.0.0-beta.1", "2.0.0"]),
]


@pytest.mark.parametrize(("text", "inside", "outside"), RANGE_CASES, ids=[c[0] for c in RANGE_CASES])
def test_semver_range_matches(text: str, inside: list[str], outside: list[str]) -> None:
    rng = SemverRange.parse(text)
    for v in inside:
        sv = SemVer.parse(v)
        assert sv is not None
        assert rng.matches(sv), f"{v} should match {text!r}"
    for v in outside:
        sv = SemVer.parse(v)
        assert sv is not None
        assert not rng.matches(sv), f"{v} should not match {text!r}"


@pytest.mark.parametrize("text", [">=1.0 <2", "^1.2", "1.x", "*", "~1.2.3"])
def test_pre_releases_never_match_a_range_without_one(text: str) -> None:
    rng = SemverRange.parse(text)
    for v in ("1.2.5-rc.1", "1.5.0-alpha", "1.9.0-0"):
        sv = SemVer.parse(v)
        assert sv is not None
        assert not rng.matches(sv), f"{v} matched {text!r}"


@pytest.mark.parametrize(
    "text", [">>1", "1.2.3.4", "abc", "", "   ", "||", ">=1.0 ||", "|| 2", "^", ">=", "1.2.3 foo", "1.a"]
)
def test_invalid_ranges_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="semver range"):
        SemverRange.parse(text)


# --- ordering ---------------------------------------------------------------------------------------


def test_newest_first_uses_semver_order_when_every_name_is_semver() -> None:
    # Uploaded out of order: 1.10.0 first, a hotfix of 1.2 last.
    versions = [pub("1.10.0", 0), pub("1.2.0", 1), pub("1.9.0", 2), pub("2.0.0-rc.1", 3), pub("1.2.1", 4)]
    assert [v.version for v in newest_first(versions)] == ["2.0.0-rc.1", "1.10.0", "1.9.0", "1.2.1", "1.2.0"]


def test_newest_first_uses_upload_time_when_a_name_is_not_semver() -> None:
    versions = [pub("1.10.0", 0), pub("nightly", 5), pub("1.9.0", 2), pub("1.2.0", 9)]
    assert [v.version for v in newest_first(versions)] == ["1.2.0", "nightly", "1.9.0", "1.10.0"]


def test_newest_first_breaks_ties_by_name() -> None:
    same_time = [pub("a", 1), pub("c", 1), pub("b", 1)]
    assert [v.version for v in newest_first(same_time)] == ["c", "b", "a"]
    # 1.0 and 1.0.0 are the same semver; the name decides, deterministically.
    assert [v.version for v in newest_first([pub("1.0", 1), pub("1.0.0", 0)])] == ["1.0.0", "1.0"]
    assert newest_first([]) == []


# --- resolve ----------------------------------------------------------------------------------------

VERSIONS = [pub("1.0.0", 0), pub("1.1.0", 1), pub("2.0.0", 2), pub("2.1.0-rc.1", 3)]


@pytest.mark.parametrize(
    ("policy", "expected", "message"),
    [
        (VersionPolicy(), "2.1.0-rc.1", "2.1.0-rc.1 (latest)"),
        (VersionPolicy("semver", ">=1.0 <2"), "1.1.0", "1.1.0 (newest in '>=1.0 <2')"),
        (VersionPolicy("semver", "^2"), "2.0.0", "2.0.0 (newest in '^2')"),
        (VersionPolicy("semver", "*"), "2.0.0", "2.0.0 (newest in '*')"),
        (VersionPolicy("semver", ">=2.1.0-rc.0"), "2.1.0-rc.1", "2.1.0-rc.1 (newest in '>=2.1.0-rc.0')"),
        (VersionPolicy("pinned", "1.0.0"), "1.0.0", "1.0.0 (pinned)"),
    ],
)
def test_resolve_by_policy(policy: VersionPolicy, expected: str, message: str) -> None:
    res = resolve(policy, VERSIONS)
    assert res.version is not None
    assert res.version.version == expected
    assert res.reason == "Resolved"
    assert res.message == message


def test_resolve_with_nothing_published() -> None:
    for policy in (VersionPolicy(), VersionPolicy("semver", "1.x"), VersionPolicy("pinned", "1.0.0")):
        res = resolve(policy, [])
        assert res.version is None
        assert res.reason == "NoVersions"
        assert "no complete version" in res.message
        assert "modelapp.json" in res.message


@pytest.mark.parametrize(
    ("policy", "quarantined", "message"),
    [
        (VersionPolicy("semver", "^3"), [], "no version matches semver range '^3'"),
        (
            VersionPolicy("semver", "^1"),
            [Quarantine("1.0.0"), Quarantine("1.1.0")],
            "no version matches semver range '^1' (2 quarantined versions skipped)",
        ),
        (VersionPolicy("pinned", "9.9.9"), [], "pinned version 9.9.9 is not published"),
        (VersionPolicy("pinned", "1.0.0"), [Quarantine("1.0.0")], "pinned version 1.0.0 is quarantined"),
        (
            VersionPolicy(),
            [Quarantine(v.version) for v in VERSIONS],
            "every published version is quarantined (4 quarantined versions skipped)",
        ),
    ],
)
def test_resolve_no_matching_version(
    policy: VersionPolicy, quarantined: list[Quarantine], message: str
) -> None:
    res = resolve(policy, VERSIONS, quarantined)
    assert res.version is None
    assert res.reason == "NoMatchingVersion"
    assert res.message == message


def test_resolve_skips_quarantined_versions_for_every_policy() -> None:
    q = [Quarantine("2.1.0-rc.1", "etag-2.1.0-rc.1"), Quarantine("2.0.0", "etag-2.0.0")]
    latest = resolve(VersionPolicy(), VERSIONS, q)
    assert latest.version is not None
    assert latest.version.version == "1.1.0"
    assert latest.message == "1.1.0 (latest) (2 quarantined versions skipped)"
    semver = resolve(VersionPolicy("semver", ">=1"), VERSIONS, q[1:])
    assert semver.version is not None
    assert semver.version.version == "1.1.0"
    assert semver.message.endswith("(1 quarantined version skipped)")


def test_a_republished_version_with_a_new_etag_is_no_longer_quarantined() -> None:
    q = [Quarantine("2.0.0", "etag-old")]
    old = [pub("1.0.0"), pub("2.0.0", etag="etag-old")]
    new = [pub("1.0.0"), pub("2.0.0", etag="etag-new")]
    res_old = resolve(VersionPolicy(), old, q)
    assert res_old.version is not None
    assert res_old.version.version == "1.0.0"
    res_new = resolve(VersionPolicy(), new, q)
    assert res_new.version is not None
    assert res_new.version.version == "2.0.0"
    assert res_new.version.etag == "etag-new"
    # Without an etag, a quarantine covers the name whatever is published under it.
    assert Quarantine("2.0.0").covers(new[1])
    assert not Quarantine("2.0.1", "etag-new").covers(new[1])


# --- promotion ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("promotion", "candidate", "serving", "expected"),
    [
        (Promotion("r2"), {"r2": 0.5}, {"r2": 0.4}, True),
        (Promotion("r2"), {"r2": 0.4}, {"r2": 0.5}, False),
        (Promotion("r2"), {"r2": 0.5}, {"r2": 0.5}, False),  # a tie does not beat
        (Promotion("rmse", maximize=False), {"rmse": 1.0}, {"rmse": 2.0}, True),
        (Promotion("rmse", maximize=False), {"rmse": 2.0}, {"rmse": 1.0}, False),
        (Promotion("rmse", maximize=False), {"rmse": 1.0}, {"rmse": 1.0}, False),
        (Promotion("r2"), {"acc": 0.9}, {"r2": 0.5}, None),
        (Promotion("r2"), {"r2": 0.9}, {"acc": 0.5}, None),
        (Promotion("r2"), None, {"r2": 0.5}, None),
        (Promotion("r2"), {"r2": 0.5}, None, None),
        (Promotion("r2"), {}, {}, None),
    ],
)
def test_beats(
    promotion: Promotion,
    candidate: dict[str, float] | None,
    serving: dict[str, float] | None,
    expected: bool | None,
) -> None:
    assert beats(promotion, candidate, serving) is expected


def test_beats_with_zero_metric_values() -> None:
    # 0.0 is a real value, not a missing one.
    assert beats(Promotion("loss", maximize=False), {"loss": 0.0}, {"loss": 0.1}) is True
    assert beats(Promotion("r2"), {"r2": 0.1}, {"r2": 0.0}) is True
