"""The `modelapp` command line's settings: defaults for its flags from ``MODELAPP_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CliSettings(BaseSettings):
    """Defaults for the command line from ``MODELAPP_*`` environment variables (flags win over them).

    Init containers get credentials this way from a Secret, so they never appear in a pod's command line.
    """

    model_config = SettingsConfigDict(env_prefix="MODELAPP_", extra="ignore")

    connection_string: SecretStr | None = None
    """Storage connection string (Azurite's well-known one works)."""
    account_url: str | None = None
    """Blob service URL, e.g. https://acct.blob.core.windows.net; without a SAS or key, Entra ID is used."""
    sas_token: SecretStr | None = None
    """SAS token used with the account URL."""
    account_key: SecretStr | None = None
    """Account key used with the account URL."""
    account_name: str | None = None
    """Account name for key auth when the URL does not show it."""
    credentials_dir: Path | None = None
    """A mounted Secret: its files are read as the operator reads the ModelApp's auth.secretRef (the keys
    connectionString, sasToken, accountKey, accountName and their aliases), so a pod the operator starts
    gets exactly the credentials the operator used."""
    credential: Literal["default", "workload-identity"] = "default"
    """Entra ID without a secret: ``default`` (DefaultAzureCredential: environment, workload identity, the
    Azure CLI's login, a managed identity) or ``workload-identity`` (only the federated token the AKS webhook
    mounts; never the node's managed identity). The operator's pods use ``workload-identity``."""
    container: str | None = None
    """Blob container holding the model versions."""
    prefix: str = ""
    """Folder of the model inside the container; versions are its sub-folders."""
    connection_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for a connection to the store."""
    read_timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for a response from the store."""
    retry_total: int = Field(default=3, ge=0)
    """Retries of a failed store request before giving up."""


@lru_cache(maxsize=1)
def get_settings() -> CliSettings:
    return CliSettings()
