"""One error hierarchy for the scorer: each error carries the HTTP status it maps to."""

from __future__ import annotations

import reprlib
from typing import Any

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxstring, _BRIEF.maxother = 3, 6, 4, 60, 60


def brief(value: Any) -> str:
    """A short repr of a client's value for an error message.

    A value may be nested 1000 lists deep (repr would raise RecursionError: a 500) or megabytes long.
    """
    return _BRIEF.repr(value)


class ScoringError(Exception):
    """Base class; the app's single exception handler renders it as `{"error": message}`."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ScoringError):
    status_code = 400


class NotFound(ScoringError):
    status_code = 404


class PayloadTooLarge(ScoringError):
    status_code = 413


class UnsupportedMediaType(ScoringError):
    status_code = 415


class ModelNotReady(ScoringError):
    """The model exists but failed to load (or is still loading): a server-side condition."""

    status_code = 503


class Overloaded(ScoringError):
    """`max_concurrent_requests` inference requests are in progress: retry later."""

    status_code = 503


class InferenceFailed(ScoringError):
    """onnxruntime rejected inputs that passed our checks: still the client's input, so 400."""

    status_code = 400
