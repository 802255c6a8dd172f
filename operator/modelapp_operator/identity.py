"""Per-object workload identity (as Flux does it): a ModelApp reads its store as a ServiceAccount of its own
namespace, never as the operator. The operator asks the API server for a short-lived token of that
ServiceAccount (TokenRequest, audience ``api://AzureADTokenExchange``) and Entra ID exchanges it for a storage
token of the managed identity federated with it (a client assertion)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from modelapp_operator import kubeapi
from modelapp_operator.names import Reason
from modelapp_operator.snapshot import Stalled
from modelapp_operator.store import BlobCredentials
from modelapp_operator.store.config import FederatedIdentity

AUDIENCE = "api://AzureADTokenExchange"
TOKEN_SECONDS = 3600
ANN_CLIENT_ID = "azure.workload.identity/client-id"
ANN_TENANT_ID = "azure.workload.identity/tenant-id"


@dataclass
class ServiceAccountToken:
    """The newest token of one ServiceAccount; renewed by the reconcile that finds it past half its life."""

    value: str = ""
    renew_at: float = 0.0

    def get(self) -> str:
        return self.value


class Identities:
    """Tokens of the ServiceAccounts ModelApps name, by (namespace, name)."""

    def __init__(self, core: client.CoreV1Api, tenant_id: str | None, timeout: float) -> None:
        self.core = core
        self.tenant_id = tenant_id
        self.timeout = timeout
        self.tokens: dict[tuple[str, str], ServiceAccountToken] = {}

    async def credentials(
        self, namespace: str, name: str, client_id: str | None
    ) -> tuple[BlobCredentials, str] | Stalled:
        """Credentials that read the store as ServiceAccount ``name``, and the identity's key for pollers."""
        try:
            sa = await self.core.read_namespaced_service_account(
                name, namespace, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if kubeapi.is_not_found(exc):
                return Stalled(
                    Reason.SERVICE_ACCOUNT_NOT_FOUND,
                    f"ServiceAccount {name} (auth.workloadIdentity.serviceAccountName) not found in namespace "
                    f"{namespace}",
                )
            raise
        annotations = sa.metadata.annotations or {}
        client_id = client_id or annotations.get(ANN_CLIENT_ID)
        tenant_id = annotations.get(ANN_TENANT_ID) or self.tenant_id
        if not client_id or not tenant_id:
            missing = ANN_CLIENT_ID if not client_id else ANN_TENANT_ID
            return Stalled(
                Reason.IDENTITY_MISCONFIGURED,
                f"ServiceAccount {namespace}/{name} has no {missing} annotation (and the ModelApp and the "
                "operator set none): annotate it with the managed identity federated with it",
            )
        token = await self._token(namespace, name)
        federated = FederatedIdentity(tenant_id, client_id, token.get)
        return BlobCredentials(federated=federated), f"identity:{namespace}/{name}:{client_id}"

    async def _token(self, namespace: str, name: str) -> ServiceAccountToken:
        token = self.tokens.setdefault((namespace, name), ServiceAccountToken())
        if token.value and time.monotonic() < token.renew_at:
            return token
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[AUDIENCE], expiration_seconds=TOKEN_SECONDS)
        )
        answer = await self.core.create_namespaced_service_account_token(
            name, namespace, request, _request_timeout=self.timeout
        )
        token.value = str(answer.status.token)
        token.renew_at = time.monotonic() + TOKEN_SECONDS / 2
        return token

    def forget(self, namespace: str, name: str) -> None:
        self.tokens.pop((namespace, name), None)
