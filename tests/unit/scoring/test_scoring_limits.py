"""What a request may hold: nesting, non-finite floats, JSON and image budgets; what readiness may say."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from scoring_service import codecs, parsing
from scoring_service.errors import BadRequest, PayloadTooLarge
from scoring_service.runtime import OnnxModel
from unit.scoring.conftest import ops
from unit.scoring.scoring_models import b64, identity_model, linear_model, png

pytestmark = pytest.mark.unit

LINEAR = OnnxModel(linear_model().SerializeToString())
IDENTITY = OnnxModel(identity_model().SerializeToString())


def nested(levels: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


# -- nesting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ["BYTES", "INT64", "UINT64", "FP32"])
def test_data_nested_beyond_the_stack_is_a_400(datatype: str) -> None:
    leaf = "a" if datatype == "BYTES" else 2**64 - 1 if datatype == "UINT64" else 1
    with pytest.raises(BadRequest):
        codecs.decode_json_tensor(datatype, [1], nested(5000, leaf), "x")


def test_bytes_data_may_nest_as_deep_as_its_shape() -> None:
    arr = codecs.decode_json_tensor("BYTES", [1, 1, 2], [[["a", "b"]]], "x")
    assert arr.shape == (1, 1, 2)
    with pytest.raises(BadRequest, match="nested deeper"):
        codecs.decode_json_tensor("BYTES", [2], [[["a"]], ["b"]], "x")


def test_error_messages_quote_hostile_values_briefly() -> None:
    deep = nested(1000, "a")  # orjson reads up to 1024 levels
    for body in (
        {"inputs": [{"name": deep, "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]},
        {"inputs": [{"name": "x", "datatype": deep, "shape": [1, 3], "data": [1, 2, 3]}]},
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, deep], "data": [1, 2, 3]}]},
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": deep}}
            ]
        },
    ):
        with pytest.raises(BadRequest) as raised:
            parsing.parse_infer(LINEAR, _dumps(body), None)
        assert len(raised.value.message) < 300


def _dumps(body: Any) -> bytes:
    """JSON for values nested deeper than orjson writes (it stops at 255 levels)."""
    import json
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        return json.dumps(body).encode()
    finally:
        sys.setrecursionlimit(limit)


# -- non-finite floats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "data"),
    [("FP32", [1e39, 0]), ("FP16", [70000, 0]), ("FP32", [-1e39, 0])],
)
def test_json_numbers_beyond_the_datatype_are_a_400(datatype: str, data: list[float]) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": f"in_{datatype}", "datatype": datatype, "shape": [1, 2], "data": data}]}
    )
    with pytest.raises(BadRequest, match="finite"):
        parsing.decode_inputs(
            {f"in_{datatype}": IDENTITY.input_by_name[f"in_{datatype}"]},
            parsing.request_inputs(parsing.load_request(body)),
            None,
        )


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8"])
def test_check_finite(dtype: str, value: float) -> None:
    with pytest.raises(BadRequest, match="finite"):
        codecs.check_finite(np.asarray([[1.0, value]], dtype=dtype), "x")


def test_check_finite_accepts_large_finite_values() -> None:
    # Their squares overflow: the fast check must fall back to the exact one, not refuse them.
    for dtype in ("<f2", "<f4", "<f8"):
        info = np.finfo(dtype)
        codecs.check_finite(np.asarray([info.max, info.min, 0, info.tiny], dtype=dtype), "x")
    codecs.check_finite(np.zeros((0, 3), dtype=np.float32), "x")


def test_non_finite_values_allowed_by_setting(
    model_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    raw = np.asarray([[np.nan, np.inf, -np.inf]], dtype=np.float32).tobytes()
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                     "parameters": {"binary_data_size": len(raw)}}]})  # fmt: skip
    headers = {"Inference-Header-Content-Length": str(len(head))}
    strict = make_client(model_dir, default_model="linear")
    response = strict.post("/v2/models/linear/infer", content=head + raw, headers=headers)
    assert response.status_code == 400
    assert "finite" in response.json()["error"]
    lenient = make_client(model_dir, default_model="linear", allow_non_finite=True)
    assert lenient.post("/v2/models/linear/infer", content=head + raw, headers=headers).status_code == 200
    assert lenient.post("/score", json={"data": [[1e39, 0, 0]]}).status_code == 200
    assert strict.post("/score", json={"data": [[1e39, 0, 0]]}).status_code == 400


# -- budgets -------------------------------------------------------------------------------------


def test_json_above_its_budget_is_413_before_parsing() -> None:
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]})
    limits = parsing.Limits(max_json_bytes=len(body) - 1)
    with pytest.raises(PayloadTooLarge, match="binary tensor data"):
        parsing.parse_infer(LINEAR, body, None, limits=limits)
    # Binary tensor data after the JSON header does not count against it.
    raw = np.zeros(3, dtype=np.float32).tobytes()
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                     "parameters": {"binary_data_size": len(raw)}}]})  # fmt: skip
    parsing.parse_infer(LINEAR, head + raw, len(head), limits=parsing.Limits(max_json_bytes=len(head)))


def test_decompressed_cap_is_its_own(model_dir: Path, make_client: Callable[..., TestClient]) -> None:
    client = make_client(model_dir, max_decompressed_bytes=4096)
    padded = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                       "data": [1, 2, 3]}], "id": " " * 5000})  # fmt: skip
    response = client.post("/v2/models/linear/infer", content=padded)
    assert response.status_code == 200  # the cap is on inflated bodies only
    response = client.post(
        "/v2/models/linear/infer", content=gzip.compress(padded), headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "decompressed" in response.json()["error"]


def image_request(count: int, pixels: list[list[int]]) -> dict[str, Any]:
    return {
        "inputs": [{"name": "x", "datatype": "BYTES", "shape": [count], "data": [b64(png(pixels))] * count}]
    }


def test_images_per_request_and_pixels_per_request(
    model_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(model_dir, max_images=3, max_request_pixels=4 * 4 * 3)
    small, large = [[0, 255], [0, 0]], np.zeros((4, 4), dtype=np.uint8).tolist()
    assert client.post("/v2/models/classifier/infer", json=image_request(3, small)).status_code == 200
    too_many = client.post("/v2/models/classifier/infer", json=image_request(4, small))
    assert too_many.status_code == 400
    assert "4 images" in too_many.json()["error"]
    assert client.post("/v2/models/classifier/infer", json=image_request(3, large)).status_code == 200
    client = make_client(model_dir, max_images=3, max_request_pixels=4 * 4 * 3 - 1)
    too_large = client.post("/v2/models/classifier/infer", json=image_request(3, large))
    assert too_large.status_code == 400
    assert "pixels" in too_large.json()["error"]
    scored = client.post("/score", json={"input": [b64(png(large))] * 3})
    assert (scored.status_code, "pixels" in scored.json()["error"]) == (400, True)


# -- readiness says what failed, not where it lives ----------------------------------------------


def test_readiness_reasons_name_no_file_paths(
    model_dir: Path, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    model = model_dir / "linear-v2" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")  # checksum mismatch
    (model_dir / "classifier" / "modelapp.json").write_text("{not json")  # invalid manifest
    shutil.copytree(model_dir / "linear-v1", model_dir / "linear-v1-copy")  # duplicate name and version
    (model_dir / "junk").mkdir()
    (model_dir / "junk" / "model.onnx").write_bytes(b"not protobuf")  # onnxruntime refuses it
    client = make_client(model_dir)
    texts = [client.get("/v2/health/ready").text]
    texts += [client.get(f"/v2/models/{m}/ready").text for m in ("linear", "junk", "classifier")]
    texts += [client.post(f"/v2/models/{m}/infer", json={"inputs": []}).text for m in ("linear", "junk")]
    reasons = orjson.loads(texts[0])["reasons"]
    assert len(reasons) == 4
    assert any("checksum mismatch" in r for r in reasons)
    for text in texts:
        assert str(tmp_path) not in text
        assert str(tmp_path.resolve()) not in text
    for missing in (tmp_path / "nowhere", tmp_path / "empty"):
        if missing.name == "empty":
            missing.mkdir()
        text = make_client(missing).get("/v2/health/ready").text
        assert "reasons" in text
        assert str(tmp_path) not in text
        assert str(tmp_path) not in make_client(missing).get("/version").text


# -- the operations port -------------------------------------------------------------------------


def test_operations_only_on_the_operations_port(
    model_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(model_dir, metrics_port=9123)
    operations = ops(client)
    assert operations.base_url.port == 9123
    client.post("/v2/models/linear/infer", json={"inputs": []})
    for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code == 404
    assert (
        'scoring_requests_total{code="400",endpoint="infer",model="linear",version="2"} 1.0'
        in operations.get("/metrics").text
    )
    assert "/v2/models/{name}/infer" in operations.get("/openapi.json").json()["paths"]
    assert operations.get("/docs").status_code == 200
    assert operations.get("/v2/health/live").status_code == 404
    assert operations.post("/v2/models/linear/infer", json={"inputs": []}).status_code == 404
    disabled = make_client(model_dir, metrics_port=0)
    assert disabled.get("/metrics").status_code == 404


def test_metrics_port_must_differ_from_the_serving_port() -> None:
    from pydantic import ValidationError
    from scoring_service.settings import Settings

    with pytest.raises(ValidationError, match="metrics_port"):
        Settings(port=8080, metrics_port=8080)
    Settings(port=8080, metrics_port=0)
