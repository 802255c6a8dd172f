"""Hostile clients against a live scorer: slow or oversized requests, decoding bombs, floods of work.

Each test holds the server to what a liveness probe needs (health answers within a second while the
attack runs) and what a client needs (a 4xx with a JSON error, never a stall or a 5xx).
"""

from __future__ import annotations

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
