"""The HTTP API in-process: OIP health/metadata/infer (JSON and binary), the seeds' API, errors, metrics."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from unit.scoring.conftest import ops
from unit.scoring.scoring_models import CLASSIFIER_LABELS, DATATYPES, LINEAR_B, LINEAR_W, b64, png

pytestmark = pytest.mark.unit

ROWS = [[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]]
EXPECTED = (np.asarray(ROWS, dtype=np.float32) @ LINEAR_W + LINEAR_B).reshape(-1)


def infer_body(rows: Any = ROWS, **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(rows), 3], "data": rows}], **extra}


def error_of(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    return str(body["error"])


# -- health and metadata ---------------------------------------------------------------------


def test_health_live_and_ready(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    response = client.get("/v2/health/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True})


def test_server_metadata(client: TestClient) -> None:
    body = client.get("/v2").json()
    assert body["name"] == "modelapp-scoring-service"
    assert "binary_tensor_data" in body["extensions"]
    assert body["version"]


def test_model_metadata_from_the_graph(client: TestClient) -> None:
    body = client.get("/v2/models/linear").json()
    assert body == {
        "name": "linear",
        "versions": ["2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
    }
    assert client.get("/v2/models/linear/versions/1").json()["versions"] == ["1"]
    identity = client.get("/v2/models/identity/versions/1").json()
    assert {i["datatype"] for i in identity["inputs"]} == set(DATATYPES)


def test_model_ready_and_unknown_models(client: TestClient) -> None:
    assert client.get("/v2/models/linear/ready").json()["ready"] is True
    assert client.get("/v2/models/linear/versions/1/ready").status_code == 200
    for path in ("/v2/models/nope/ready", "/v2/models/linear/versions/9/ready", "/v2/models/nope"):
        response = client.get(path)
        assert response.status_code == 404
        assert "not found" in error_of(response) or "no version" in error_of(response)


# -- inference -------------------------------------------------------------------------------


def test_json_infer_unversioned_serves_the_latest_version(client: TestClient) -> None:
    response = client.post("/v2/models/linear/infer", json=infer_body(id="req-1"))
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("linear", "2", "req-1")
    (out,) = body["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("y", "FP32", [2, 1])
    np.testing.assert_allclose(out["data"], EXPECTED, rtol=1e-6)


def test_json_infer_versioned_and_nested_or_flat_data(client: TestClient) -> None:
    flat = infer_body()
    flat["inputs"][0]["data"] = [v for row in ROWS for v in row]
    response = client.post("/v2/models/linear/versions/1/infer", json=flat)
    assert response.json()["model_version"] == "1"
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], EXPECTED, rtol=1e-6)


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_json_infer_every_datatype(client: TestClient, datatype: str) -> None:
    values: dict[str, list[Any]] = {
        "BOOL": [True, False, False, True],
        "BYTES": ["a", "bc", "", "é"],
        "FP16": [0.5, -1.0, 2.0, 0.25],
        "FP32": [0.5, -1.0, 2.0, 0.25],
        "FP64": [0.1, -1.0, 2.0, 1e300],
        "INT8": [-128, 0, 1, 127],
        "UINT64": [0, 1, 2**63, 2**64 - 1],
        "INT64": [-(2**63), 0, 1, 2**63 - 1],
    }
    data = values.get(datatype, [0, 1, 2, 3])
    inputs = [
        {"name": f"in_{dt}", "datatype": dt, "shape": [2, 2], "data": data if dt == datatype else _zeros(dt)}
        for dt in DATATYPES
    ]
    response = client.post(
        "/v2/models/identity/infer", json={"inputs": inputs, "outputs": [{"name": f"out_{datatype}"}]}
    )
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == (f"out_{datatype}", datatype, [2, 2])
    assert out["data"] == data


def _zeros(dt: str) -> list[Any]:
    return [False] * 4 if dt == "BOOL" else [""] * 4 if dt == "BYTES" else [0] * 4


def binary_request(
    inputs: list[tuple[str, str, list[int], bytes]], extra: dict[str, Any] | None = None
) -> tuple[bytes, dict[str, str]]:
    header = {
        "inputs": [
            {"name": n, "datatype": dt, "shape": s, "parameters": {"binary_data_size": len(raw)}}
            for n, dt, s, raw in inputs
        ],
        **(extra or {}),
    }
    head = orjson.dumps(header)
    body = head + b"".join(raw for *_, raw in inputs)
    return body, {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def split_binary(response: Any) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["inference-header-content-length"])
    return orjson.loads(response.content[:length]), response.content[length:]


def test_binary_infer_request_and_response(client: TestClient) -> None:
    rows = np.asarray(ROWS, dtype=np.float32)
    body, headers = binary_request(
        [("x", "FP32", [2, 3], rows.tobytes())], {"parameters": {"binary_data_output": True}}
    )
    response = client.post("/v2/models/linear/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, raw = split_binary(response)
    (out,) = header["outputs"]
    assert "data" not in out
    assert out["parameters"] == {"binary_data_size": 8}
    np.testing.assert_allclose(np.frombuffer(raw, dtype=np.float32), EXPECTED, rtol=1e-6)


def test_binary_output_selection_per_output(client: TestClient) -> None:
    x = np.asarray([[9, 0, 0, 0]], dtype=np.float32)
    response = client.post(
        "/v2/models/classifier/infer",
        json={
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.tolist()}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
        },
    )
    header, raw = split_binary(response)
    probs, label = header["outputs"]
    assert label == {"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}
    assert probs["parameters"]["binary_data_size"] == 12 == len(raw)
    assert np.frombuffer(raw, dtype=np.float32).argmax() == 0


def test_binary_bytes_and_mixed_json_inputs(client: TestClient) -> None:
    strings = struct.pack("<I", 1) + b"a" + struct.pack("<I", 2) + b"bc" + struct.pack("<I", 0) * 2
    inputs = [(f"in_{dt}", dt, [2, 2], np.zeros(4, dtype="<f4" if dt == "FP32" else "<f8").tobytes())
              for dt in ("FP32", "FP64")]  # fmt: skip
    inputs.append(("in_BYTES", "BYTES", [2, 2], strings))
    header = {"outputs": [{"name": "out_BYTES", "parameters": {"binary_data": True}}]}
    json_inputs = [{"name": f"in_{dt}", "datatype": dt, "shape": [2, 2], "data": _zeros(dt)}
                   for dt in DATATYPES if dt not in ("FP32", "FP64", "BYTES")]  # fmt: skip
    body, headers = binary_request(inputs, header)
    doc = orjson.loads(body[: int(headers["Inference-Header-Content-Length"])])
    doc["inputs"] = json_inputs + doc["inputs"]
    head = orjson.dumps(doc)
    body = head + body[int(headers["Inference-Header-Content-Length"]) :]
    headers["Inference-Header-Content-Length"] = str(len(head))
    response = client.post("/v2/models/identity/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    _, raw = split_binary(response)
    assert raw == strings


def test_gzip_request_body(client: TestClient) -> None:
    response = client.post(
        "/v2/models/linear/infer",
        content=gzip.compress(orjson.dumps(infer_body())),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], EXPECTED, rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"{}", "'inputs' must be a non-empty list"),
        (b'{"inputs": [1]}', "must be an object"),
        (
            b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}',
            "unknown input",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]}',
            "does not match",
        ),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}', "shape"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]}', "shape"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2]}]}', "needs 3"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": ["a", 2, 3]}]}', "numbers"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3]}]}', "needs 'data'"),
        (b'{"inputs": [{"name": "x", "datatype": "NOPE", "shape": [1, 3], "data": [1, 2, 3]}]}', "datatype"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}], "outputs": [{"name": "q"}]}',
            "unknown output",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}], "id": 5}',
            "'id'",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1,3], "parameters": {"binary_data_size": 12}}]}',
            "without Inference-Header-Content-Length",
        ),
    ],
)
def test_bad_requests_are_400_with_an_error_body(client: TestClient, body: bytes, message: str) -> None:
    response = client.post(
        "/v2/models/linear/infer", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert message in error_of(response)


def test_binary_framing_errors(client: TestClient) -> None:
    body, headers = binary_request([("x", "FP32", [1, 3], bytes(12))])
    for extra, message in ((b"\x00", "not claimed"), (b"", None)):
        response = client.post("/v2/models/linear/infer", content=body + extra, headers=headers)
        assert response.status_code == (400 if message else 200)
        if message:
            assert message in error_of(response)
    response = client.post(
        "/v2/models/linear/infer", content=body[:-4], headers=headers
    )  # size claims more than sent
    assert "exceeds the binary data" in error_of(response)
    headers["Inference-Header-Content-Length"] = "99999"
    assert client.post("/v2/models/linear/infer", content=body, headers=headers).status_code == 400


def test_unknown_model_version_route_and_method(client: TestClient) -> None:
    assert client.post("/v2/models/nope/infer", json=infer_body()).status_code == 404
    assert client.post("/v2/models/linear/versions/7/infer", json=infer_body()).status_code == 404
    response = client.get("/v2/nothing-here")
    assert response.status_code == 404
    error_of(response)
    assert client.get("/v2/models/linear/infer").status_code == 405


def test_body_limit(model_dir: Path, make_client: Callable[..., TestClient]) -> None:
    small = make_client(model_dir, max_request_bytes=1024, max_decompressed_bytes=1024)
    response = small.post(
        "/v2/models/linear/infer", content=b"x" * 2048, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    bomb = gzip.compress(b" " * 10_000)
    response = small.post("/v2/models/linear/infer", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413


def test_large_inputs_run_off_the_event_loop(model_dir: Path, make_client: Callable[..., TestClient]) -> None:
    threaded = make_client(model_dir, inline_max_elements=0)
    response = threaded.post("/v2/models/linear/infer", json=infer_body())
    np.testing.assert_allclose(response.json()["outputs"][0]["data"], EXPECTED, rtol=1e-6)


# -- images ----------------------------------------------------------------------------------

TOP_LEFT = png([[255, 0], [0, 0]])
BOTTOM_LEFT = png([[0, 0], [255, 0]])


def test_oip_bytes_images_json_and_binary(client: TestClient) -> None:
    response = client.post(
        "/v2/models/classifier/infer",
        json={
            "inputs": [
                {"name": "x", "datatype": "BYTES", "shape": [2], "data": [b64(TOP_LEFT), b64(BOTTOM_LEFT)]}
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0, 2]

    raw = b"".join(struct.pack("<I", len(p)) + p for p in (BOTTOM_LEFT,))
    body, headers = binary_request([("x", "BYTES", [1], raw)])
    response = client.post("/v2/models/classifier/infer", content=body, headers=headers)
    assert response.json()["outputs"][0]["data"] == [2]


def test_images_are_resized_and_converted(model_dir: Path, make_client: Callable[..., TestClient]) -> None:
    classifier = make_client(model_dir, default_model="classifier")
    lit = np.kron([[0, 255], [0, 0]], np.ones((8, 8))).astype(np.uint8)  # 16x16, resized to 2x2
    rgb = np.stack([lit, lit, lit], axis=-1).tolist()  # RGB, converted to grayscale
    response = classifier.post("/score", json={"input": b64(png(rgb, mode="RGB")), "top_k": 1})
    assert response.status_code == 200, response.text
    assert response.json()["result"][0][0]["label"] == "top-right"


@pytest.mark.parametrize(
    ("data", "message"),
    [(["bm90IGFuIGltYWdl"], "not a readable PNG or JPEG"), (["%%%"], "base64")],
)
def test_bad_images_are_400(client: TestClient, data: list[str], message: str) -> None:
    response = client.post(
        "/v2/models/classifier/infer",
        json={"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": data}]},
    )
    assert response.status_code == 400
    assert message in error_of(response)
    assert "BytesIO" not in error_of(response)  # PIL's message names an object at a memory address


def test_image_pixel_limit(model_dir: Path, make_client: Callable[..., TestClient]) -> None:
    strict = make_client(model_dir, max_image_pixels=3)
    response = strict.post(
        "/v2/models/classifier/infer",
        json={"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [b64(TOP_LEFT)]}]},
    )
    assert response.status_code == 400
    assert "exceeds the limit" in error_of(response)


# -- seeds' API ------------------------------------------------------------------------------


def test_score_mlopspython_shape(client: TestClient) -> None:
    response = client.post("/score", json={"data": ROWS})
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["result"], EXPECTED, rtol=1e-6)
    single = client.post("/score", json={"data": ROWS[0]}).json()["result"]
    np.testing.assert_allclose(single, EXPECTED[:1], rtol=1e-6)


def test_score_devops_for_ai_shape_with_labels(
    model_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    classifier = make_client(model_dir, default_model="classifier")
    response = classifier.post("/score", json={"input": b64(TOP_LEFT), "top_k": 2})
    assert response.status_code == 200, response.text
    (row,) = response.json()["result"]
    assert row[0]["label"] == CLASSIFIER_LABELS[0]
    assert len(row) == 2
    assert row[0]["probability"] > row[1]["probability"]
    many = classifier.post("/score", json={"input": [b64(TOP_LEFT), b64(BOTTOM_LEFT)]}).json()["result"]
    assert [r[0]["label"] for r in many] == ["top-left", "bottom-left"]
    assert len(many[0]) == 3  # default top_k (5) capped at the number of labels
    numeric = classifier.post("/score", json={"data": [[0, 9, 0, 0]]}).json()["result"]
    assert numeric[0][0]["label"] == "top-right"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rows": []}, '{"data"'),
        ({"data": [[1, 2]]}, "shape"),
        ({"data": "abc"}, "numbers"),
        ({"data": ROWS, "top_k": 0}, "top_k"),
    ],
)
def test_score_errors(client: TestClient, body: dict[str, Any], message: str) -> None:
    response = client.post("/score", json=body)
    assert response.status_code == 400
    assert message in error_of(response)


def test_version(client: TestClient) -> None:
    body = client.get("/version").json()
    assert (body["model_name"], body["model_version"]) == ("linear", "2")
    assert body["app_version"]
    assert {(m["name"], m["version"]) for m in body["models"]} >= {("linear", "1"), ("identity", "1")}


# -- failures, metrics -----------------------------------------------------------------------


def test_corrupt_model_is_never_served(model_dir: Path, make_client: Callable[..., TestClient]) -> None:
    model = model_dir / "linear-v2" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    client = make_client(model_dir)

    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503
    assert any("checksum mismatch for model.onnx: expected sha256" in r for r in ready.json()["reasons"])
    model_ready = client.get("/v2/models/linear/versions/2/ready")
    assert model_ready.status_code == 503
    assert "sha256" in model_ready.json()["reason"]
    response = client.post("/v2/models/linear/infer", json=infer_body())
    assert response.status_code == 503  # the latest version is broken: no silent fallback to v1
    assert "not ready" in error_of(response)
    assert client.post("/v2/models/linear/versions/1/infer", json=infer_body()).status_code == 200
    assert (
        'scoring_model_load_failures_total{model="linear",version="2"} 1.0'
        in ops(client).get("/metrics").text
    )


def test_unloadable_onnx_and_empty_dir(tmp_path: Path, make_client: Callable[..., TestClient]) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.onnx").write_bytes(b"definitely not protobuf")
    response = make_client(tmp_path).get("/v2/health/ready")
    assert response.status_code == 503
    assert "cannot load model.onnx" in response.json()["reasons"][0]
    (tmp_path / "empty").mkdir()
    response = make_client(tmp_path / "empty").get("/v2/health/ready")
    assert "no model bundle" in response.json()["reasons"][0]
    assert make_client(tmp_path / "empty").get("/version").status_code == 503


def test_metrics_by_model_version_endpoint(client: TestClient) -> None:
    client.post("/v2/models/linear/infer", json=infer_body())
    client.post("/v2/models/linear/versions/1/infer", json={"inputs": []})
    client.post("/score", json={"data": ROWS})
    text = ops(client).get("/metrics").text
    assert 'scoring_requests_total{code="200",endpoint="infer",model="linear",version="2"} 1.0' in text
    assert 'scoring_requests_total{code="400",endpoint="infer",model="linear",version="1"} 1.0' in text
    assert 'scoring_requests_total{code="200",endpoint="score",model="linear",version="2"} 1.0' in text
    assert 'scoring_request_duration_seconds_count{endpoint="infer",model="linear",version="2"} 1.0' in text
    assert 'scoring_inference_duration_seconds_count{model="linear",version="2"} 2.0' in text
    assert 'scoring_model_ready{model="identity",version="1"} 1.0' in text


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = ops(client).get("/openapi.json").json()["paths"]
    assert "/v2/models/{name}/versions/{version}/infer" in paths
    assert "requestBody" in paths["/v2/models/{name}/infer"]["post"]


@pytest.mark.parametrize("value", [b"-1", b"1e3", "\u00b2".encode("latin-1"), b""])
def test_malformed_header_length_is_400(client: TestClient, value: bytes) -> None:
    response = client.post(
        "/v2/models/linear/infer",
        content=orjson.dumps(infer_body()),
        headers={"Inference-Header-Content-Length": value},
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in error_of(response)


async def test_fast_path_and_fastapi_route_answer_identically(model_dir: Path) -> None:
    """The fast path skips FastAPI; the declared route must still behave exactly the same."""
    from fastapi import FastAPI
    from scoring_service import asgi
    from scoring_service.app import create_app
    from scoring_service.settings import Settings

    app = create_app(Settings(model_dir=model_dir))

    async def routed(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)  # skip ScoringApp.__call__'s fast path

    rows = np.asarray(ROWS, dtype=np.float32)
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3],
                                     "parameters": {"binary_data_size": rows.nbytes}}],
                         "parameters": {"binary_data_output": True}})  # fmt: skip
    cases = [
        ("/v2/models/linear/infer", orjson.dumps(infer_body(id="a")), {}),
        ("/v2/models/linear/versions/1/infer", orjson.dumps(infer_body()), {}),
        (
            "/v2/models/linear/infer",
            head + rows.tobytes(),
            {"Inference-Header-Content-Length": str(len(head))},
        ),
        ("/v2/models/linear/infer", b"{", {}),
        ("/v2/models/nope/infer", orjson.dumps(infer_body()), {}),
    ]
    async with app.router.lifespan_context(app):
        for path, body, headers in cases:
            fast = await asgi.request(app, "POST", path, body, headers)
            slow = await asgi.request(routed, "POST", path, body, headers)
            assert (fast.status, fast.body) == (slow.status, slow.body), path
            assert fast.headers.get("inference-header-content-length") == slow.headers.get(
                "inference-header-content-length"
            )
            assert fast.headers["content-type"].split(";")[0] == slow.headers["content-type"].split(";")[0]
