"""Hostile clients against a live scorer: slow or oversized requests, decoding bombs, floods of work.

Each test holds the server to what a liveness probe needs (health answers within a second while the
attack runs) and what a client needs (a 4xx with a JSON error, never a stall or a 5xx).
"""

from __future__ import annotations

import base64
import gzip
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from integration.scoring.conftest import Server
from PIL import Image
from unit.scoring.scoring_models import DATATYPES

pytestmark = pytest.mark.integration

HEALTH_BUDGET = 1.0
"""Seconds within which /v2/health/live must answer while an attack runs."""

ROW = [0.04, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]
GOOD = orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": ROW}]})


@contextmanager
def health_probe(server: Server) -> Iterator[list[float]]:
    """Probe /v2/health/live every 50 ms while the block runs; yields the latencies (seconds)."""
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                start = time.perf_counter()
                assert client.get(server.url + "/v2/health/live").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.05)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    time.sleep(0.2)
    try:
        yield latencies
    finally:
        stop.set()
        thread.join(timeout=60)
    assert latencies, "the health probe never answered"


def assert_json_error(status: int, body: bytes, expected: int) -> str:
    assert status == expected, body[:300]
    error = orjson.loads(body)["error"]
    assert isinstance(error, str)
    assert error
    return error


# -- raw sockets: what httpx will not send ----------------------------------------------------


def connect(server: Server, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    if first:
        sock.sendall(first)
    sock.setblocking(False)
    return sock


def read_reply(sock: socket.socket) -> tuple[bytes, bool]:
    """What the server has sent so far, and whether it closed the connection."""
    chunks: list[bytes] = []
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return b"".join(chunks), False
        except OSError:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)


def trickle(
    socks: list[socket.socket], piece: bytes, seconds: float, step: float = 0.5
) -> tuple[dict[int, float], dict[int, bytes]]:
    """Send `piece` on every open socket each `step` seconds: when each one was closed, and what it got."""
    start = time.monotonic()
    closed: dict[int, float] = {}
    replies: dict[int, bytes] = {}
    while len(closed) < len(socks) and time.monotonic() - start < seconds:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            data, gone = read_reply(sock)
            replies[i] = replies.get(i, b"") + data
            if not gone:
                try:
                    sock.sendall(piece)
                except OSError:
                    gone = True
            if gone:
                closed[i] = time.monotonic() - start
        time.sleep(step)
    return closed, replies


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


# -- 11: slowloris ----------------------------------------------------------------------------


def cut_within(deadline: float, server: Server, socks: list[socket.socket], piece: bytes) -> dict[int, bytes]:
    """Trickle `piece` on every socket while probing health: each is closed by the deadline (plus the
    trickle's step), health answers throughout. What each socket received."""
    try:
        with health_probe(server) as latencies:
            closed, replies = trickle(socks, piece, seconds=12)
    finally:
        for sock in socks:
            sock.close()
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} slow connections still open after 12 s"
    assert max(closed.values()) < deadline + 2.5
    assert max(latencies) < HEALTH_BUDGET, f"health took {max(latencies):.2f} s"
    return replies


