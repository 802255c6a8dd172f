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
from modelapp_operator.store.config import (
    BlobCredentials,
    StoreOptions,
    account_name_from_url,
    host_allowed,
    url_host,
)
from modelapp_operator.store.credential import StorageOnlyCredential
from modelapp_operator.store.errors import (
    ContainerNotFound,
    HostNotAllowed,
    ManifestInvalid,
    StoreAuthError,
    StoreConfigError,
    StoreError,
    StoreProtocolError,
    StoreUnavailable,
)
from modelapp_operator.store.model import BlobInfo, normalize_prefix
from modelapp_operator.store.scrub import scrub
from modelapp_operator.store.transport import CappedTransport, EncodedResponse, ResponseTooLarge, response_cap

# What azure-storage-blob reads a download's chunks in when it builds its own transport.
_DATA_BLOCK_SIZE = 4 * 1024 * 1024
# Exceptions the SDK raises when it cannot make sense of a listing page (an entry without properties).
_MALFORMED = (AttributeError, TypeError, KeyError, ValueError)


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

    def on_request(self, request: Any) -> None:
        """Pipeline hook: runs once per HTTP request, retries and redirects included, before the credential
        is added. A request for a host off the allow-list goes no further, with no credential."""
        allowed = self._options.allowed_hosts
        if allowed is not None:
            refuse_unless_allowed(request.http_request.url, allowed)
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
        async with self._call("create container"):
            with contextlib.suppress(ResourceExistsError):
                await self._client.create_container()

    async def delete_container(self) -> None:
        async with self._call("delete container"):
            with contextlib.suppress(ResourceNotFoundError):
                await self._client.delete_container()

    # --- primitives --------------------------------------------------------------------------------------

    async def _list(self, prefix: str) -> list[BlobInfo]:
        opts = self._options
        out: list[BlobInfo] = []
        what = f"list {self._container}/{prefix}"
        async with self._call(what, cap=opts.max_page_bytes):
            pages = self._client.list_blobs(
                name_starts_with=prefix or None, results_per_page=opts.page_size
            ).by_page()
            count = 0
            try:
                async for page in pages:
                    count += 1
                    if count > opts.max_list_pages:
                        raise self._too_long(what, f"{opts.max_list_pages} pages", "store_max_list_pages")
                    async for item in page:
                        out.append(_blob_info(item))
                        if len(out) > opts.max_list_entries:
                            entries = f"{opts.max_list_entries} entries"
                            raise self._too_long(what, entries, "store_max_list_entries")
            except _MALFORMED as exc:
                raise StoreProtocolError(
                    self._msg(
                        f"{what}: the endpoint sent a listing that cannot be read ({_describe(exc)}); "
                        "a blob service sends every entry with its name and properties"
                    )
                ) from None
        return out

    def _too_long(self, what: str, limit: str, setting: str) -> StoreProtocolError:
        return StoreProtocolError(
            self._msg(
                f"{what}: the listing goes on past {limit} (operator setting {setting}); list a narrower prefix"
            )
        )

    async def _properties(self, name: str) -> BlobInfo | None:
        async with self._call(f"get properties of {self._container}/{name}"):
            try:
                props = await self._client.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError as exc:
                if _code(exc) == "ContainerNotFound":
                    raise
                return None
        return BlobInfo(name, _etag(props.etag), props.last_modified, props.size)

    async def _get(self, name: str, if_none_match: str | None) -> tuple[bytes, str] | None:
        """A manifest: read whole, but never more than ``max_manifest_bytes`` of it."""
        kwargs: dict[str, Any] = {"max_concurrency": 1}
        if if_none_match is not None:
            kwargs.update(etag=if_none_match, match_condition=MatchConditions.IfModified)
        cap = self._options.max_manifest_bytes
        async with self._call(f"read {self._container}/{name}", cap=cap):
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
            except (ResponseTooLarge, EncodedResponse) as exc:
                raise ManifestInvalid(
                    self._msg(f"{self._container}/{name}: {exc} (operator setting store_max_manifest_bytes)")
                ) from None
            etag = downloader.properties.etag
        return data, _etag(etag)

    async def _stream(self, name: str) -> AsyncIterator[bytes]:
        """A model file's chunks: no size cap, but each chunk arrives within the call deadline."""
        deadline = self._options.call_timeout
        with self._errors(f"download {self._container}/{name}"):
            async with asyncio.timeout(deadline):
                downloader = await self._client.get_blob_client(name).download_blob(max_concurrency=1)
            chunks = downloader.chunks()
            while True:
                async with asyncio.timeout(deadline):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    return
                yield chunk

    async def _put_file(self, name: str, path: Path) -> None:
        size = (await asyncio.to_thread(path.stat)).st_size
        what = f"upload {self._container}/{name}"
        with self._errors(what), response_cap(self._options.max_page_bytes), path.open("rb") as fh:
            await self._client.get_blob_client(name).upload_blob(
                fh,
                overwrite=True,
                length=size,
                max_concurrency=self._options.max_concurrency,
            )

    async def _put_bytes(self, name: str, data: bytes, *, overwrite: bool, content_type: str) -> BlobInfo:
        async with self._call(f"upload {self._container}/{name}"):
            try:
                result = await self._client.get_blob_client(name).upload_blob(
                    data, overwrite=overwrite, content_settings=ContentSettings(content_type=content_type)
                )
            except ResourceExistsError:
                raise BlobExists(name) from None
        return BlobInfo(name, _etag(result["etag"]), result["last_modified"], len(data))

    async def _delete(self, name: str) -> None:
        async with self._call(f"delete {self._container}/{name}"):
            try:
                await self._client.get_blob_client(name).delete_blob()
            except ResourceNotFoundError as exc:
                if _code(exc) == "ContainerNotFound":
                    raise

    # --- errors ------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _call(self, what: str, cap: int | None = None) -> AsyncIterator[None]:
        """One store call: done within the call deadline (retries included), its responses' bodies capped
        (``cap``, else a page's), its errors translated and scrubbed."""
        deadline = self._options.call_timeout
        with self._errors(what), response_cap(cap or self._options.max_page_bytes):
            try:
                async with asyncio.timeout(deadline):
                    yield
            except TimeoutError:
                raise StoreUnavailable(
                    self._msg(f"{what}: no complete answer within {deadline:g} s")
                ) from None

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
        if isinstance(exc, ResponseTooLarge | EncodedResponse):
            raise StoreProtocolError(self._msg(f"{what}: the endpoint's answer is {exc}")) from None
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


