"""The lean per-request collectors (`metrics.LeanCounter`, `LeanHistogram`) against prometheus_client's own
Counter and Histogram: the same updates must give the same /metrics bytes."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics
from scoring_service.metrics import LATENCY_BUCKETS, LeanCounter, LeanHistogram, Metrics

pytestmark = pytest.mark.unit

LABELS = ["model", "version", "endpoint"]
UPDATES = [
    (("diabetes", "1", "infer"), 0.00005),
    (("diabetes", "1", "infer"), 0.0001),  # on a bound: counted in that bucket
    (("diabetes", "1", "score"), 0.3),
    (("digits", "2", "infer"), 7.0),  # above every bound: +Inf only
    (("diabetes", "1", "infer"), 0.0123),
]


def _exposition(lean: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    doc = "Some documentation with a \\ and a\nnewline."
    if lean:
        counter = LeanCounter("t_requests", doc, LABELS, registry)
        histogram = LeanHistogram("t_seconds", doc, LABELS, LATENCY_BUCKETS, registry)
        for values, amount in UPDATES:
            counter.labels(*values).inc()
            histogram.labels(*values).observe(amount)
    else:
        reference_counter = Counter("t_requests", doc, LABELS, registry=registry)
        reference_histogram = Histogram("t_seconds", doc, LABELS, buckets=LATENCY_BUCKETS, registry=registry)
        for values, amount in UPDATES:
            reference_counter.labels(*values).inc()
            reference_histogram.labels(*values).observe(amount)
    return generate_latest(registry)


@pytest.mark.parametrize("created", [True, False], ids=["created", "no-created"])
def test_lean_collectors_expose_the_same_bytes_as_prometheus_client(
    monkeypatch: pytest.MonkeyPatch, created: bool
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1700000000.25)
    monkeypatch.setattr(prometheus_metrics, "_use_created", created)
    lean = _exposition(lean=True)
    assert lean == _exposition(lean=False)
    assert (b"t_requests_created" in lean) is created
    assert b't_seconds_bucket{endpoint="infer",le="0.0001",model="diabetes",version="1"} 2.0' in lean


def test_an_empty_family_is_described_like_prometheus_client() -> None:
    lean, reference = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    LeanCounter("t_requests", "doc", LABELS, lean)
    LeanHistogram("t_seconds", "doc", LABELS, LATENCY_BUCKETS, lean)
    Counter("t_requests", "doc", LABELS, registry=reference)
    Histogram("t_seconds", "doc", LABELS, buckets=LATENCY_BUCKETS, registry=reference)
    assert generate_latest(lean) == generate_latest(reference)


def test_the_scorer_registry_renders_its_lean_families() -> None:
    metrics = Metrics()
    metrics.requests.labels("m", "1", "infer", "200").inc()
    metrics.request_latency.labels("m", "1", "infer").observe(0.001)
    text = metrics.render().decode()
    assert "# TYPE scoring_requests_total counter" in text
    assert "# TYPE scoring_request_duration_seconds histogram" in text
    assert 'scoring_requests_total{code="200",endpoint="infer",model="m",version="1"} 1.0' in text
    assert 'scoring_request_duration_seconds_count{endpoint="infer",model="m",version="1"} 1.0' in text
