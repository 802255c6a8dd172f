"""Shadow mirroring between two real scorer processes on loopback: the serving one mirrors to a candidate."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from integration.scoring.conftest import Server, free_port
from modelapp_bundle import write_manifest
from prometheus_client.parser import text_string_to_metric_families
from unit.scoring.scoring_models import (
    CLASSIFIER_LABELS,
    CLASSIFIER_PREPROCESS,
    LINEAR_W,
    classifier_model,
    linear_model,
    save,
)

RELOAD = 0.2


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shadow-models")
    bundles = {
        "linear-1": save(linear_model(0.5), root / "linear-1"),
        "linear-2": save(linear_model(1.5), root / "linear-2"),  # the same regressor, shifted by +1
        "classifier": save(classifier_model(), root / "classifier"),
    }
    write_manifest(bundles["linear-1"], "linear", "1")
    write_manifest(bundles["linear-2"], "linear", "2")
    write_manifest(
        bundles["classifier"],
        "classifier",
        "1.0.0",
        labels=CLASSIFIER_LABELS,
        preprocess=CLASSIFIER_PREPROCESS,
    )
    return bundles


@pytest.fixture
def shadow_file(tmp_path: Path) -> Path:
    return tmp_path / "shadow" / "shadow.json"


@pytest.fixture
def serve(start_server: Callable[..., Server], shadow_file: Path) -> Callable[[Path], Server]:
    def serve_with_shadow(model_dir: Path) -> Server:
        env = {"SCORING_SHADOW_CONFIG": str(shadow_file), "SCORING_SHADOW_RELOAD_SECONDS": str(RELOAD)}
        return start_server(model_dir, env=env)

    return serve_with_shadow


def configure(path: Path, url: str, candidate: str, sample: float = 1.0, timeout: float = 5.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"url": url, "candidate": candidate, "sample": sample, "timeoutSeconds": timeout}
    path.write_bytes(orjson.dumps(document))


def metrics(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(server.metrics_url + "/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("scoring_shadow_")
    }


def value(server: Server, name: str, **labels: str) -> float:
    return metrics(server).get((name, frozenset(labels.items())), 0.0)


def wait_for(server: Server, name: str, at_least: float, **labels: str) -> float:
    timeout = 20.0
    deadline = time.monotonic() + timeout
    while (got := value(server, name, **labels)) < at_least:
        assert time.monotonic() < deadline, f"{name}{labels} = {got} after {timeout}s: {metrics(server)}"
        time.sleep(0.05)
    return got


def infer(client: httpx.Client, server: Server, path: str, x: list[list[float]], **params: Any) -> Any:
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [len(x), len(x[0])], "data": x}]
    }
    if params:
        body["parameters"] = params
    response = client.post(server.url + path, content=orjson.dumps(body))
    assert response.status_code == 200, response.text
    return response


def test_an_identical_candidate_differs_by_nothing_and_agrees_on_every_row(
    serve: Callable[[Path], Server],
    start_server: Callable[..., Server],
    bundles: dict[str, Path],
    shadow_file: Path,
) -> None:
    candidate = start_server(bundles["classifier"])
    configure(shadow_file, candidate.url, "1.0.1")
    serving = serve(bundles["classifier"])
    labels = {"model": "classifier", "serving": "1.0.0", "candidate": "1.0.1"}
    rows = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    with httpx.Client() as client:
        for _ in range(20):
            answer = infer(client, serving, "/v2/models/classifier/infer", rows).json()
            assert answer["model_version"] == "1.0.0"
            assert answer["outputs"][0]["data"] == [0, 1, 2]
    assert wait_for(serving, "scoring_shadow_requests_total", 20, **labels) == 20
    assert wait_for(serving, "scoring_shadow_agreed_rows_total", 60, **labels) == 60
    assert value(serving, "scoring_shadow_rows_total", **labels) == 60
    assert value(serving, "scoring_shadow_values_total", **labels) == 20 * (3 + 3 * 3)
    assert value(serving, "scoring_shadow_abs_diff_sum_total", **labels) == 0
    assert value(serving, "scoring_shadow_serving_duration_seconds_count", **labels) == 20
    assert value(serving, "scoring_shadow_candidate_duration_seconds_count", **labels) == 20
    assert not [k for k, v in metrics(serving).items() if k[0] == "scoring_shadow_failures_total" and v]


def test_a_shifted_candidate_shows_its_difference_and_clients_get_the_serving_answer(
    serve: Callable[[Path], Server],
    start_server: Callable[..., Server],
    bundles: dict[str, Path],
    shadow_file: Path,
) -> None:
    candidate = start_server(bundles["linear-2"])
    configure(shadow_file, candidate.url, "2")
    serving = serve(bundles["linear-1"])
    x = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
    want = (np.asarray(x, dtype=np.float32) @ LINEAR_W + 0.5).reshape(-1).tolist()
    with httpx.Client() as client:
        for i in range(20):
            path = "/v2/models/linear/versions/1/infer" if i % 2 else "/v2/models/linear/infer"
            binary = i % 4 == 3  # the serving answer carries binary tensor data
            response = infer(client, serving, path, x, **({"binary_data_output": True} if binary else {}))
            if not binary:
                assert response.json()["model_version"] == "1"
                assert response.json()["outputs"][0]["data"] == pytest.approx(want)
    labels = {"model": "linear", "serving": "1", "candidate": "2"}
    wait_for(serving, "scoring_shadow_values_total", 40, **labels)
    assert value(serving, "scoring_shadow_requests_total", **labels) == 20
    assert value(serving, "scoring_shadow_abs_diff_sum_total", **labels) == pytest.approx(40.0, rel=1e-5)
    assert value(serving, "scoring_shadow_rows_total", **labels) == 0


def timed_requests(server: Server, count: int) -> list[float]:
    latencies = []
    with httpx.Client() as client:
        for _ in range(count):
            start = time.perf_counter()
            infer(client, server, "/v2/models/linear/infer", [[1.0, 2.0, 3.0]])
            latencies.append(time.perf_counter() - start)
    return latencies


@pytest.fixture
def stopped() -> Iterator[Callable[[Server], None]]:
    paused: list[Server] = []

    def stop(server: Server) -> None:
        os.kill(server.process.pid, signal.SIGSTOP)
        paused.append(server)

    yield stop
    for server in paused:
        os.kill(server.process.pid, signal.SIGCONT)


def test_a_stopped_candidate_times_out_without_slowing_clients(
    serve: Callable[[Path], Server],
    start_server: Callable[..., Server],
    bundles: dict[str, Path],
    shadow_file: Path,
    stopped: Callable[[Server], None],
) -> None:
    candidate = start_server(bundles["linear-2"])
    configure(shadow_file, candidate.url, "2", timeout=0.5)
    serving = serve(bundles["linear-1"])
    stopped(candidate)  # accepts connections (the kernel does), never answers
    latencies = timed_requests(serving, 400)
    labels = {"model": "linear", "serving": "1", "candidate": "2"}
    assert max(latencies) < 0.25, sorted(latencies)[-5:]  # never the candidate's 0.5 s timeout
    wait_for(serving, "scoring_shadow_failures_total", 4, **labels, reason="timeout")
    # 400 requests arrive far faster than 4 workers time out at 0.5 s each: the 256-deep queue overflows.
    assert value(serving, "scoring_shadow_dropped_total", **labels) > 0
    assert value(serving, "scoring_shadow_candidate_duration_seconds_count", **labels) == 0


def test_a_candidate_that_is_down_counts_connect_failures(
    serve: Callable[[Path], Server], bundles: dict[str, Path], shadow_file: Path
) -> None:
    configure(shadow_file, f"http://127.0.0.1:{free_port()}", "2")  # nothing listens there
    serving = serve(bundles["linear-1"])
    latencies = timed_requests(serving, 30)
    assert max(latencies) < 0.25
    labels = {"model": "linear", "serving": "1", "candidate": "2", "reason": "connect"}
    assert wait_for(serving, "scoring_shadow_failures_total", 30, **labels) == 30


def test_configuration_changes_are_picked_up_without_a_restart(
    serve: Callable[[Path], Server],
    start_server: Callable[..., Server],
    bundles: dict[str, Path],
    shadow_file: Path,
) -> None:
    serving = serve(bundles["linear-1"])  # no configuration file yet: off
    candidate = start_server(bundles["linear-2"])
    timed_requests(serving, 5)
    time.sleep(RELOAD * 2)
    assert metrics(serving) == {}
    configure(shadow_file, candidate.url, "2")
    time.sleep(RELOAD * 3)
    timed_requests(serving, 5)
    labels = {"model": "linear", "serving": "1", "candidate": "2"}
    assert wait_for(serving, "scoring_shadow_requests_total", 5, **labels) == 5
    shadow_file.write_text('{"url": "http://nowhere", "sample": 3}')  # invalid: off, and said once
    time.sleep(RELOAD * 5)
    timed_requests(serving, 5)
    time.sleep(0.5)
    assert value(serving, "scoring_shadow_requests_total", **labels) == 5
    warnings = [line for line in serving.log().splitlines() if "invalid configuration" in line]
    assert len(warnings) == 1, warnings
    configure(shadow_file, candidate.url, "2.1")
    time.sleep(RELOAD * 3)
    timed_requests(serving, 3)
    assert wait_for(serving, "scoring_shadow_requests_total", 3, **{**labels, "candidate": "2.1"}) == 3
