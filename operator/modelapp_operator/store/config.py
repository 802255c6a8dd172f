"""Store location settings that need no SDK: credentials from a Secret, client timeouts and retries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


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
    """Client timeouts and retries: the SDK defaults retry for minutes, a poller wants to fail fast."""

    connection_timeout: float = 10.0
    read_timeout: float = 60.0
    retry_total: int = 3
    retry_initial_backoff: float = 1.0
    retry_increment_base: float = 2.0
    retry_jitter: float = 0.5
    max_concurrency: int = 2


def account_name_from_url(account_url: str) -> str | None:
    """``https://acct.blob.core.windows.net`` and Azurite-style ``http://host:port/acct`` → ``acct``."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    path_first = parts.path.strip("/").split("/")[0]
    if ".blob." in host:
        return host.split(".")[0]
    return path_first or None
