"""Adaptive batching: the pure batch choice, the batcher thread with real onnxruntime, and the app wiring."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from modelapp_bundle import Batching, write_manifest
from scoring_service.batching import (
    BatchConfig,
    Batcher,
    Pending,
    batch_key,
    concatenate,
    resolve_config,
    split,
    take,
    unbatchable,
)
from scoring_service.errors import InferenceFailed, ModelNotReady
from scoring_service.runtime import OnnxModel
from unit.scoring.conftest import ops
from unit.scoring.scoring_models import (
    GATHER_TABLE,
    column_sum_model,
    fixed_batch_model,
    gather_model,
    linear_model,
    mlp_model,
    relu_model,
    save,
)

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _switch_interval() -> Iterator[None]:
    """Batchers lower the process's GIL switch interval: give the next tests Python's own back."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


RNG = np.random.default_rng(7)


def onnx_model(proto: Any) -> OnnxModel:
    return OnnxModel(proto.SerializeToString())


def rows(n: int, width: int = 16) -> dict[str, np.ndarray[Any, Any]]:
    return {"x": RNG.standard_normal((n, width)).astype(np.float32)}


def pending(key: str, n: int, at: float, alone: bool = False) -> Pending:
    return Pending({}, [], key, n, at, alone=alone)


# -- the pure parts ---------------------------------------------------------------------------

CONFIG = BatchConfig(max_size=8, max_delay=0.010)


def test_take_waits_for_the_oldest_request_until_its_delay_is_up() -> None:
    queue = [pending("a", 2, at=1.000), pending("a", 1, at=1.004)]
    batch, rest, wait = take(queue, 1.006, CONFIG)
    assert (batch, rest) == ([], queue)
    assert wait == pytest.approx(0.004)
    batch, rest, wait = take(queue, 1.010, CONFIG)
    assert (batch, rest, wait) == (queue, [], 0.0)
    assert take([], 5.0, CONFIG) == ([], [], None)


def test_take_merges_the_same_key_in_arrival_order_and_leaves_others() -> None:
    a1, b1, a2, a3 = (
        pending("a", 3, 1.0),
        pending("b", 1, 1.001),
        pending("a", 4, 1.002),
        pending("a", 2, 1.003),
    )
    batch, rest, _ = take([a1, b1, a2, a3], 1.02, CONFIG)
    assert batch == [a1, a2]  # 3 + 4 rows; a3 would make 9 > 8
    assert rest == [b1, a3]
    batch, rest, _ = take(rest, 1.02, CONFIG)  # b1 is oldest now and overdue
    assert (batch, rest) == ([b1], [a3])


def test_take_runs_a_full_batch_at_once() -> None:
    full = [pending("a", 5, 1.0), pending("a", 3, 1.0)]
    assert take(full, 1.0, CONFIG)[0] == full
    # The next request would not fit: the batch cannot grow, so it runs too.
    first, big = pending("a", 5, 1.0), pending("a", 4, 1.0)
    assert take([first, big], 1.0, CONFIG)[:2] == ([first], [big])
    oversized = pending("a", 20, 1.0)  # more rows than a batch: runs alone, at once
    assert take([oversized], 1.0, CONFIG)[0] == [oversized]
    alone = pending("z", 1, 1.0, alone=True)
    assert take([alone], 1.0, CONFIG)[0] == [alone]


def test_batch_key_separates_shapes_dtypes_and_outputs() -> None:
    x2, x3 = np.zeros((2, 3), np.float32), np.zeros((5, 3), np.float32)
    assert batch_key({"x": x2}, ["y"]) is not None
    assert batch_key({"x": x2}, ["y"])[0] == batch_key({"x": x3}, ["y"])[0]  # type: ignore[index]
    assert batch_key({"x": x2}, ["y"])[1] == 2  # type: ignore[index]
    others = [
        batch_key({"x": np.zeros((2, 4), np.float32)}, ["y"]),
        batch_key({"x": np.zeros((2, 3), np.float64)}, ["y"]),
        batch_key({"x": x2}, ["z"]),
        batch_key({"x": x2}, ["y", "z"]),
    ]
    assert all(k is not None and k[0] != batch_key({"x": x2}, ["y"])[0] for k in others)  # type: ignore[index]
    # Inputs that disagree on rows, scalars and empty requests cannot share a batch.
    assert batch_key({"a": x2, "b": x3}, ["y"]) is None
    assert batch_key({"x": np.float32(1.0) * np.ones(())}, ["y"]) is None
    assert batch_key({"x": np.zeros((0, 3), np.float32)}, ["y"]) is None


