"""What a request may hold: nesting, non-finite floats, JSON and image budgets; what readiness may say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from scoring_service import codecs, parsing
from scoring_service.errors import BadRequest
from scoring_service.runtime import OnnxModel
from unit.scoring.scoring_models import identity_model, linear_model

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
