"""A blob endpoint that misbehaves, on 127.0.0.1 at a random port, for the store's hostile-input tests.

It speaks just enough of the Blob REST API for the real azure-storage-blob client: container listings
(`?comp=list`) and blob reads (GET with a Range). What it does wrong is chosen per test: a listing that
never ends, an entry without properties, a huge or trickled manifest, a 401 that asks for a token of
another audience, a redirect to another host. Every request is recorded (method, path, query, Authorization header).

Run as a script (`python tests/hostile_blob.py SCENARIO`), it plays a scenario in a fresh process and
prints one JSON line: what the peak RSS was, or which token scopes were asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

ACCOUNT = "devstoreaccount1"
STAMP = "Mon, 05 Jan 2026 10:00:00 GMT"
MIB = 1024 * 1024


def entry(name: str, size: int = 100, *, properties: bool = True) -> str:
    """One <Blob> of a listing; ``properties=False`` leaves out what every real service sends."""
    props = (
        f"<Properties><Last-Modified>{STAMP}</Last-Modified><Etag>0x8DE{abs(hash(name)) % 10**9:09d}</Etag>"
        f"<Content-Length>{size}</Content-Length><BlobType>BlockBlob</BlobType></Properties>"
    )
    return f"<Blob><Name>{name}</Name>{props if properties else ''}</Blob>"


def listing(container: str, entries: list[str], next_marker: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<EnumerationResults ServiceEndpoint="http://127.0.0.1/{ACCOUNT}/" ContainerName="{container}">'
        f"<Blobs>{''.join(entries)}</Blobs><NextMarker>{next_marker}</NextMarker></EnumerationResults>"
    ).encode()


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    authorization: str


Handler = Callable[[web.Request], Any]


@dataclass
class HostileBlob:
    """The endpoint. Set ``list_handler`` / ``get_handler`` to what the test wants; the defaults serve
    ``manifests`` (name → bytes) correctly, so a test can switch a misbehaving endpoint back to a good one."""

    manifests: dict[str, bytes] = field(default_factory=dict)
    list_handler: Handler | None = None
    get_handler: Handler | None = None
    challenge: str = ""
    redirect: str = ""
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    scheme: str = "http"
    _runner: web.AppRunner | None = None

    @property
    def account_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    async def start(self, ssl_context: Any = None) -> HostileBlob:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.scheme = "https" if ssl_context is not None else "http"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(request.method, request.path, dict(request.query), request.headers.get("Authorization", ""))
        )
        if self.challenge:
            return web.Response(status=401, headers={"WWW-Authenticate": self.challenge})
        if self.redirect:
            return web.Response(status=307, headers={"Location": self.redirect + request.path_qs})
        if request.query.get("comp") == "list":
            return await (self.list_handler or self._list_ok)(request)
        return await (self.get_handler or self._get_ok)(request)

    async def _list_ok(self, request: web.Request) -> web.Response:
        container = request.path.split("/")[2]
        prefix = request.query.get("prefix", "")
        names = [n for n in sorted(self.manifests) if n.startswith(prefix)]
        body = listing(container, [entry(n, len(self.manifests[n])) for n in names])
        return web.Response(body=body, content_type="application/xml")

    async def _get_ok(self, request: web.Request) -> web.Response:
        name = request.path.split("/", 3)[3]
        data = self.manifests.get(name)
        if data is None:
            return web.Response(status=404, headers={"x-ms-error-code": "BlobNotFound"})
        return web.Response(body=data, headers=blob_headers(len(data), 0, len(data) - 1))


def blob_headers(total: int, start: int, end: int) -> dict[str, str]:
    return {
        "Content-Range": f"bytes {start}-{end}/{total}",
        "Content-Type": "application/json",
        "ETag": '"0x8DE000000000001"',
        "Last-Modified": STAMP,
        "x-ms-blob-type": "BlockBlob",
    }


def requested_range(request: web.Request, total: int) -> tuple[int, int]:
    spec = request.headers.get("x-ms-range") or request.headers.get("Range") or ""
    if spec.startswith("bytes="):
        first, _, last = spec[6:].partition("-")
        return int(first), min(int(last) if last else total - 1, total - 1)
    return 0, total - 1


def huge_blob(total: int, *, chunked: bool = False) -> Handler:
    """A blob of ``total`` bytes served range by range, generated as it is sent; ``chunked``: without a
    Content-Length, so that only counting the bytes as they come can stop it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        start, end = requested_range(request, total)
        response = web.StreamResponse(status=206, headers=blob_headers(total, start, end))
        if not chunked:
            response.content_length = end - start + 1
        await response.prepare(request)
        left, block = end - start + 1, b'{"x":"' + b"x" * (MIB - 6)
        with contextlib.suppress(ConnectionError):  # the client hangs up: what a cap does
            while left > 0:
                await response.write(block[: min(left, MIB)])
                left -= MIB
        return response

    return handler


