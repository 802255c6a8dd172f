"""The one order of version names: semantic versions by SemVer precedence (a release after its
pre-releases), other names by a fallback key (natural order unless the caller knows better)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import total_ordering
from typing import Any, TypeVar

T = TypeVar("T")

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


def newest_first(
    items: Iterable[T],
    name: Callable[[T], str] = str,
    fallback: Callable[[T], Any] | None = None,
) -> list[T]:
    """The one version order, newest first: SemVer precedence when every name is a semantic version; else
    ``fallback`` (the operator passes the upload time, which it knows from the store) or natural order. The
    name breaks ties.
    """
    listed = list(items)
    parsed = [SemVer.parse(name(v)) for v in listed]
    if all(p is not None for p in parsed):
        order = sorted(zip(parsed, listed, strict=True), key=lambda pv: (pv[0], name(pv[1])), reverse=True)
        return [item for _, item in order]
    key = fallback or (lambda v: natural_key(name(v)))
    return sorted(listed, key=lambda v: (key(v), name(v)), reverse=True)
