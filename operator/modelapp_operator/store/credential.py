"""A token credential that only ever issues Azure Storage tokens, whoever asks for another audience."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

from modelapp_operator.store.errors import TokenScopeRefused

STORAGE_SCOPE = "https://storage.azure.com/.default"


class StorageOnlyCredential:
    """Wraps the token credential a store uses. The SDK follows a 401's ``WWW-Authenticate`` challenge and
    asks for a token of the audience the *host* names (``resource_id``); a hostile endpoint would name the
    management plane and receive the operator's token for it. This refuses any scope but storage's."""

    def __init__(self, inner: AsyncTokenCredential) -> None:
        self._inner = inner

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if scopes != (STORAGE_SCOPE,):
            raise TokenScopeRefused(
                f"a token for {', '.join(scopes) or 'no scope'} was asked for (a 401 challenge from the "
                f"blob endpoint?); the operator issues tokens for {STORAGE_SCOPE} only"
            )
        return await self._inner.get_token(
            *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
        )

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> StorageOnlyCredential:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