def trickled_blob(data: bytes, every: float) -> Handler:
    """A small blob sent one byte every ``every`` seconds: each read is quick, the whole never ends soon."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=206, headers=blob_headers(len(data), 0, len(data) - 1))
        response.content_length = len(data)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for i in range(len(data)):
                await response.write(data[i : i + 1])
                await asyncio.sleep(every)
        return response

    return handler


def endless_listing(per_page: int = 1000) -> Handler:
    """Page after page of new blobs, each page pointing to a next one."""

    async def handler(request: web.Request) -> web.Response:
        container = request.path.split("/")[2]
        page = int(request.query.get("marker") or 0)
        names = [f"junk/{page:08d}/{i:05d}/model.onnx" for i in range(per_page)]
        body = listing(container, [entry(n) for n in names], next_marker=str(page + 1))
        return web.Response(body=body, content_type="application/xml")

    return handler


def listing_of(entries: list[str]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = listing(request.path.split("/")[2], entries)
        return web.Response(body=body, content_type="application/xml")

    return handler


# --- scenarios run in a fresh process -------------------------------------------------------------------


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def operator_poller(
    url: str, container: str, creds: Any, interval: float = 60.0, **settings: Any
) -> tuple[Any, Any]:
    """A poller the way the operator builds one (its settings, store factory and registry), for one
    ModelApp reading prefix ``m/``. Returns (reconciler, poller); close the reconciler afterwards."""
    from kubernetes_asyncio import client
    from modelapp_operator.loop import Reconciler
    from modelapp_operator.poller import AppKey, Endpoint, Subscription
    from modelapp_operator.settings import OperatorSettings

    async def no_events(*_: Any, **__: Any) -> None:
        return None

    reconciler = Reconciler(client.ApiClient(), OperatorSettings(**settings), no_events)
    endpoint = Endpoint(url, container, "test")
    reconciler.gather.credentials[endpoint] = creds
    poller = reconciler.registry.subscribe(AppKey("ns", "app"), endpoint, Subscription("m/", interval))
    return reconciler, poller


async def scenario_huge_manifest(mib: int, chunked: bool) -> dict[str, Any]:
    from modelapp_operator.snapshot import Published
    from modelapp_operator.store import BlobCredentials

    server = await HostileBlob(get_handler=huge_blob(mib * MIB, chunked=chunked)).start()
    creds = BlobCredentials(sas_token="sv=2024&sig=hostile")
    reconciler, poller = await operator_poller(server.account_url, "c", creds)
    before = peak_rss_mib()
    outcome: str
    try:
        got = await poller.manifest("m/", Published("1", '"0x8DE000000000001"', datetime.now(UTC)))
        outcome = f"unusable: {got}" if isinstance(got, str) else "read"
    except Exception as exc:  # the scenario reports whatever happened
        outcome = f"{type(exc).__name__}: {exc}"
    await reconciler.close()
    await server.stop()
    return {"rss_before_mib": before, "peak_rss_mib": peak_rss_mib(), "outcome": outcome[:300]}


class RecordingCredential:
    """A token credential that hands out a token naming its scope, and remembers every scope asked for."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    async def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        return AccessToken("token-for-" + "+".join(scopes), int(datetime.now(UTC).timestamp()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> RecordingCredential:
        return self

    async def __aexit__(self, *_: Any) -> None:
        return None


async def _token_listing(url: str, options: Any) -> str:
    from modelapp_operator.store import BlobCredentials, store_from_credentials

    try:
        async with store_from_credentials(
            url, "c", BlobCredentials(), options=options, token_credential=RECORDER
        ) as store:
            await store.snapshot()
    except Exception as exc:  # the scenario reports whatever happened
        return f"{type(exc).__name__}: {exc}"[:300]
    return "listed"


RECORDER = RecordingCredential()
MANAGEMENT_CHALLENGE = (
    "Bearer authorization_uri=https://login.microsoftonline.com/hostile-tenant/oauth2/authorize "
    "resource_id=https://management.azure.com"
)


async def scenario_challenge(cert: str, key: str) -> dict[str, Any]:
    """An https endpoint answering 401 with a challenge for a management-plane token."""
    import ssl

    from modelapp_operator.store import StoreOptions

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await HostileBlob(challenge=MANAGEMENT_CHALLENGE).start(ssl_context=context)
    outcome = await _token_listing(server.account_url, StoreOptions(retry_total=0))
    await server.stop()
    return {
        "outcome": outcome,
        "scopes": RECORDER.scopes,
        "authorizations": sorted({s.authorization for s in server.seen}),
    }


def self_signed(directory: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (PEM files in ``directory``): trusted by the scenario's process through
    SSL_CERT_FILE, by nothing else."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = f"{directory}/cert.pem", f"{directory}/key.pem"
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path


async def _amain(argv: list[str]) -> dict[str, Any]:
    if argv[0] == "huge-manifest":
        return await scenario_huge_manifest(int(argv[1]), chunked=argv[2:] == ["chunked"])
    if argv[0] == "challenge":
        return await scenario_challenge(argv[1], argv[2])
    raise SystemExit(f"unknown scenario {argv[0]!r}")


def run_scenario(*argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Play a scenario in a fresh Python process (its own peak RSS, its own trust store)."""
    import os
    import subprocess

    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELAPP_")}
    proc = subprocess.run(
        [sys.executable, __file__, *argv],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_amain(sys.argv[1:]))))