def test_concatenate_and_split_give_each_request_its_rows() -> None:
    model = onnx_model(mlp_model())
    requests = [Pending(rows(n), ["y"], "k", n, 0.0) for n in (1, 3, 2, 1)]
    (joined,) = concatenate(requests).values()
    assert joined.shape == (7, 16)
    answers = split(requests, model.run(concatenate(requests), ["y"]))
    for request, (y,) in zip(requests, answers, strict=True):
        (alone,) = model.run(request.feeds, ["y"])
        assert y.shape == (request.rows, 4)
        np.testing.assert_array_equal(y, alone)
    with pytest.raises(ValueError, match=r"an output has shape \[1, 3\] for 7 input rows"):
        split(requests, [np.zeros((1, 3))])


def test_resolve_config_settings_override_the_manifest() -> None:
    manifest = Batching(max_batch_size=16, max_delay_ms=5)
    assert resolve_config(None, None, None) is None
    assert resolve_config(manifest, None, None) == BatchConfig(16, 0.005)
    assert resolve_config(manifest, 32, None) == BatchConfig(32, 0.005)
    assert resolve_config(manifest, None, 1.0) == BatchConfig(16, 0.001)
    assert resolve_config(None, 8, None) == BatchConfig(8, 0.002)
    assert resolve_config(manifest, 0, None) is None  # settings turn it off for every model
    assert resolve_config(Batching(max_batch_size=1), None, None) is None


def test_unbatchable_names_the_tensor_without_a_dynamic_first_dimension() -> None:
    assert unbatchable(onnx_model(mlp_model())) is None
    assert unbatchable(onnx_model(relu_model())) is None
    assert unbatchable(onnx_model(fixed_batch_model())) == (
        "input 'x' has shape [1, 3]: its first dimension is not dynamic"
    )


# -- the batcher thread, with real onnxruntime ------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.runs: list[int] = []
        self.waits: list[float] = []
        self.fallbacks = 0

    def observe(self, n: int, _seconds: float) -> None:
        self.runs.append(n)

    def fallback(self) -> None:
        self.fallbacks += 1


@pytest.fixture
def make_batcher() -> Iterator[Callable[..., tuple[Batcher, Recorder]]]:
    made: list[Batcher] = []

    def make(proto: Any, max_size: int = 64, max_delay: float = 5.0) -> tuple[Batcher, Recorder]:
        recorder = Recorder()
        batcher = Batcher(
            onnx_model(proto),
            BatchConfig(max_size, max_delay),
            recorder.observe,
            on_fallback=recorder.fallback,
            on_wait=recorder.waits.append,
        )
        made.append(batcher)
        return batcher, recorder

    yield make
    for batcher in made:
        batcher.close()


def submit_all(batcher: Batcher, feeds: list[dict[str, Any]], outputs: list[str]) -> list[Future[Any]]:
    # Submitted under the batcher's lock so that all are pending before its thread looks.
    with batcher._cond:
        return [batcher.submit(f, outputs) for f in feeds]


def test_requests_of_different_row_counts_run_as_one_call(make_batcher: Callable[..., Any]) -> None:
    batcher, recorder = make_batcher(mlp_model(), max_size=10, max_delay=5.0)
    feeds = [rows(n) for n in (1, 4, 2, 3)]  # 10 rows: a full batch, so no waiting for the delay
    started = time.monotonic()
    futures = submit_all(batcher, feeds, ["y"])
    answers = [f.result(timeout=2) for f in futures]
    assert time.monotonic() - started < 2
    assert recorder.runs == [10]
    for feed, (y,) in zip(feeds, answers, strict=True):
        np.testing.assert_array_equal(y, batcher.model.run(feed, ["y"])[0])


