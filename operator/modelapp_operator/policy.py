"""Version policies (pure): which published versions a ModelApp may serve, in which order, and which one."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from modelapp_bundle import versions as versions_order
from modelapp_bundle.versions import SemVer

from modelapp_operator.names import ANN_QUARANTINE, ANN_REJECT, ANN_UNQUARANTINE, Reason
from modelapp_operator.snapshot import Published
from modelapp_operator.spec import Promotion, VersionPolicy
from modelapp_operator.status import ModelAppStatus

_COMPARATOR = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*v?([0-9xX*]+(?:\.[0-9xX*]+){0,2}(?:-[0-9A-Za-z.-]+)?)$")


Predicate = Callable[[SemVer], bool]


def _partial(text: str) -> tuple[list[int], tuple[int | str, ...]]:
    """``1.x`` → ([1], ()), ``1.2.3-rc.1`` → ([1, 2, 3], ('rc', 1)): the parts that are pinned."""
    core, _, pre_text = text.partition("-")
    parts: list[int] = []
    for piece in core.split("."):
        if piece in ("x", "X", "*"):
            break
        parts.append(int(piece))
    pre = tuple(int(p) if p.isdigit() else p for p in pre_text.split(".")) if pre_text else ()
    return parts, pre


def _floor(parts: list[int], pre: tuple[int | str, ...] = ()) -> SemVer:
    padded = [*parts, 0, 0, 0][:3]
    return SemVer(padded[0], padded[1], padded[2], pre if len(parts) == 3 else ())


def _bump(parts: list[int]) -> SemVer:
    """The first version past the pinned parts: 1 → 2.0.0, 1.2 → 1.3.0, 1.2.3 → 1.2.4."""
    bumped = [*parts]
    bumped[-1] += 1
    major, minor, patch = [*bumped, 0, 0][:3]
    return SemVer(major, minor, patch, pre=(0,))  # pre-release 0 sorts below every other one


def _comparator(op: str, text: str) -> Predicate:
    parts, pre = _partial(text)
    if not parts:  # *, x
        return lambda v: True
    low = _floor(parts, pre)
    if op in ("", "="):
        if len(parts) == 3:
            return lambda v: v == low
        high = _bump(parts)
        return lambda v: low <= v < high
    if op == "^":
        # Caret: no change to the left-most non-zero part.
        first_nonzero = next((i for i, p in enumerate(parts) if p != 0), len(parts) - 1)
        high = _bump(parts[: first_nonzero + 1])
        return lambda v: low <= v < high
    if op == "~":
        high = _bump(parts[:2] if len(parts) >= 2 else parts)
        return lambda v: low <= v < high
    if op == ">=":
        return lambda v: v >= low
    if op == ">":
        edge = low if len(parts) == 3 else _bump(parts)
        return (lambda v: v > edge) if len(parts) == 3 else (lambda v: v >= edge)
    if op == "<":
        return lambda v: v < low
    if op == "<=":
        if len(parts) == 3:
            return lambda v: v <= low
        high = _bump(parts)
        return lambda v: v < high
    raise ValueError(f"unknown operator {op!r}")


@dataclass(frozen=True)
class SemverRange:
    """An npm-style range: space-separated comparators (all must hold), alternatives joined by ``||``."""

    text: str
    alternatives: tuple[tuple[Predicate, ...], ...]
    allows_prerelease: bool

    @classmethod
    def parse(cls, text: str) -> SemverRange:
        alternatives: list[tuple[Predicate, ...]] = []
        prerelease = "-" in text
        for alt in text.split("||"):
            # ">= 1.2" is one comparator: glue operators to their version before splitting on spaces.
            tokens = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alt.strip()).split()
            if not tokens:
                raise ValueError(f"empty alternative in semver range {text!r}")
            preds = []
            for tok in tokens:
                m = _COMPARATOR.match(tok)
                if not m:
                    raise ValueError(f"invalid comparator {tok!r} in semver range {text!r}")
                preds.append(_comparator(m.group(1) or "", m.group(2)))
            alternatives.append(tuple(preds))
        return cls(text, tuple(alternatives), prerelease)

    def matches(self, version: SemVer) -> bool:
        # As npm does, pre-releases only match ranges that mention a pre-release.
        if version.pre and not self.allows_prerelease:
            return False
        return any(all(p(version) for p in alt) for alt in self.alternatives)


@dataclass(frozen=True)
class Quarantine:
    version: str
    etag: str = ""

    def covers(self, v: Published) -> bool:
        # A version republished under the same name (new manifest ETag) gets a new chance.
        return self.version == v.version and (not self.etag or self.etag == v.etag)


def newest_first(versions: Iterable[Published]) -> list[Published]:
    """The bundle's version order; names that are not all semantic versions go by upload time."""
    return versions_order.newest_first(versions, name=lambda v: v.version, fallback=lambda v: v.uploaded)


