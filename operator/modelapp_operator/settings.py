"""Operator settings: one class, environment variables with the MODELAPP_OPERATOR_ prefix."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelapp_operator.snapshot import AllowedImages, Images
from modelapp_operator.store.config import DEFAULT_ACCOUNT_HOSTS, StoreOptions


class OperatorSettings(BaseSettings):
    """How the operator runs; the chart sets these, tests override them."""

    model_config = SettingsConfigDict(env_prefix="MODELAPP_OPERATOR_", extra="ignore", populate_by_name=True)

    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Namespaces to watch (comma-separated); empty means every namespace."""

    fetch_image: str = "ghcr.io/modelapp-dev/modelapp-operator:0.1.0"
    """Image whose `modelapp fetch` downloads and verifies a model version (init containers, build Jobs)."""

    scorer_image: str = "ghcr.io/modelapp-dev/scoring-service:0.1.0"
    """Scoring-service image used when a ModelApp sets no serve.image (packaging InitContainer)."""

    base_image: str = "ghcr.io/modelapp-dev/scoring-service:0.1.0"
    """Base image models are baked onto when a ModelApp sets no build.baseImage (packaging Image)."""

    kaniko_image: str = (
        "ghcr.io/osscontainertools/kaniko:v1.28.2"
        "@sha256:4ea0e7301e3f6806de15150e4982c73018351e28c1dca6947bd3b4afb5ae3c60"
    )
    """Kaniko executor for build Jobs: the maintained osscontainertools fork, pinned by digest."""

    allowed_serve_images: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Images a ModelApp's serve.image may name besides scorer_image: comma-separated shell-style patterns
    (``*`` matches across ``/``). Empty: only scorer_image."""

    allowed_base_images: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Images a ModelApp's build.baseImage may name besides base_image (patterns, as above)."""

    allowed_kaniko_images: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Images a ModelApp's build.kanikoImage may name besides kaniko_image (patterns, as above). Kaniko runs as
    root with the push Secret mounted: widen this only to executors you trust."""

    metrics_port: int = 9090
    """Port of the Prometheus /metrics endpoint; 0 turns it off."""

    max_concurrent_reconciles: int = Field(default=16, ge=1)
    """How many ModelApps are reconciled at once."""

    resync_seconds: float = Field(default=300.0, gt=0)
    """Each ModelApp is reconciled at least this often, even when nothing wakes it."""

    first_listing_timeout: float = Field(default=30.0, gt=0)
    """How long a reconcile waits for a new poller's first listing before reporting the store as unavailable."""

    require_object_identity: bool = False
    """Every ModelApp that reads its store with Entra ID names its own ServiceAccount
    (auth.workloadIdentity.serviceAccountName); the operator never lends its own identity. The chart turns it on
    in cluster-wide mode."""

    tenant_id: str | None = Field(
        default=None, validation_alias=AliasChoices("MODELAPP_OPERATOR_TENANT_ID", "AZURE_TENANT_ID")
    )
    """Entra tenant of per-ModelApp identities whose ServiceAccount has no azure.workload.identity/tenant-id
    annotation (the workload-identity webhook sets AZURE_TENANT_ID in the operator's pod)."""

    api_timeout_seconds: float = Field(default=30.0, gt=0)
    """Deadline of every Kubernetes API call the operator makes (its watches have kopf's own)."""

    store_connection_timeout: float = Field(default=5.0, gt=0)
    """Seconds to connect to the blob endpoint."""

    store_retry_total: int = Field(default=1, ge=0)
    """Retries of one blob request; the poller retries on its own schedule, so keep this low."""

    allowed_account_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ACCOUNT_HOSTS)
    )
    """Hosts the operator sends store credentials (SAS, account key, its own token) to, comma-separated
    patterns: `*.blob.core.windows.net` (the host, any port) or `127.0.0.1:10000` / `azurite:*` (host and
    port). A ModelApp whose account URL (or connection string endpoint) matches none is StoreMisconfigured
    and nothing is sent. Setting it replaces the default, which is Azure's blob endpoints in every cloud:
    `*.blob.core.windows.net`, `*.blob.storage.azure.net`, `*.blob.core.chinacloudapi.cn`,
    `*.blob.core.usgovcloudapi.net`, `*.blob.core.eaglex.ic.gov`, `*.blob.core.microsoft.scloud`."""

    poll_interval_floor_seconds: float = Field(default=10.0, ge=0)
    """No container is listed more often than this, whatever the pollInterval of the ModelApps reading it
    (they share one listing per container and credential)."""

    store_call_timeout: float = Field(default=30.0, gt=0)
    """Deadline of one store call (a whole listing, one manifest read), retries included."""

    store_max_list_entries: int = Field(default=100_000, ge=1)
    """A listing (of one prefix) with more blobs than this is refused (StoreMisconfigured)."""

    store_max_list_pages: int = Field(default=1_000, ge=1)
    """A listing of more pages (of up to 1000 blobs) than this is refused, even if they are empty."""

    store_max_manifest_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """A version whose modelapp.json is larger than this is unusable; no more of it is read."""

    @property
    def images(self) -> Images:
        allowed = AllowedImages(
            serve=tuple(self.allowed_serve_images),
            base=tuple(self.allowed_base_images),
            kaniko=tuple(self.allowed_kaniko_images),
        )
        return Images(
            fetch=self.fetch_image,
            scorer=self.scorer_image,
            kaniko=self.kaniko_image,
            base=self.base_image,
            allowed=allowed,
        )

    def store_options(self) -> StoreOptions:
        """How the operator's stores connect, retry, and what they accept from an endpoint."""
        return StoreOptions(
            connection_timeout=self.store_connection_timeout,
            retry_total=self.store_retry_total,
            allowed_hosts=tuple(self.allowed_account_hosts),
            call_timeout=self.store_call_timeout,
            max_list_entries=self.store_max_list_entries,
            max_list_pages=self.store_max_list_pages,
            max_manifest_bytes=self.store_max_manifest_bytes,
        )

    @field_validator(
        "namespaces",
        "allowed_account_hosts",
        "allowed_serve_images",
        "allowed_base_images",
        "allowed_kaniko_images",
        mode="before",
    )
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> OperatorSettings:
    return OperatorSettings()