def test_a_lonely_request_waits_max_delay_and_no_longer(make_batcher: Callable[..., Any]) -> None:
    batcher, recorder = make_batcher(mlp_model(), max_size=32, max_delay=0.050)
    started = time.monotonic()
    (y,) = batcher.run(rows(1), ["y"])
    waited = time.monotonic() - started
    assert 0.045 <= waited < 0.5, waited
    assert y.shape == (1, 4)
    assert recorder.runs == [1]
    (wait,) = recorder.waits  # what scoring_batch_wait_seconds observes: the delay, not the run
    assert 0.045 <= wait <= waited, (wait, waited)


def test_max_size_cuts_batches_and_full_ones_do_not_wait(make_batcher: Callable[..., Any]) -> None:
    batcher, recorder = make_batcher(mlp_model(), max_size=4, max_delay=30.0)
    futures = submit_all(batcher, [rows(2), rows(1)], ["y"])
    time.sleep(0.1)
    assert not any(f.done() for f in futures)  # 3 of 4 rows: waits for more (or the 30 s delay)
    futures += submit_all(batcher, [rows(1), rows(3), rows(1)], ["y"])  # 4 rows full; then 3 + 1
    for f in futures:
        f.result(timeout=2)
    assert recorder.runs == [4, 4]
    assert len(recorder.waits) == 5
    assert max(recorder.waits[-3:]) < 2  # full batches ran without waiting for the 30 s delay


def test_shape_incompatible_requests_are_not_merged(make_batcher: Callable[..., Any]) -> None:
    batcher, recorder = make_batcher(relu_model(), max_size=64, max_delay=0.02)
    x2, x3 = rows(2, width=2), rows(3, width=3)
    futures = submit_all(batcher, [x2, x3, rows(1, width=2)], ["relu", "neg"])
    futures += submit_all(batcher, [rows(4, width=2)], ["relu"])  # another set of outputs
    answers = [f.result(timeout=2) for f in futures]
    assert sorted(recorder.runs) == [3, 3, 4]  # widths 2 (2+1 rows), 3, and the relu-only request
    np.testing.assert_array_equal(answers[1][1], -x3["x"])
    assert [len(a) for a in answers] == [2, 2, 2, 1]


def test_a_failing_batch_is_run_request_by_request(make_batcher: Callable[..., Any]) -> None:
    batcher, recorder = make_batcher(gather_model(), max_size=64, max_delay=0.02)
    good, bad = np.array([0, 3], np.int64), np.array([1, 99], np.int64)
    futures = submit_all(batcher, [{"idx": good}, {"idx": bad}, {"idx": good[:1]}], ["rows"])
    np.testing.assert_array_equal(futures[0].result(timeout=2)[0], GATHER_TABLE[[0, 3]])
    with pytest.raises(InferenceFailed, match="inference failed"):
        futures[1].result(timeout=2)
    np.testing.assert_array_equal(futures[2].result(timeout=2)[0], GATHER_TABLE[[0]])
    assert recorder.fallbacks == 1
    assert recorder.runs == [2, 1]  # the two that ran; the failed batch and the culprit are not counted


def test_outputs_without_one_row_per_input_row_fall_back(make_batcher: Callable[..., Any]) -> None:
    batcher, recorder = make_batcher(column_sum_model(), max_size=64, max_delay=0.02)
    feeds = [rows(2, width=3), rows(3, width=3)]
    answers = [f.result(timeout=2) for f in submit_all(batcher, feeds, ["total"])]
    for feed, (total,) in zip(feeds, answers, strict=True):
        np.testing.assert_allclose(total, feed["x"].sum(axis=0, keepdims=True), rtol=1e-6)
    assert recorder.fallbacks == 1


