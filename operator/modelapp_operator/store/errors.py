"""Model store exception types; messages never carry credentials."""

from __future__ import annotations

from modelapp_bundle import ChecksumMismatch, ManifestError


class StoreError(Exception):
    """Base class of model store failures."""


class StoreUnavailable(StoreError):
    """The store could not be reached or kept failing (connection refused, DNS, timeouts, 5xx)."""


class StoreAuthError(StoreError):
    """The store rejected the credentials (401/403) or no credential could be obtained."""


class StoreConfigError(StoreError):
    """The store location or credentials are malformed (needs a human, retrying will not help)."""


class HostNotAllowed(StoreConfigError):
    """The account URL's host is not on the operator's allow-list: no request, no credential goes there."""


class TokenScopeRefused(StoreConfigError):
    """Something (a host's 401 challenge) asked for a token of an audience other than Azure Storage."""


class StoreProtocolError(StoreConfigError):
    """The endpoint answered in a way no blob service does (an entry without properties, an oversized
    page), or beyond a limit (a listing of more entries or pages than allowed)."""


class ContainerNotFound(StoreError):
    """The configured container does not exist."""


class VersionNotFound(StoreError):
    """No complete version (one whose manifest exists) by that name."""


class VersionChanged(StoreError):
    """The version's bundle is not the one expected: it was republished (``publish --force``) since it was
    resolved, so what would be fetched differs from what the ModelApp's status says."""

    def __init__(self, version: str, expected: str, actual: str) -> None:
        self.version, self.expected, self.actual = version, expected, actual
        super().__init__(
            f"version {version} changed since it was resolved: its bundle sha256 is {actual}, "
            f"expected {expected}; nothing was fetched (republished? the operator resolves it again)"
        )


class VersionExists(StoreError):
    """Publishing would overwrite a complete version and overwriting was not asked for."""


class ManifestInvalid(StoreError, ManifestError):
    """A stored manifest that cannot be parsed or violates the schema."""


__all__ = [
    "ChecksumMismatch",
    "ContainerNotFound",
    "HostNotAllowed",
    "ManifestInvalid",
    "StoreAuthError",
    "StoreConfigError",
    "StoreError",
    "StoreProtocolError",
    "StoreUnavailable",
    "TokenScopeRefused",
    "VersionChanged",
    "VersionExists",
    "VersionNotFound",
]
