"""The canary figures read from a real Prometheus equal those read from the scorer's own /metrics: two real
scorers serve the same model version in two namespaces (static ``namespace`` labels, as kubernetes_sd
relabelling sets them), the one in ns1 answers good requests, bad input and requests its model fails on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from integration.prometheus.conftest import Prometheus, Server
from modelapp_bundle import write_manifest
from modelapp_operator import prometheus
from modelapp_operator.figures import CanaryFigures, canary_figures
from onnx import TensorProto, helper, numpy_helper
from unit.scoring.scoring_models import OPSET, save

MODEL = "flaky"
VERSION = "2.0.0+rc.1"  # a "+" must reach Prometheus as a "+", not a space
GOOD, BAD_INPUT, MODEL_FAILS = 30, 4, 5


def flaky_bundle(root: Path) -> Path:
    """x FP32 [N, 2] reshaped to [1, 2]: runs for one row (the scorer's warm-up), fails for more, although
    such a request matches the model's signature: an inference failure, not bad input."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "one_by_two"], ["y"])],
        "flaky",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "one_by_two")],
    )
    out = save(helper.make_model(graph, opset_imports=OPSET, ir_version=9), root / MODEL)
    write_manifest(out, MODEL, VERSION)
    return root


def infer(server: Server, rows: int, cols: int = 2) -> int:
    body = {"inputs": [{"name": "x", "shape": [rows, cols], "datatype": "FP32", "data": [0.5] * rows * cols}]}
    return httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=10).status_code


@dataclass
class Bed:
    prometheus: Prometheus
    ns1: Server
    ns2: Server


def target(server: Server) -> str:
    return server.metrics_url.removeprefix("http://")


@pytest.fixture(scope="module")
def bed(
    start_server: Callable[..., Server],
    start_prometheus: Callable[[dict[str, str]], Prometheus],
    tmp_path_factory: pytest.TempPathFactory,
) -> Bed:
    models = flaky_bundle(tmp_path_factory.mktemp("flaky"))
    ns1, ns2 = start_server(models), start_server(models)
    prom = start_prometheus({target(ns1): "ns1", target(ns2): "ns2"})
    codes = [infer(ns1, 1) for _ in range(GOOD)] + [infer(ns2, 1) for _ in range(7)]
    codes += [infer(ns1, 1, cols=3) for _ in range(BAD_INPUT)] + [infer(ns1, 2) for _ in range(MODEL_FAILS)]
    assert codes == [200] * (GOOD + 7) + [400] * (BAD_INPUT + MODEL_FAILS)
    return Bed(prom, ns1, ns2)


async def scraped(prom: Prometheus, namespace: str, requests: int) -> CanaryFigures:
    """The Prometheus path's figures once Prometheus has scraped ``requests`` of them (it scrapes every 1s)."""
    found = None
    for _ in range(60):
        found = await prometheus.canary_figures(prom.url, namespace, MODEL, VERSION)
        if found is not None and found.requests >= requests:
            return found
        await asyncio.sleep(0.5)
    raise AssertionError(f"Prometheus did not count {requests} requests in 30s (last: {found})")


async def nothing(prom: Prometheus, namespace: str, version: str) -> bool:
    return await prometheus.canary_figures(prom.url, namespace, MODEL, version) == CanaryFigures(0, 0, None)


async def test_the_figures_from_prometheus_equal_those_from_the_pods_metrics(bed: Bed) -> None:
    from_prometheus = await scraped(bed.prometheus, "ns1", GOOD + BAD_INPUT + MODEL_FAILS)
    async with httpx.AsyncClient() as http:
        text = (await http.get(bed.ns1.metrics_url + "/metrics", timeout=5)).text
    from_pod = canary_figures([text], MODEL, VERSION)
    assert (from_pod.requests, from_pod.errors) == (GOOD + BAD_INPUT + MODEL_FAILS, MODEL_FAILS)
    assert from_pod.p99_seconds is not None
    assert (from_prometheus.requests, from_prometheus.errors) == (from_pod.requests, from_pod.errors)
    assert from_prometheus.p99_seconds == pytest.approx(from_pod.p99_seconds, rel=1e-9)


async def test_another_namespaces_pods_of_the_same_version_do_not_count(bed: Bed) -> None:
    found = await scraped(bed.prometheus, "ns2", 7)
    assert (found.requests, found.errors) == (7, 0)
    assert await nothing(bed.prometheus, "ns3", VERSION)


@pytest.mark.parametrize("hostile", ['ns1"}) or vector(1', "back\\slash\nline", "{}", "ü🙂"])
async def test_label_values_reach_prometheus_as_values(bed: Bed, hostile: str) -> None:
    """Prometheus parses every query (an unparsable one would give None) and matches nothing."""
    assert await nothing(bed.prometheus, hostile, VERSION)
    assert await nothing(bed.prometheus, "ns1", hostile)


async def test_a_path_prefix_that_is_not_the_api_gives_no_figures(bed: Bed) -> None:
    assert await prometheus.canary_figures(bed.prometheus.url + "/nope", "ns1", MODEL, VERSION) is None