def test_requests_from_many_threads_each_get_their_own_rows(make_batcher: Callable[..., Any]) -> None:
    batcher, recorder = make_batcher(mlp_model(), max_size=16, max_delay=0.005)
    feeds = [rows(1 + i % 3) for i in range(60)]
    answers: list[Any] = [None] * len(feeds)

    def client(i: int) -> None:
        answers[i] = batcher.run(feeds[i], ["y"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    for feed, (y,) in zip(feeds, answers, strict=True):
        np.testing.assert_array_equal(y, batcher.model.run(feed, ["y"])[0])
    assert sum(recorder.runs) == sum(f["x"].shape[0] for f in feeds)
    assert max(recorder.runs) <= 16


def test_close_answers_waiting_requests(make_batcher: Callable[..., Any]) -> None:
    batcher, _ = make_batcher(mlp_model(), max_size=64, max_delay=30.0)
    waiting = batcher.submit(rows(1), ["y"])
    batcher.close()
    with pytest.raises(ModelNotReady, match="shutting down"):
        waiting.result(timeout=1)
    with pytest.raises(ModelNotReady):
        batcher.submit(rows(1), ["y"])


# -- wired into the scorer --------------------------------------------------------------------


@pytest.fixture
def batching_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_manifest(save(mlp_model(), root / "mlp"), "mlp", "1", batching={"maxBatchSize": 8, "maxDelayMs": 1})
    write_manifest(save(fixed_batch_model(), root / "fixed"), "fixed", "1", batching={"maxBatchSize": 8})
    write_manifest(save(linear_model(), root / "linear"), "linear", "1")
    return root


def infer(client: TestClient, model: str, x: np.ndarray[Any, Any]) -> Any:
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]
    }
    return client.post(f"/v2/models/{model}/infer", json=body)


def test_the_manifest_turns_batching_on_where_the_model_allows(
    batching_dir: Path, make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scoring_service.repository"):
        client = make_client(batching_dir, inline_max_bytes=0)  # also the worker-thread path
    served = client.app.state.dataplane.repo  # type: ignore[attr-defined]
    assert served.get("mlp").batcher is not None
    assert served.get("fixed").batcher is None
    assert served.get("linear").batcher is None
    assert (
        "adaptive batching refused, the model is served unbatched: input 'x' has shape [1, 3]" in caplog.text
    )
    x = RNG.standard_normal((3, 16)).astype(np.float32)
    response = infer(client, "mlp", x)
    assert response.status_code == 200
    expected = onnx_model(mlp_model()).run({"x": x}, ["y"])[0]
    np.testing.assert_allclose(
        np.array(response.json()["outputs"][0]["data"]), expected.reshape(-1), rtol=1e-6
    )
    assert infer(client, "fixed", np.ones((1, 3), np.float32)).status_code == 200
    bad = infer(client, "mlp", np.ones((2, 5), np.float32))
    assert bad.status_code == 400
    assert "shape" in bad.json()["error"]
    text = ops(client).get("/metrics").text
    assert 'scoring_batch_rows_count{model="mlp",version="1"} 1.0' in text
    assert 'scoring_batch_rows_sum{model="mlp",version="1"} 3.0' in text
    assert 'scoring_batch_wait_seconds_count{model="mlp",version="1"} 1.0' in text
    assert 'scoring_inference_duration_seconds_count{model="mlp",version="1"} 1.0' in text


def test_settings_turn_batching_on_or_off_for_every_model(
    batching_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    on = make_client(batching_dir, batch_max_size=4, batch_max_delay_ms=0.5)
    repo = on.app.state.dataplane.repo  # type: ignore[attr-defined]
    assert repo.get("linear").batcher.config == BatchConfig(4, 0.0005)
    assert repo.get("mlp").batcher.config == BatchConfig(4, 0.0005)
    assert infer(on, "linear", np.ones((2, 3), np.float32)).json()["outputs"][0]["data"] == [2.5, 2.5]
    off = make_client(batching_dir, batch_max_size=0)
    assert all(m.batcher is None for m in off.app.state.dataplane.repo.all())  # type: ignore[attr-defined]


def test_a_batcher_makes_the_gil_change_hands_within_a_quarter_of_its_delay(
    make_batcher: Callable[..., Any],
) -> None:
    before = sys.getswitchinterval()
    make_batcher(mlp_model(), max_delay=10.0)
    assert sys.getswitchinterval() == before  # never raised
    make_batcher(mlp_model(), max_delay=0.002)
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    make_batcher(mlp_model(), max_delay=0.0)
    assert sys.getswitchinterval() == pytest.approx(0.0002)
