"""Shadow mirroring: the configuration file, its reloads, sampling and the queue."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scoring_service.metrics import Metrics
from scoring_service.repository import ModelRepository
from scoring_service.service import DataPlane, Reply
from scoring_service.settings import Settings
from scoring_service.shadow import Shadow, ShadowConfig, parse_shadow_config

# -- the configuration file -------------------------------------------------------------------


def test_a_valid_configuration_is_read_with_the_operators_field_names() -> None:
    text = b'{"url": "http://10.96.0.17:8080/", "candidate": "1.3.0", "sample": 0.2, "timeoutSeconds": 5}'
    assert parse_shadow_config(text) == ShadowConfig(
        url="http://10.96.0.17:8080", candidate="1.3.0", sample=0.2, timeoutSeconds=5
    )


@pytest.mark.parametrize("text", [b"", b"  \n", b"{}", b" {} \n"])
def test_an_empty_configuration_turns_mirroring_off(text: bytes) -> None:
    assert parse_shadow_config(text) is None


@pytest.mark.parametrize(
    "text",
    [
        b"{",
        b"[]",
        b'{"url": "http://c:8080", "sample": 0.2}',
        b'{"url": "ftp://c:8080", "candidate": "2", "sample": 0.2}',
        b'{"url": "c:8080", "candidate": "2", "sample": 0.2}',
        b'{"url": "http://c:8080", "candidate": "2", "sample": 1.5}',
        b'{"url": "http://c:8080", "candidate": "2", "sample": 0.2, "timeoutSeconds": 0}',
        b'{"url": "http://c:8080", "candidate": "2", "sample": 0.2, "smaple": 1}',
    ],
)
def test_an_invalid_configuration_is_refused(text: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (pydantic's and orjson's errors are ValueErrors)
        parse_shadow_config(text)


# -- the watcher, sampling and the queue -------------------------------------------------------

VALID = b'{"url": "http://127.0.0.1:9", "candidate": "3", "sample": %s}'


@pytest.fixture
def make_shadow(model_dir: Path, tmp_path: Path) -> Callable[..., tuple[Shadow, DataPlane, Metrics]]:
    def make(**kw: Any) -> tuple[Shadow, DataPlane, Metrics]:
        settings = Settings(model_dir=model_dir, shadow_config=tmp_path / "shadow.json")
        metrics = Metrics()
        repository = ModelRepository(settings, metrics)
        repository.load_all()
        plane = DataPlane(settings, repository, metrics)
        return Shadow(settings, metrics, plane, **kw), plane, metrics

    return make


def write(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "shadow.json").write_bytes(content)


def test_the_file_turns_mirroring_on_and_off(
    make_shadow: Callable[..., tuple[Shadow, DataPlane, Metrics]], tmp_path: Path
) -> None:
    shadow, plane, _ = make_shadow()
    shadow.reload()  # no file: off
    assert plane.mirror is None
    write(tmp_path, VALID % b"0.5")
    shadow.reload()
    assert plane.mirror == shadow.offer
    assert shadow.config is not None
    assert shadow.config.sample == 0.5
    write(tmp_path, b"{}")
    shadow.reload()
    assert plane.mirror is None
    assert shadow.config is None


def test_invalid_content_turns_mirroring_off_with_one_warning(
    make_shadow: Callable[..., tuple[Shadow, DataPlane, Metrics]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    shadow, plane, _ = make_shadow()
    write(tmp_path, VALID % b"1")
    shadow.reload()
    write(tmp_path, b'{"url": "http://c", "sample": 2}')
    with caplog.at_level(logging.WARNING, logger="scoring_service.shadow"):
        for _ in range(3):
            shadow.reload()
    assert plane.mirror is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "shadow.json" in warnings[0].getMessage()
    assert "candidate" in warnings[0].getMessage()


REPLY = Reply(200, b'{"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}')


def offer(shadow: Shadow, times: int) -> None:
    for _ in range(times):
        shadow.offer("linear", None, b"{}", "application/json", None, REPLY, 0.001)


@pytest.mark.parametrize(("sample", "queued"), [(b"0", 0), (b"1", 20), (b"0.5", 10)])
def test_sampling(
    make_shadow: Callable[..., tuple[Shadow, DataPlane, Metrics]], tmp_path: Path, sample: bytes, queued: int
) -> None:
    draws = iter([i / 20 for i in range(20)])  # 0, 0.05, ..., 0.95: half are below 0.5
    shadow, _, _ = make_shadow(draw=lambda: next(draws))
    write(tmp_path, VALID % sample)
    shadow.reload()
    offer(shadow, 20)
    assert shadow.queue.qsize() == queued


def test_a_full_queue_drops_and_counts(
    make_shadow: Callable[..., tuple[Shadow, DataPlane, Metrics]], tmp_path: Path
) -> None:
    shadow, _, metrics = make_shadow(queue_size=4)
    write(tmp_path, VALID % b"1")
    shadow.reload()
    offer(shadow, 10)
    assert shadow.queue.qsize() == 4
    labels = {"model": "linear", "serving": "2", "candidate": "3"}
    assert metrics.registry.get_sample_value("scoring_shadow_dropped_total", labels) == 6


def test_a_mirrored_request_gets_the_scorers_own_time_as_server_timing(client: Any) -> None:
    from scoring_service.shadow import server_seconds
    from unit.scoring.test_scoring_app import infer_body

    asked = client.post("/v2/models/linear/infer", json=infer_body(), headers={"X-Modelapp-Shadow": "1"})
    assert asked.status_code == 200
    seconds = server_seconds(asked.headers["server-timing"])
    assert seconds is not None
    assert 0 < seconds < 1
    plain = client.post("/v2/models/linear/infer", json=infer_body())
    assert "server-timing" not in plain.headers


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("infer;dur=1.5", 0.0015), ("cache;desc=hit, infer;dur=2", 0.002), ("infer", None), ("", None)],
)
def test_server_timing_is_read_in_seconds(header: str, seconds: float | None) -> None:
    from scoring_service.shadow import server_seconds

    assert server_seconds(header) == (pytest.approx(seconds) if seconds is not None else None)
