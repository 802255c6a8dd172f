"""Model store: where published model versions live (Azure Blob Storage, or in memory for tests)."""

from modelapp_operator.store.azure import (
    AzureBlobStore,
    BlobCredentials,
    StoreOptions,
    account_name_from_url,
    store_from_credentials,
)
from modelapp_operator.store.base import BlobModelStore, download_verified
from modelapp_operator.store.errors import (
    ChecksumMismatch,
    ContainerNotFound,
    ManifestInvalid,
    StoreAuthError,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    VersionExists,
    VersionNotFound,
)
from modelapp_operator.store.memory import InMemoryStore
from modelapp_operator.store.model import (
    BlobInfo,
    ContainerSnapshot,
    ModelStore,
    VersionRef,
    normalize_prefix,
    version_path,
    versions_in,
)
from modelapp_operator.store.scrub import scrub

__all__ = [
    "AzureBlobStore",
    "BlobCredentials",
    "BlobInfo",
    "BlobModelStore",
    "ChecksumMismatch",
    "ContainerNotFound",
    "ContainerSnapshot",
    "InMemoryStore",
    "ManifestInvalid",
    "ModelStore",
    "StoreAuthError",
    "StoreConfigError",
    "StoreError",
    "StoreOptions",
    "StoreUnavailable",
    "VersionExists",
    "VersionNotFound",
    "VersionRef",
    "account_name_from_url",
    "download_verified",
    "normalize_prefix",
    "scrub",
    "store_from_credentials",
    "version_path",
    "versions_in",
]
