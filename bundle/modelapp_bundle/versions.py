"""The one order of version names: semantic versions by SemVer precedence (a release after its
pre-releases), other names in natural order."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import total_ordering

_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_PARTS = re.compile(r"[.\-+_]")


@total_ordering
@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SemVer | None:
        """``1``, ``1.2``, ``v1.2.3`` and ``1.2.3-rc.1`` parse (missing parts are 0); others give None."""
        m = _SEMVER.match(text.strip())
        if not m:
            return None
        pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), pre)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones.
        pre = tuple((0, p) if isinstance(p, int) else (1, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()


def natural_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """1.10 after 1.9, numbers before text ("2" < "2a"): for names that are not all semantic versions."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _PARTS.split(version))


def newest_first(versions: Iterable[str]) -> list[str]:
    """SemVer precedence when every name is a semantic version, else natural order; the name breaks ties.

    The operator's version policy orders the same way, except that it falls back to upload time (which
    it knows from the store) rather than to natural order when some name is not a semantic version.
    """
    names = list(versions)
    parsed = [SemVer.parse(v) for v in names]
    if all(p is not None for p in parsed):
        order = sorted(zip(parsed, names, strict=True), key=lambda pv: (pv[0], pv[1]), reverse=True)
        return [name for _, name in order]
    return sorted(names, key=lambda v: (natural_key(v), v), reverse=True)
