"""`modelapp status`, as text or a JSON summary: pure functions of a ModelApp and the time (no API calls)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from modelapp_operator.names import Cond, Stage

Obj = dict[str, Any]
LABEL_WIDTH = 12
_GATED = (Stage.CANARY, Stage.SHADOWING)


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def human_duration(seconds: float) -> str:
    """kubectl's way: 45s, 5m30s, 42m, 3h12m, 20h, 3d4h, 12d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m, h, d = s // 60, s // 3600, s // 86400
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d"


def age(value: object, now: datetime) -> str:
    """How long ago ``value`` (RFC 3339) was; "-" when there is no readable time."""
    when = parse_time(value)
    return human_duration((now - when).total_seconds()) if when else "-"


def _num(value: object, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return f"{value:.{digits}g}"


def _percent(fraction: object) -> str:
    """A ratio in [0, 1] as a percentage."""
    return f"{_num(fraction * 100, 3)}%" if isinstance(fraction, int | float) else "-"


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{_num(value * 1000, 3)}ms" if value < 1 else f"{_num(value, 3)}s"


def condition(app: Obj, kind: str) -> Obj:
    for c in (app.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def next_commands(app: Obj, prog: str = "modelapp") -> list[tuple[str, str]]:
    """The commands a person may run now for the pending version, each with what it does."""
    pending = (app.get("status") or {}).get("pending") or {}
    version, stage = pending.get("version"), pending.get("stage")
    if not version:
        return []
    meta = app.get("metadata") or {}
    target = f"{meta.get('name')} -n {meta.get('namespace') or 'default'} --version {version}"
    if stage == Stage.AWAITING_APPROVAL and not pending.get("approved"):
        return [
            (f"{prog} approve {target}", "roll it out"),
            (f"{prog} reject {target}", "quarantine it"),
        ]
    if stage in _GATED:
        skipped = "the remaining canary steps" if stage == Stage.CANARY else "the shadow gate"
        return [
            (f"{prog} promote {target}", f"skip {skipped} and roll it out"),
            (f"{prog} abort {target}", "stop it, scale the candidate to zero and quarantine it"),
        ]
    return []


def soak_remaining(pending: Obj, now: datetime) -> float | None:
    until = parse_time(pending.get("soakUntil"))
    return max(0.0, (until - now).total_seconds()) if until else None


def summarize(app: Obj, now: datetime, prog: str = "modelapp") -> Obj:
    """A machine-readable summary (``-o json``): the status as the API has it, plus what the text derives."""
    meta = app.get("metadata") or {}
    status = app.get("status") or {}
    pending = dict(status.get("pending") or {})
    if pending.get("stage") == Stage.SOAKING:
        pending["soakRemainingSeconds"] = soak_remaining(pending, now)
    ready = condition(app, Cond.READY)
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "ready": {k: ready.get(k) for k in ("status", "reason", "message")} if ready else None,
        "servingVersion": status.get("servingVersion"),
        "latestVersion": status.get("latestVersion"),
        "pending": pending or None,
        "next": [{"command": cmd, "does": does} for cmd, does in next_commands(app, prog)],
        "quarantined": status.get("quarantined") or [],
        "conditions": [c for c in status.get("conditions") or [] if c.get("type") != Cond.READY],
        "history": status.get("history") or [],
    }


def table(rows: Iterable[list[str]], indent: int = 2) -> list[str]:
    """Rows as left-aligned columns (the last one is not padded)."""
    rows = list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)] if rows else []
    pad = " " * indent
    return [
        pad + "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in rows
    ]


def _field(label: str, *lines: str) -> list[str]:
    shown = [line for line in lines if line]
    if not shown:
        return []
    blank = " " * LABEL_WIDTH
    return [f"{label:<{LABEL_WIDTH}} {shown[0]}", *(f"{blank} {line}" for line in shown[1:])]


def _when(value: object, now: datetime) -> str:
    return f"{value} ({age(value, now)} ago)" if parse_time(value) else ""


def _header(app: Obj) -> list[str]:
    meta = app.get("metadata") or {}
    ready = condition(app, Cond.READY)
    if not ready:
        said = "Unknown: no status yet (is the operator running and following this namespace?)"
    else:
        said = "  ".join(str(ready.get(k)) for k in ("status", "reason", "message") if ready.get(k))
    return [f"ModelApp {meta.get('namespace') or 'default'}/{meta.get('name')}", *_field("Ready", said)]


def _versions(status: Obj, now: datetime) -> list[str]:
    serving = status.get("servingVersion") or {}
    latest = status.get("latestVersion") or {}
    out = _field(
        "Serving",
        f"{serving['version']}  since {_when(serving.get('since'), now) or '-'}"
        if serving.get("version")
        else "none",
        f"image {serving['image']}" if serving.get("image") else "",
        f"from {serving['source']} (followed)" if serving.get("source") else "",
    )
    if latest.get("version"):
        seen = f"  seen {age(latest.get('seenAt'), now)} ago" if parse_time(latest.get("seenAt")) else ""
        out += _field("Latest", f"{latest['version']}{seen}")
    return out


