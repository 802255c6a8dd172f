"""Adaptive batching in a real scorer process: concurrent requests share runs and get the unbatched answers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from integration.scoring.conftest import Server
from modelapp_bundle import write_manifest
from scoring_service.runtime import OnnxModel
from unit.scoring.scoring_models import fixed_batch_model, mlp_model, save

pytestmark = pytest.mark.integration

DIMS = (64, 128, 8)
MAX_SIZE = 16


@pytest.fixture(scope="module")
def batching_server(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("batching")
    batching = {"maxBatchSize": MAX_SIZE, "maxDelayMs": 20}
    write_manifest(save(mlp_model(DIMS), root / "mlp"), "mlp", "1", batching=batching)
    write_manifest(save(fixed_batch_model(), root / "fixed"), "fixed", "1", batching=batching)
    return start_server(root)


def body(x: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]
    }


def batch_runs(server: Server) -> tuple[float, float, float]:
    """(runs, rows, runs of at most MAX_SIZE rows) from the batch-size histogram."""
    text = httpx.get(server.metrics_url + "/metrics").text

    def value(series: str) -> float:
        found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
        assert found is not None, series
        return float(found.group(1))

    labels = '{model="mlp",version="1"}'
    return (
        value(f"scoring_batch_rows_count{labels}"),
        value(f"scoring_batch_rows_sum{labels}"),
        value(f'scoring_batch_rows_bucket{{le="{MAX_SIZE}.0",model="mlp",version="1"}}'),
    )


async def send_all(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.post(url, json=b) for b in bodies))


def test_concurrent_requests_share_runs_and_get_the_unbatched_answers(batching_server: Server) -> None:
    url = batching_server.url + "/v2/models/mlp/infer"
    rng = np.random.default_rng(3)
    inputs = [
        rng.standard_normal((1 + i % 3, DIMS[0])).astype(np.float32) for i in range(32)
    ]  # 32: the scorer's default max concurrent requests
    # One at a time, every request is a batch of its own: the unbatched answers.
    alone = [httpx.post(url, json=body(x)).json()["outputs"] for x in inputs]
    runs_before, rows_before, _ = batch_runs(batching_server)
    assert runs_before == len(inputs)  # the warm-up runs at load are not counted

    responses = asyncio.run(send_all(url, [body(x) for x in inputs]))

    assert [r.status_code for r in responses] == [200] * len(inputs)
    assert [r.json()["outputs"] for r in responses] == alone
    reference = OnnxModel(mlp_model(DIMS).SerializeToString())
    for x, outputs in zip(inputs, alone, strict=True):
        np.testing.assert_allclose(outputs[0]["data"], reference.run({"x": x})[0].reshape(-1), rtol=1e-5)
    runs, rows, within = batch_runs(batching_server)
    assert rows - rows_before == sum(len(x) for x in inputs)
    assert runs - runs_before < len(inputs)  # some runs carried several requests
    assert within == runs  # and none more than maxBatchSize rows


def test_a_model_without_a_dynamic_batch_dimension_is_served_unbatched(batching_server: Server) -> None:
    response = httpx.post(
        batching_server.url + "/v2/models/fixed/infer", json=body(np.ones((1, 3), np.float32))
    )
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [1.0, 1.0, 1.0]
    lines = [orjson.loads(line) for line in batching_server.log().splitlines() if line.startswith("{")]
    refused = [e for e in lines if e["message"].startswith("adaptive batching refused")]
    assert [(e["model"], e["level"]) for e in refused] == [("fixed", "warning")]
    assert "input 'x' has shape [1, 3]: its first dimension is not dynamic" in refused[0]["message"]
    assert any(e["message"] == "adaptive batching on" and e["model"] == "mlp" for e in lines)


def test_input_errors_stay_400_with_a_json_body(batching_server: Server) -> None:
    url = batching_server.url + "/v2/models/mlp/infer"
    bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    good = body(np.ones((2, DIMS[0]), np.float32))
    responses = asyncio.run(send_all(url, [bad, good, bad, good]))
    assert [r.status_code for r in responses] == [400, 200, 400, 200]
    assert "shape" in responses[0].json()["error"]
