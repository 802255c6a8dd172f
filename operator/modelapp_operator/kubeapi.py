"""Kubernetes API errors said once: what a 404 or 409 means to us, and the API server's own message.

The operator's write layer and the `modelapp` CLI both speak through here, so a refusal reads the same in a
log line, a condition and a terminal.
"""

from __future__ import annotations

import json
from typing import Any

APPLY = "application/apply-patch+yaml"  # server-side apply
MERGE = "application/merge-patch+json"
NOT_FOUND = 404
FORBIDDEN = 403
CONFLICT = 409
MESSAGE_CHARS = 500


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes client's ApiException (None for any other error)."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def is_not_found(exc: BaseException) -> bool:
    return status_of(exc) == NOT_FOUND


def is_conflict(exc: BaseException) -> bool:
    """409: an object of that name exists already (create), or it changed since it was read (replace)."""
    return status_of(exc) == CONFLICT


def api_message(exc: BaseException) -> str:
    """The API server's own message (a Status object's ``message``); our request bodies hold no secrets."""
    body: Any = getattr(exc, "body", None)
    try:
        message = json.loads(body or "{}").get("message", "")
    except (TypeError, ValueError, AttributeError):
        return ""
    return str(message)[:MESSAGE_CHARS]


def explain(exc: BaseException, what: str, namespace: str) -> str:
    """One line for a person: ``what`` is e.g. ``modelapp diabetes``."""
    status = status_of(exc)
    if status == NOT_FOUND:
        return f"{what} not found in namespace {namespace}"
    if status == FORBIDDEN:
        return f"not allowed to change {what} in namespace {namespace} (RBAC)"
    reason = getattr(exc, "reason", "")
    return f"the API server said {status} {reason}: {api_message(exc)}".rstrip(": ")