@dataclass(frozen=True)
class Resolution:
    version: Published | None
    reason: Reason  # NoVersions | NoMatchingVersion | Resolved
    message: str
    # When nothing resolves: the version the policy would have picked, had it not been quarantined.
    blocked: str | None = None


def _allows(policy: VersionPolicy) -> Callable[[str], bool]:
    if policy.kind == "pinned":
        return lambda version: version == policy.value
    if policy.kind == "semver":
        rng = SemverRange.parse(policy.value)
        return lambda version: (sv := SemVer.parse(version)) is not None and rng.matches(sv)
    return lambda version: True


def candidates(
    policy: VersionPolicy, versions: Sequence[Published], excluded: Sequence[Quarantine] = ()
) -> list[Published]:
    """The versions the policy allows, best first, without the excluded (quarantined) ones: the policy
    order in which gather reads manifests and the planner resolves."""
    allows = _allows(policy)
    usable = [v for v in versions if allows(v.version) and not any(q.covers(v) for q in excluded)]
    return newest_first(usable)


def resolve(
    policy: VersionPolicy, versions: Sequence[Published], quarantined: Sequence[Quarantine] = ()
) -> Resolution:
    """Pick the version to serve. Quarantined versions are skipped by every policy."""
    if not versions:
        if policy.kind == "follow":
            return Resolution(
                None, Reason.NO_VERSIONS, f"ModelApp {policy.value} serves no version to follow yet"
            )
        return Resolution(
            None, Reason.NO_VERSIONS, "no complete version (with modelapp.json) under the prefix yet"
        )
    best = next(iter(candidates(policy, versions, quarantined)), None)
    skipped = sum(1 for v in versions if any(q.covers(v) for q in quarantined))
    note = f" ({skipped} quarantined version{'s' if skipped != 1 else ''} skipped)" if skipped else ""
    if best is not None:
        how = {
            "pinned": "pinned",
            "semver": f"newest in {policy.value!r}",
            "latest": "latest",
            "follow": f"served by {policy.value}",
        }[policy.kind]
        return Resolution(
            best,
            Reason.RESOLVED,
            f"{best.version} ({how}){note if policy.kind == 'semver' or policy.kind == 'latest' else ''}",
        )
    blocked = next(iter(candidates(policy, versions)), None)
    name = blocked.version if blocked else None
    if policy.kind == "pinned":
        why = "is quarantined" if blocked else "is not published"
        return Resolution(None, Reason.NO_MATCHING_VERSION, f"pinned version {policy.value} {why}", name)
    if policy.kind == "follow":
        message = f"{name}, which ModelApp {policy.value} serves, is quarantined here"
        return Resolution(None, Reason.NO_MATCHING_VERSION, message, name)
    if policy.kind == "semver":
        message = f"no version matches semver range {policy.value!r}{note}"
        return Resolution(None, Reason.NO_MATCHING_VERSION, message, name)
    return Resolution(None, Reason.NO_MATCHING_VERSION, f"every published version is quarantined{note}", name)


def beats(
    promotion: Promotion, candidate: dict[str, float] | None, serving: dict[str, float] | None
) -> bool | None:
    """Whether the candidate's metric beats the serving one's; None when either lacks the metric."""
    if not candidate or not serving or promotion.metric not in candidate or promotion.metric not in serving:
        return None
    c, s = candidate[promotion.metric], serving[promotion.metric]
    return c > s if promotion.maximize else c < s


def effective_quarantine(status: ModelAppStatus, annotations: Mapping[str, str]) -> list[Quarantine]:
    """The quarantine list once pending user actions (annotations) are applied: gather reads manifests
    in the order this gives, and the planner's user-actions stage leaves the status saying the same."""
    entries = [Quarantine(q.version, q.etag or "") for q in status.quarantined]
    for key in (ANN_REJECT, ANN_QUARANTINE):
        version = annotations.get(key, "").strip()
        if version and not any(q.version == version for q in entries):
            entries.append(Quarantine(version))
    undo = annotations.get(ANN_UNQUARANTINE, "").strip()
    return [q for q in entries if q.version != undo]
