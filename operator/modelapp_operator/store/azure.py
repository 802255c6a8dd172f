"""Azure Blob Storage (and Azurite) ModelStore on the async SDK, errors mapped and credentials scrubbed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, ExponentialRetry

from modelapp_operator.store.base import BlobExists, BlobMissing, BlobModelStore, _utcnow
from modelapp_operator.store.config import BlobCredentials, StoreOptions, account_name_from_url
from modelapp_operator.store.errors import (
    ContainerNotFound,
    StoreAuthError,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
)
from modelapp_operator.store.model import BlobInfo, normalize_prefix
from modelapp_operator.store.scrub import scrub


class AzureBlobStore(BlobModelStore):
    """ModelStore on one container. Build with :func:`store_from_credentials`."""

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        secrets: tuple[str, ...] = (),
        owned_credential: AsyncTokenCredential | None = None,
        options: StoreOptions | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(container, clock=clock)
        self._service = service
        self._client: ContainerClient = service.get_container_client(container)
        self._secrets = secrets
        self._owned_credential = owned_credential
        self._options = options or StoreOptions()

    def count_request(self, _request: Any) -> None:
        """Pipeline hook: runs once per HTTP request sent, retries included."""
        self.calls += 1

    @property
    def url(self) -> str:
        """The container URL without any query string (a SAS would be there)."""
        parts = urlsplit(self._client.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    def location(self, prefix: str, version: str) -> str:
        return f"{self.url}/{normalize_prefix(prefix)}{version}/"

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._service.close()
        if self._owned_credential is not None:
            with contextlib.suppress(Exception):
                await self._owned_credential.close()

    async def ensure_container(self) -> None:
        """Create the container if absent (tests and local set-ups; production containers pre-exist)."""
        with self._errors("create container"), contextlib.suppress(ResourceExistsError):
            await self._client.create_container()

    async def delete_container(self) -> None:
        with self._errors("delete container"), contextlib.suppress(ResourceNotFoundError):
            await self._client.delete_container()

    # --- primitives --------------------------------------------------------------------------------------

    async def _list(self, prefix: str) -> list[BlobInfo]:
        out: list[BlobInfo] = []
        with self._errors(f"list {self._container}/{prefix}"):
            pages = self._client.list_blobs(name_starts_with=prefix or None).by_page()
            async for page in pages:
                async for item in page:
                    out.append(BlobInfo(item.name, _etag(item.etag), item.last_modified, item.size))
        return out

    async def _properties(self, name: str) -> BlobInfo | None:
        with self._errors(f"get properties of {self._container}/{name}"):
            try:
                props = await self._client.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError as exc:
                if _code(exc) == "ContainerNotFound":
                    raise
                return None
        return BlobInfo(name, _etag(props.etag), props.last_modified, props.size)

    async def _get(self, name: str, if_none_match: str | None) -> tuple[bytes, str] | None:
        kwargs: dict[str, Any] = {}
        if if_none_match is not None:
            kwargs = {"etag": if_none_match, "match_condition": MatchConditions.IfModified}
        with self._errors(f"read {self._container}/{name}"):
            try:
                downloader = await self._client.get_blob_client(name).download_blob(**kwargs)
                data = await downloader.readall()
            except ResourceNotModifiedError:
                return None
            except HttpResponseError as exc:
                # download_blob reports 304 as a plain HttpResponseError (ConditionNotMet).
                if exc.status_code == 304:
                    return None
                raise
            etag = downloader.properties.etag
        return data, _etag(etag)

    async def _stream(self, name: str) -> AsyncIterator[bytes]:
        with self._errors(f"download {self._container}/{name}"):
            downloader = await self._client.get_blob_client(name).download_blob(max_concurrency=1)
            async for chunk in downloader.chunks():
                yield chunk

    async def _put_file(self, name: str, path: Path) -> None:
        size = (await asyncio.to_thread(path.stat)).st_size
        with self._errors(f"upload {self._container}/{name}"), path.open("rb") as fh:
            await self._client.get_blob_client(name).upload_blob(
                fh,
                overwrite=True,
                length=size,
                max_concurrency=self._options.max_concurrency,
            )

    async def _put_bytes(self, name: str, data: bytes, *, overwrite: bool, content_type: str) -> BlobInfo:
        with self._errors(f"upload {self._container}/{name}"):
            try:
                result = await self._client.get_blob_client(name).upload_blob(
                    data, overwrite=overwrite, content_settings=ContentSettings(content_type=content_type)
                )
            except ResourceExistsError:
                raise BlobExists(name) from None
        return BlobInfo(name, _etag(result["etag"]), result["last_modified"], len(data))

    async def _delete(self, name: str) -> None:
        with self._errors(f"delete {self._container}/{name}"):
            try:
                await self._client.get_blob_client(name).delete_blob()
            except ResourceNotFoundError as exc:
                if _code(exc) == "ContainerNotFound":
                    raise

    # --- errors ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (BlobMissing, BlobExists, StoreError):
            raise
        except Exception as exc:
            # Callers see only our types: SDK and transport failures alike are translated and scrubbed.
            self._raise_translated(exc, what)

    def _raise_translated(self, exc: Exception, what: str) -> NoReturn:
        if isinstance(exc, ResourceNotFoundError):
            if _code(exc) == "ContainerNotFound":
                raise ContainerNotFound(self._msg(f"container {self._container!r} does not exist")) from None
            raise BlobMissing(what) from None
        # The original exception is dropped (from None): its text and traceback may carry credentials.
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
        ):
            raise StoreAuthError(self._msg(f"{what}: access denied ({_describe(exc)})")) from None
        if isinstance(exc, HttpResponseError) and (
            exc.status_code is None or exc.status_code >= 500 or exc.status_code in (408, 429)
        ):
            raise StoreUnavailable(self._msg(f"{what}: {_describe(exc)}")) from None
        if isinstance(exc, HttpResponseError):
            raise StoreError(self._msg(f"{what}: {_describe(exc)}")) from None
        if isinstance(exc, _UNREACHABLE):
            raise StoreUnavailable(self._msg(f"{what}: store unreachable ({_describe(exc)})")) from None
        if isinstance(exc, ValueError):
            raise StoreConfigError(self._msg(f"{what}: {_describe(exc)}")) from None
        if isinstance(exc, AzureError):
            raise StoreError(self._msg(f"{what}: {_describe(exc)}")) from None
        raise exc

    def _msg(self, text: str) -> str:
        return scrub(text, self._secrets)


_UNREACHABLE = (ServiceRequestError, ServiceResponseError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _etag(value: str) -> str:
    """Listings return etags bare, single-blob responses quoted; keep one (quoted, as in HTTP) form."""
    bare = value.strip().strip('"')
    return f'"{bare}"'


def _code(exc: HttpResponseError) -> str | None:
    code = getattr(exc, "error_code", None)
    if code is None and exc.response is not None:
        code = getattr(exc.response, "headers", {}).get("x-ms-error-code")
    # The SDK hands back a StorageErrorCode enum for known codes; its value is the wire code.
    return str(getattr(code, "value", code)) if code else None


def _describe(exc: Exception) -> str:
    if isinstance(exc, HttpResponseError):
        parts = [f"HTTP {exc.status_code}" if exc.status_code else "HTTP error"]
        if code := _code(exc):
            parts.append(code)
        return " ".join(parts)
    # First line only: SDK messages append request dumps after it.
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _client_kwargs(opts: StoreOptions, hook: Callable[[Any], None]) -> dict[str, Any]:
    return {
        "connection_timeout": opts.connection_timeout,
        "read_timeout": opts.read_timeout,
        "retry_policy": ExponentialRetry(
            initial_backoff=opts.retry_initial_backoff,  # type: ignore[arg-type]
            increment_base=opts.retry_increment_base,  # type: ignore[arg-type]
            retry_total=opts.retry_total,
            random_jitter_range=opts.retry_jitter,  # type: ignore[arg-type]
        ),
        "raw_request_hook": hook,
    }


def _credential(
    account_url: str, creds: BlobCredentials, token_credential: AsyncTokenCredential | None
) -> tuple[Any, AsyncTokenCredential | None]:
    """The SDK credential for ``creds`` and, when this store creates one it must close, that one too."""
    if creds.sas_token:
        return AzureSasCredential(creds.sas_token.lstrip("?")), None
    if creds.account_key:
        name = creds.account_name or account_name_from_url(account_url)
        if not name:
            raise StoreConfigError(f"no account name in {account_url!r}; set accountName")
        return AzureNamedKeyCredential(name, creds.account_key), None
    if token_credential is not None:
        return token_credential, None
    from azure.identity.aio import DefaultAzureCredential

    ids = {}
    if creds.client_id:
        ids = {"workload_identity_client_id": creds.client_id, "managed_identity_client_id": creds.client_id}
    owned = DefaultAzureCredential(**ids)
    return owned, owned


def store_from_credentials(
    account_url: str | None,
    container: str,
    creds: BlobCredentials,
    *,
    options: StoreOptions | None = None,
    token_credential: AsyncTokenCredential | None = None,
    owns_token_credential: bool = False,
) -> AzureBlobStore:
    """Build a store from whichever credential is set: connection string, SAS, account key, else Entra ID.

    ``token_credential`` replaces DefaultAzureCredential (which is then not created); with
    ``owns_token_credential`` the store closes it. Raises StoreConfigError.
    """
    opts = options or StoreOptions()
    # The counting hook must exist before the client, and the store is built around the client.
    store_holder: list[AzureBlobStore] = []

    def hook(request: Any) -> None:
        store_holder[0].count_request(request)

    client_kwargs = _client_kwargs(opts, hook)
    owned: AsyncTokenCredential | None = None
    try:
        if creds.connection_string:
            service = BlobServiceClient.from_connection_string(creds.connection_string, **client_kwargs)
        else:
            if not account_url:
                raise StoreConfigError("an account URL is required unless a connection string is given")
            credential, owned = _credential(account_url, creds, token_credential)
            if owns_token_credential and credential is token_credential:
                owned = token_credential
            service = BlobServiceClient(account_url, credential=credential, **client_kwargs)
    except StoreConfigError:
        raise
    except Exception as exc:
        # A malformed URL or credential; the SDK's text may echo the secret, hence scrub and no chaining.
        raise StoreConfigError(
            scrub(f"invalid storage configuration ({creds.kind}): {_describe(exc)}", creds.secrets)
        ) from None
    store = AzureBlobStore(service, container, secrets=creds.secrets, owned_credential=owned, options=opts)
    store_holder.append(store)
    return store
