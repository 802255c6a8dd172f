"""Removal of storage credentials from text that may reach logs, events or exception messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "***"
_SECRET_KEYS = {"accountkey", "sharedaccesssignature"}

# Whatever secrets we were given, these shapes are credentials too (e.g. inside a URL the SDK echoes back).
_PATTERNS = [
    re.compile(r"(?i)(AccountKey=)[^;\s\"']+"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s\"']+"),
    re.compile(r"(?i)([?&]sig=)[^&\s\"']+"),
    re.compile(r"(?i)(Authorization:\s*)\S+(\s+\S+)?"),
]


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every given secret (raw or URL-encoded) and credential-shaped substring redacted."""
    for secret in secrets:
        if not secret or len(secret) < 4:
            # Redacting tiny strings would mangle the message without protecting anything.
            continue
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, REDACTED)
        # A connection string is itself a secret, but its parts may show up on their own too.
        for part in secret.split(";"):
            key, _, value = part.partition("=")
            if key.strip().lower() in _SECRET_KEYS and len(value) >= 4:
                text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text