def test_slow_and_idle_connections_are_cut_at_the_header_deadline(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    server = start_server(example_bundles["diabetes"], env={"SCORING_HEADER_TIMEOUT": "2"})
    head = b"POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: x\r\n"
    socks = [connect(server, head) for _ in range(290)] + [connect(server) for _ in range(10)]
    replies = cut_within(2, server, socks, b"X-Slow: 1\r\n")
    status, headers, body = split_response(replies[0])
    assert (status, headers["connection"]) == (408, "close")
    assert "headers" in assert_json_error(status, body, 408)


def test_slow_bodies_are_cut_at_the_body_deadline(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    server = start_server(example_bundles["diabetes"], env={"SCORING_BODY_TIMEOUT": "2"})
    infer = b"POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
    score = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
    # A route that never reads its body answers at once, but the body must not hold the connection.
    health = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    socks = [connect(server, infer) for _ in range(20)] + [connect(server, score) for _ in range(10)]
    socks += [connect(server, health) for _ in range(10)]
    replies = cut_within(2, server, socks, b" ")
    for i in (0, 25):  # /v2/models/.../infer, /score
        status, headers, body = split_response(replies[i])
        assert headers["connection"] == "close"
        assert "body" in assert_json_error(status, body, 408)
    assert split_response(replies[35])[0] == 200
    assert "unhandled" not in server.log()


def test_ordinary_clients_are_not_cut(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    """Pipelined requests, and a request whose head and body arrive in pieces within the deadlines."""
    server = start_server(
        example_bundles["diabetes"], env={"SCORING_HEADER_TIMEOUT": "2", "SCORING_BODY_TIMEOUT": "2"}
    )
    infer = (
        b"POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(GOOD) + GOOD
    )
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with sock, sock.makefile("rb") as replies:
        sock.sendall(infer + infer)
        for piece in (infer[:20], infer[20:-40], infer[-40:]):
            time.sleep(1.2)  # each piece within its deadline, the whole request beyond one
            sock.sendall(piece)
        for _ in range(3):
            status = replies.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := replies.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert b"outputs" in replies.read(length)


def test_an_oversized_head_is_431(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    server = start_server(example_bundles["diabetes"])
    sock = connect(server, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
    try:
        closed, replies = trickle([sock], b"X-Filler: " + b"a" * 4000 + b"\r\n", seconds=8, step=0.05)
    finally:
        sock.close()
    assert closed, "a head without end was read for 8 s"
    status, _, body = split_response(replies[0])
    assert "header" in assert_json_error(status, body, 431)


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /v2/health/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_invalid_http_is_a_json_400(server: Server, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status, headers, body = split_response(reply)
    assert headers["content-type"] == "application/json"
    assert_json_error(status, body, 400)


# -- 11: concurrency --------------------------------------------------------------------------


def test_requests_beyond_the_concurrency_limit_get_a_fast_503(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    server = start_server(example_bundles["diabetes"], env={"SCORING_MAX_CONCURRENT_REQUESTS": "2"})
    head = b"POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(GOOD)
    pending = [connect(server, head + GOOD[:5]) for _ in range(2)]  # two requests waiting for their bodies
    try:
        time.sleep(0.3)
        start = time.perf_counter()
        busy = httpx.post(server.url + "/v2/models/diabetes/infer", content=GOOD, timeout=10)
        assert time.perf_counter() - start < HEALTH_BUDGET
        assert "busy" in assert_json_error(busy.status_code, busy.content, 503)
        assert busy.headers["retry-after"] == "1"
        assert httpx.get(server.url + "/v2/health/live", timeout=1).status_code == 200
        for sock in pending:
            sock.setblocking(True)
            sock.sendall(GOOD[5:])
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for sock in pending:
            sock.close()
    assert httpx.post(server.url + "/v2/models/diabetes/infer", content=GOOD).status_code == 200


# -- 11: images and decompression -------------------------------------------------------------


def big_png_b64() -> str:
    """A 4000x4000 PNG of ~16 KB: cheap to send, 16 million pixels to decode."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4000, 4000), np.uint8)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def images_body(count: int) -> bytes:
    tensor = {"name": "input", "datatype": "BYTES", "shape": [count], "data": [big_png_b64()] * count}
    return orjson.dumps({"inputs": [tensor]})


def test_many_large_images_are_refused_before_decoding(server: Server) -> None:
    body = images_body(144)  # ~3 MB, 2.3 billion pixels
    with health_probe(server) as latencies:
        start = time.perf_counter()
        response = httpx.post(server.url + "/v2/models/digits/infer", content=body, timeout=60)
        elapsed = time.perf_counter() - start
    assert "images" in assert_json_error(response.status_code, response.content, 400)
    assert elapsed < 2.0
    assert max(latencies) < HEALTH_BUDGET


def test_image_decoding_runs_off_the_event_loop(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    server = start_server(
        example_bundles["digits"],
        env={"SCORING_MAX_IMAGES": "1000", "SCORING_MAX_REQUEST_PIXELS": str(10**12)},
    )
    with health_probe(server) as latencies:
        start = time.perf_counter()
        response = httpx.post(server.url + "/v2/models/digits/infer", content=images_body(30), timeout=120)
        elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text
    assert elapsed > 1.0, "decoding 480 million pixels should take a while; the test proves nothing"
    assert max(latencies) < HEALTH_BUDGET, f"health took {max(latencies):.2f} s while images decoded"


def peak_rss_growth(server: Server, action: Callable[[], None]) -> int:
    """Bytes the server's peak RSS grew by during `action` (the kernel's high-water mark, reset first)."""
    pid = server.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")

    def field(name: str) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(name)

    before = field("VmRSS")
    action()
    return field("VmHWM") - before


def test_a_gzip_bomb_is_refused_in_bounded_memory(server: Server) -> None:
    data = b"[" + b"0," * 31_000_000 + b"0]"  # 59 MiB of JSON in a 60 KiB gzip body
    bomb = gzip.compress(
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":' + data + b"}]}"
    )
    responses: list[httpx.Response] = []

    def send() -> None:
        responses.append(
            httpx.post(
                server.url + "/v2/models/diabetes/infer",
                content=bomb,
                headers={"Content-Encoding": "gzip"},
                timeout=60,
            )
        )

    growth = peak_rss_growth(server, send)
    assert "decompressed" in assert_json_error(responses[0].status_code, responses[0].content, 413)
    assert growth < 48 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MiB"


def test_a_large_json_body_is_refused_before_parsing(server: Server) -> None:
    body = (
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[' + b"0," * 5_000_000 + b"0]}]}"
    )
    responses: list[httpx.Response] = []

    def send() -> None:
        responses.append(httpx.post(server.url + "/v2/models/diabetes/infer", content=body, timeout=60))

    growth = peak_rss_growth(server, send)
    assert "binary tensor data" in assert_json_error(responses[0].status_code, responses[0].content, 413)
    assert growth < 48 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MiB"


@pytest.mark.parametrize("path", ["/v2/models/diabetes/infer", "/score"])
def test_an_all_json_body_above_the_budget_is_refused_unread(server: Server, path: str) -> None:
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), 5 * 2**20)
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(head)  # and not one byte of the 5 MiB it announces
        reply = sock.recv(65536)
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < int(
            split_response(reply)[1]["content-length"]
        ):
            reply += sock.recv(65536)
    status, _, body = split_response(reply)
    assert "binary tensor data" in assert_json_error(status, body, 413)


# -- 12: what JSON can smuggle in -------------------------------------------------------------


DEEP, DEEP_INT = "@deep@", 424242
"""Placeholders for a value nested 1000 lists deep (orjson will not write one: it stops at 255)."""


def dumps(body: object) -> bytes:
    nested = [b"[" * 1000 + leaf + b"]" * 1000 for leaf in (b'"a"', b"1")]
    return orjson.dumps(body).replace(b'"@deep@"', nested[0]).replace(b"424242", nested[1])


def tensor(**fields: object) -> dict[str, object]:
    return {"name": "input", "datatype": "FP32", "shape": [1, 10], "data": ROW, **fields}


def identity(datatype: str, **fields: object) -> dict[str, object]:
    """A request for the identity model: `fields` for the input of `datatype`, zeros for the others."""
    inputs = [
        {"name": f"in_{dt}", "datatype": dt, "shape": [1, 2], "data": [False] * 2 if dt == "BOOL" else
         [""] * 2 if dt == "BYTES" else [0] * 2}
        for dt in DATATYPES
    ]  # fmt: skip
    inputs[list(DATATYPES).index(datatype)].update(fields)
    return {"inputs": inputs, "outputs": [{"name": f"out_{datatype}"}]}


HOSTILE: dict[str, tuple[str, object]] = {
    "BYTES data 1000 deep": ("identity", identity("BYTES", data=DEEP)),
    "INT64 data 1000 deep": ("identity", identity("INT64", data=DEEP_INT)),
    "name 1000 deep": ("diabetes", {"inputs": [tensor(name=DEEP)]}),
    "datatype 1000 deep": ("diabetes", {"inputs": [tensor(datatype=DEEP)]}),
    "shape 1000 deep": ("diabetes", {"inputs": [tensor(shape=[1, DEEP_INT])]}),
    "binary_data_size 1000 deep": ("diabetes", {"inputs": [tensor(parameters={"binary_data_size": DEEP_INT})]}),
    "output name 1000 deep": ("diabetes", {"inputs": [tensor()], "outputs": [{"name": DEEP}]}),
    "id 1000 deep": ("diabetes", {"inputs": [tensor()], "id": DEEP}),
    "image data 1000 deep": ("digits", {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                                                    "data": DEEP}]}),
    "FP32 1e39": ("diabetes", {"inputs": [tensor(data=[1e39, *ROW[1:]])]}),
    "FP16 70000": ("identity", identity("FP16", data=[70000, 1])),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_json_is_a_400(server: Server, case: str) -> None:
    model, body = HOSTILE[case]
    response = httpx.post(f"{server.url}/v2/models/{model}/infer", content=dumps(body))
    assert_json_error(response.status_code, response.content, 400)


@pytest.mark.parametrize(
    "body", [{"data": DEEP}, {"input": DEEP}, {"data": [ROW], "top_k": DEEP_INT}, {"data": [[1e39] * 10]}]
)
def test_hostile_score_is_a_400(server: Server, body: object) -> None:
    response = httpx.post(server.url + "/score", content=dumps(body))
    assert_json_error(response.status_code, response.content, 400)


@pytest.mark.parametrize(
    ("datatype", "value"), [("FP32", np.nan), ("FP32", np.inf), ("FP64", -np.inf), ("FP16", np.nan)]
)
def test_non_finite_binary_tensors_are_a_400(server: Server, datatype: str, value: float) -> None:
    dtype = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}[datatype]
    raw = np.asarray([[1.0, value]], dtype=dtype).tobytes()
    request = identity(datatype, parameters={"binary_data_size": len(raw)})
    del request["inputs"][list(DATATYPES).index(datatype)]["data"]  # type: ignore[index]
    head = orjson.dumps(request)
    response = httpx.post(
        server.url + "/v2/models/identity/infer",
        content=head + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert "finite" in assert_json_error(response.status_code, response.content, 400)


# -- 13: operations port ----------------------------------------------------------------------


def test_metrics_and_docs_only_on_the_operations_port(server: Server) -> None:
    httpx.post(server.url + "/v2/models/diabetes/infer", content=GOOD)
    for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
        response = httpx.get(server.url + path)
        assert_json_error(response.status_code, response.content, 404)
    metrics = httpx.get(server.metrics_url + "/metrics")
    assert metrics.status_code == 200
    assert (
        'scoring_requests_total{code="200",endpoint="infer",model="diabetes",version="1.0.0"}' in metrics.text
    )
    assert "/v2/models/{name}/infer" in httpx.get(server.metrics_url + "/openapi.json").json()["paths"]
    assert "swagger" in httpx.get(server.metrics_url + "/docs").text.lower()
    # The operations port serves operations only.
    assert httpx.get(server.metrics_url + "/v2/health/live").status_code == 404
    assert httpx.post(server.metrics_url + "/v2/models/diabetes/infer", content=GOOD).status_code == 404


def test_the_operations_port_can_be_turned_off(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    server = start_server(example_bundles["diabetes"], env={"SCORING_METRICS_PORT": "0"})
    assert httpx.get(server.url + "/metrics").status_code == 404
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.metrics_url + "/metrics")
