"""Model store: where published model versions live (Azure Blob Storage, or in memory for tests)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelapp_operator.store.base import BlobModelStore, download_verified
from modelapp_operator.store.config import (
    DEFAULT_ACCOUNT_HOSTS,
    BlobCredentials,
    StoreOptions,
    account_name_from_url,
    host_allowed,
)
from modelapp_operator.store.errors import (
    ChecksumMismatch,
    ContainerNotFound,
    HostNotAllowed,
    ManifestInvalid,
    StoreAuthError,
    StoreConfigError,
    StoreError,
    StoreProtocolError,
    StoreUnavailable,
    TokenScopeRefused,
    VersionChanged,
    VersionExists,
    VersionNotFound,
)
from modelapp_operator.store.memory import InMemoryStore
from modelapp_operator.store.model import (
    BlobInfo,
    ContainerSnapshot,
    ModelStore,
    VersionRef,
    covering_prefixes,
    normalize_prefix,
    version_path,
    versions_in,
)
from modelapp_operator.store.scrub import scrub

if TYPE_CHECKING:
    from modelapp_operator.store.azure import AzureBlobStore, store_from_credentials

# The Azure SDK loads only when used, so the planner can import the types above and stay SDK-free.
_LAZY = {"AzureBlobStore", "store_from_credentials"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("modelapp_operator.store.azure"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ACCOUNT_HOSTS",
    "AzureBlobStore",
    "BlobCredentials",
    "BlobInfo",
    "BlobModelStore",
    "ChecksumMismatch",
    "ContainerNotFound",
    "ContainerSnapshot",
    "HostNotAllowed",
    "InMemoryStore",
    "ManifestInvalid",
    "ModelStore",
    "StoreAuthError",
    "StoreConfigError",
    "StoreError",
    "StoreOptions",
    "StoreProtocolError",
    "StoreUnavailable",
    "TokenScopeRefused",
    "VersionChanged",
    "VersionExists",
    "VersionNotFound",
    "VersionRef",
    "account_name_from_url",
    "covering_prefixes",
    "download_verified",
    "host_allowed",
    "normalize_prefix",
    "scrub",
    "store_from_credentials",
    "version_path",
    "versions_in",
]
