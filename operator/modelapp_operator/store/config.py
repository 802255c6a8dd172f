"""Store location settings that need no SDK: credentials from a Secret, client timeouts, retries and
limits, and which account hosts may receive credentials."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Azure Storage's blob endpoints: the public cloud (standard and Azure DNS zone endpoints), Azure China
# (21Vianet), Azure US Government, and the US air-gapped clouds (USNat, USSec). Azure Germany's
# core.cloudapi.de closed in 2021 and is left out.
DEFAULT_ACCOUNT_HOSTS: tuple[str, ...] = (
    "*.blob.core.windows.net",
    "*.blob.storage.azure.net",
    "*.blob.core.chinacloudapi.cn",
    "*.blob.core.usgovcloudapi.net",
    "*.blob.core.eaglex.ic.gov",
    "*.blob.core.microsoft.scloud",
)
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class FederatedIdentity:
    """Per-object workload identity: an Entra app (``client_id`` in ``tenant_id``) that trusts a Kubernetes
    ServiceAccount; ``assertion`` returns a current token of that ServiceAccount to exchange for an Entra one."""

    tenant_id: str
    client_id: str
    assertion: Callable[[], str] = field(repr=False, compare=False)


@dataclass(frozen=True)
class BlobCredentials:
    """Credentials from a Kubernetes Secret; all empty means DefaultAzureCredential (workload identity)."""

    connection_string: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    account_key: str | None = field(default=None, repr=False)
    account_name: str | None = None
    """Only needed with ``account_key`` when the account URL does not reveal it."""
    client_id: str | None = None
    """Entra ID client id for workload/managed identity when the pod's default one is not meant."""
    federated: FederatedIdentity | None = None
    """Read the store as a ModelApp's own ServiceAccount's identity rather than the operator's."""

    @classmethod
    def from_mapping(cls, data: dict[str, str]) -> BlobCredentials:
        """Build from a decoded Secret's data (``connectionString`` or ``connection_string`` style keys)."""

        def pick(*keys: str) -> str | None:
            for key in keys:
                value = data.get(key)
                if value:
                    return value.strip()
            return None

        return cls(
            connection_string=pick(
                "connectionString", "connection_string", "AZURE_STORAGE_CONNECTION_STRING"
            ),
            sas_token=pick("sasToken", "sas_token", "AZURE_STORAGE_SAS_TOKEN"),
            account_key=pick("accountKey", "account_key", "AZURE_STORAGE_KEY"),
            account_name=pick("accountName", "account_name", "AZURE_STORAGE_ACCOUNT"),
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.connection_string, self.sas_token, self.account_key) if s)

    @property
    def kind(self) -> str:
        if self.connection_string:
            return "connection string"
        if self.sas_token:
            return "SAS token"
        if self.account_key:
            return "account key"
        return "DefaultAzureCredential"


@dataclass(frozen=True)
class StoreOptions:
    """Client timeouts, retries and limits: the SDK defaults retry for minutes and read whatever an
    endpoint sends; a poller wants to fail fast and to bound what a hostile endpoint can cost it."""

    connection_timeout: float = 10.0
    read_timeout: float = 60.0
    retry_total: int = 3
    retry_initial_backoff: float = 1.0
    retry_increment_base: float = 2.0
    retry_jitter: float = 0.5
    max_concurrency: int = 2
    allowed_hosts: tuple[str, ...] | None = None
    """Host patterns (see :func:`host_allowed`) credentials may go to; None: any (the CLI, run by the
    credential's owner). The operator always sets it."""
    call_timeout: float = 120.0
    """Deadline of one listing or one small read, retries included; a download's chunks each get it."""
    max_list_entries: int = 200_000
    max_list_pages: int = 2_000
    page_size: int = 1_000
    max_page_bytes: int = 8 * 1024 * 1024
    """One listing page's body; a real page of ``page_size`` entries stays far below."""
    max_manifest_bytes: int = 4 * 1024 * 1024


def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """Whether ``url``'s host matches a pattern: ``*.blob.core.windows.net`` (host, any port) or
    ``127.0.0.1:10000`` / ``127.0.0.1:*`` (host and port; the scheme's port when the URL names none).
    Case-insensitive; a URL with user info (``https://acct.blob.core.windows.net@evil/``) never matches."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host or "@" in parts.netloc or parts.scheme.lower() not in _DEFAULT_PORTS:
        return False
    for pattern in patterns:
        pattern = pattern.strip().lower()
        target = f"{host}:{port}" if ":" in pattern else host
        if pattern and fnmatch.fnmatchcase(target, pattern):
            return True
    return False


def url_host(url: str) -> str:
    """``host:port`` of ``url`` as a message names it."""
    parts = urlsplit(url.strip())
    return parts.netloc.rpartition("@")[2] or url


def account_name_from_url(account_url: str) -> str | None:
    """``https://acct.blob.core.windows.net`` and Azurite-style ``http://host:port/acct`` → ``acct``."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    path_first = parts.path.strip("/").split("/")[0]
    if ".blob." in host:
        return host.split(".")[0]
    return path_first or None