def _canary_lines(canary: Obj, now: datetime) -> list[str]:
    pods = f"{_num(canary.get('canaryReplicas'))} canary / {_num(canary.get('stableReplicas'))} stable pods"
    step = (
        f"step {_num(canary.get('step'))}/{_num(canary.get('steps'))} weight {_num(canary.get('weight'), 3)}% "
        f"({pods}, share {_num(canary.get('share'), 3)}%)"
    )
    figures = (
        f"requests {_num(canary.get('requests'), 12)}, error ratio {_percent(canary.get('errorRatio'))}, "
        f"p99 {_seconds(canary.get('p99Seconds'))}"
    )
    if parse_time(canary.get("stepSince")):
        figures += f" (this step for {age(canary.get('stepSince'), now)})"
    return [step, figures]


def _shadow_lines(shadow: Obj, now: datetime) -> list[str]:
    traffic = (
        f"sample {_percent(shadow.get('sample'))}, requests {_num(shadow.get('requests'), 12)}, "
        f"failures {_num(shadow.get('failures'), 12)}"
    )
    if parse_time(shadow.get("since")):
        traffic += f" (for {age(shadow.get('since'), now)})"
    compared = []
    if shadow.get("meanAbsDiff") is not None:
        compared.append(f"mean abs diff {_num(shadow['meanAbsDiff'])}")
    if shadow.get("agreement") is not None:
        compared.append(f"agreement {_percent(shadow['agreement'])}")
    if shadow.get("latencyRatio") is not None:
        compared.append(f"latency ratio {_num(shadow['latencyRatio'], 3)}x")
    return [traffic, ", ".join(compared)]


def _stage_lines(pending: Obj, now: datetime) -> list[str]:
    stage = pending.get("stage")
    if stage == Stage.SOAKING:
        left = soak_remaining(pending, now)
        if left is None:
            return ["soaking"]
        ends = f"soak ends {pending.get('soakUntil')}"
        return [f"{ends} (in {human_duration(left)})" if left > 0 else f"{ends}: over, promoting"]
    if stage == Stage.CANARY:
        return _canary_lines(pending.get("canary") or {}, now)
    if stage == Stage.SHADOWING:
        return _shadow_lines(pending.get("shadow") or {}, now)
    if stage == Stage.AWAITING_APPROVAL:
        diff = pending.get("metricsDiff") or {}
        return [
            f"{k}: {_num(v.get('serving'))} (serving) -> {_num(v.get('candidate'))} (candidate)"
            for k, v in diff.items()
        ] + (["approved, rolling out next"] if pending.get("approved") else [])
    return [f"job {pending['job']}" if pending.get("job") else ""]


def _pending(app: Obj, now: datetime, prog: str) -> list[str]:
    pending = (app.get("status") or {}).get("pending") or {}
    if not pending.get("version"):
        return _field("Pending", "none")
    since = f" for {age(pending.get('since'), now)}" if parse_time(pending.get("since")) else ""
    out = _field(
        "Pending",
        f"{pending['version']}  {pending.get('stage') or '?'}{since}",
        f"from {pending['source']}" if pending.get("source") else "",
        *_stage_lines(pending, now),
        f"image {pending['image']}" if pending.get("image") and pending.get("stage") != Stage.CANARY else "",
        str(pending.get("message") or ""),
    )
    commands = next_commands(app, prog)
    if commands:
        width = max(len(c) for c, _ in commands)
        out += _field("Next", *(f"{c.ljust(width)}  # {does}" for c, does in commands))
    return out


def _quarantined(status: Obj, now: datetime) -> list[str]:
    rows = [
        [
            str(q.get("version")),
            str(q.get("reason") or "-"),
            age(q.get("at"), now),
            str(q.get("message") or ""),
        ]
        for q in status.get("quarantined") or []
    ]
    return ["Quarantined", *table([["VERSION", "REASON", "AGE", "MESSAGE"], *rows])] if rows else []


def _conditions(status: Obj, now: datetime) -> list[str]:
    rows = [
        [
            str(c.get("type")),
            str(c.get("status")),
            str(c.get("reason") or "-"),
            age(c.get("lastTransitionTime"), now),
            str(c.get("message") or ""),
        ]
        for c in status.get("conditions") or []
        if c.get("type") != Cond.READY
    ]
    return ["Conditions", *table([["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], *rows])] if rows else []


def _history(status: Obj, now: datetime) -> list[str]:
    rows = []
    for h in status.get("history") or []:
        took = h.get("durationSeconds")
        rows.append(
            [
                str(h.get("at") or "-"),
                age(h.get("at"), now),
                str(h.get("version") or "-"),
                str(h.get("event") or "-"),
                human_duration(took) if isinstance(took, int | float) else "-",
                str(h.get("message") or h.get("image") or ""),
            ]
        )
    if not rows:
        return ["History      none yet"]
    header = ["AT", "AGO", "VERSION", "EVENT", "TOOK", "MESSAGE"]
    return ["History (oldest first)", *table([header, *rows])]


def render(app: Obj, now: datetime, prog: str = "modelapp") -> str:
    """What ``modelapp status`` prints: ready, versions, the pending stage and what to run next,
    quarantined versions, the other conditions and the timeline."""
    status = app.get("status") or {}
    sections = [
        _header(app) + _versions(status, now) + _pending(app, now, prog),
        _quarantined(status, now),
        _conditions(status, now),
        _history(status, now),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"
