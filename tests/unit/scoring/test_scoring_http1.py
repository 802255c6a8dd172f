"""The shadow mirror's HTTP/1.1 client against small servers on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from scoring_service.http1 import ConnectFailed, Connection, ProtocolFailed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([b"HTTP/1.1 200 OK", b"content-length: %d" % len(body), *extra, b"", body])


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/prefix/"

    yield start
    for server in servers:
        server.close()


async def test_posts_over_one_kept_alive_connection(serve: Callable[[Handler], Awaitable[str]]) -> None:
    connections, seen = [], []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while True:
            head, body = await read_request(reader)
            seen.append(head)
            writer.write(ok(body, b"Inference-Header-Content-Length: 2"))

    connection = Connection(await serve(echo))
    for i in range(3):
        answer = await connection.post(
            "/v2/models/m/infer", b"body%d" % i, {"Content-Type": "application/json"}, 1
        )
        assert (answer.status, answer.body) == (200, b"body%d" % i)
        assert answer.headers["inference-header-content-length"] == "2"
    assert len(connections) == 1
    assert seen[0].startswith(b"POST /prefix/v2/models/m/infer HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in seen[0]
    connection.close()


async def test_an_idle_connection_the_server_closed_is_replaced(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        writer.write(ok(body))
        await writer.drain()
        writer.close()  # as a keep-alive timeout would

    connection = Connection(await serve(once))
    assert (await connection.post("/", b"a", {}, 1)).body == b"a"
    await asyncio.sleep(0.05)
    assert (await connection.post("/", b"b", {}, 1)).body == b"b"


async def test_failures_are_told_apart(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")

    with pytest.raises(TimeoutError):
        await Connection(await serve(silent)).post("/", b"x", {}, 0.2)
    with pytest.raises(ProtocolFailed):
        await Connection(await serve(chunked)).post("/", b"x", {}, 1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ConnectFailed):
            await Connection(f"http://127.0.0.1:{closed_port}").post("/", b"x", {}, 1)