def _blob_info(item: Any) -> BlobInfo:
    """A listing entry, checked: what the SDK hands back from a malformed page may hold None anywhere."""
    name, etag, modified, size = item.name, item.etag, item.last_modified, item.size
    if not (isinstance(name, str) and isinstance(etag, str) and isinstance(modified, datetime)):
        raise TypeError(f"listing entry {str(name)[:100]!r} lacks a name, ETag or Last-Modified")
    return BlobInfo(name, _etag(etag), modified, size if isinstance(size, int) else 0)


def refuse_unless_allowed(url: str, allowed: tuple[str, ...]) -> None:
    """Raise HostNotAllowed unless ``url``'s host is on the allow-list."""
    if not host_allowed(url, allowed):
        raise HostNotAllowed(
            f"account host {url_host(url)!r} is not allowed: the operator sends credentials only to hosts "
            f"matching its setting allowed_account_hosts (env MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS), "
            f"now {', '.join(allowed)}"
        )


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
        "transport": CappedTransport(
            connection_timeout=opts.connection_timeout,
            read_timeout=opts.read_timeout,
            connection_data_block_size=_DATA_BLOCK_SIZE,
        ),
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
    if urlsplit(account_url).scheme.lower() != "https":
        raise StoreConfigError(
            f"a token credential (workload identity) needs an https:// account URL, not {url_host(account_url)!r} "
            "over http: the Azure SDK sends tokens only over TLS. Use https, or a Secret (auth.secretRef)"
        )
    if token_credential is not None:
        return StorageOnlyCredential(token_credential), None
    from azure.identity.aio import DefaultAzureCredential

    ids = {}
    if creds.client_id:
        ids = {"workload_identity_client_id": creds.client_id, "managed_identity_client_id": creds.client_id}
    owned = DefaultAzureCredential(**ids)
    return StorageOnlyCredential(owned), owned


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

    ``token_credential`` replaces DefaultAzureCredential (which is then not created); either is wrapped so
    that it issues storage tokens only (with ``owns_token_credential`` the store closes the given one). With
    ``options.allowed_hosts`` set, a host off the list raises HostNotAllowed before any credential exists.
    Raises StoreConfigError.
    """
    opts = options or StoreOptions()
    # The counting hook must exist before the client, and the store is built around the client.
    store_holder: list[AzureBlobStore] = []

    def hook(request: Any) -> None:
        store_holder[0].on_request(request)

    client_kwargs = _client_kwargs(opts, hook)
    owned: AsyncTokenCredential | None = None
    try:
        if creds.connection_string:
            service = BlobServiceClient.from_connection_string(creds.connection_string, **client_kwargs)
            if opts.allowed_hosts is not None:
                refuse_unless_allowed(service.url, opts.allowed_hosts)
        else:
            if not account_url:
                raise StoreConfigError("an account URL is required unless a connection string is given")
            if opts.allowed_hosts is not None:
                refuse_unless_allowed(account_url, opts.allowed_hosts)
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
