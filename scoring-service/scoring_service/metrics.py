"""Prometheus metrics, one registry per app so tests can build many apps in one process."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Sub-millisecond buckets: a small tabular model answers in ~100 us, so the defaults (5 ms+) say nothing.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _created() -> bool:
    """Whether prometheus_client writes `_created` samples (PROMETHEUS_DISABLE_CREATED_SERIES)."""
    return bool(prometheus_metrics._use_created)


class CounterChild:
    """One label set of a `LeanCounter`."""

    __slots__ = ("_lock", "created", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount


class HistogramChild:
    """One label set of a `LeanHistogram`: per-bucket counts (not cumulative), the sum."""

    __slots__ = ("_bounds", "_lock", "counts", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        i = bisect_left(self._bounds, amount)  # the first bound >= amount (the last is +Inf)
        with self._lock:
            self.sum += amount
            self.counts[i] += 1


C = TypeVar("C", CounterChild, HistogramChild)
F = TypeVar("F", CounterMetricFamily, HistogramMetricFamily)


class _LeanFamily(Collector, Generic[C, F]):
    """A metric's children by label values, registered in `registry`; see `LeanCounter`."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        child: Callable[[], C],
        family: Callable[..., F],
    ):
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        self._lock = threading.Lock()
        self._child: Callable[[], C] = child
        self._family_type: Callable[..., F] = family
        registry.register(self)

    def _family(self) -> F:
        family: F = self._family_type(self.name, self.documentation, labels=self.labelnames)
        return family

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def labels(self, *values: str) -> C:
        with self._lock:
            child = self._children.get(values)
            if child is None:
                child = self._children[values] = self._child()
            return child

    def _items(self) -> list[tuple[tuple[str, ...], C]]:
        with self._lock:
            return list(self._children.items())


class LeanCounter(_LeanFamily[CounterChild, CounterMetricFamily]):
    """A labelled counter for the per-request metrics, exposed exactly as prometheus_client's Counter.

    prometheus_client's children check their labels and wrap a locked float in three Python calls per
    update; with three updates per request that was ~5% of a small model's request. These children are
    a lock and a float. Label sets are resolved by the caller once (`labels`) and kept.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry):
        super().__init__(name, documentation, labelnames, registry, CounterChild, CounterMetricFamily)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        created = _created()
        for values, child in self._items():
            family.add_metric(values, child.value, created=child.created if created else None)
        yield family


class LeanHistogram(_LeanFamily[HistogramChild, HistogramMetricFamily]):
    """A labelled histogram for the per-request metrics, exposed exactly as prometheus_client's Histogram.

    An observation takes one lock and a bisect, where prometheus_client's takes two locks and a scan
    of the buckets in Python (see `LeanCounter`).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ):
        self._bounds = [float(b) for b in buckets] + [float("inf")]
        self._les = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        child = partial(HistogramChild, self._bounds)
        super().__init__(name, documentation, labelnames, registry, child, HistogramMetricFamily)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        created = _created()
        for values, child in self._items():
            with child._lock:
                counts, total = list(child.counts), child.sum
            cumulative, buckets = 0.0, []
            for le, count in zip(self._les, counts, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(values, buckets, total)
            if created:
                labels = dict(zip(self.labelnames, values, strict=True))
                family.samples.append(Sample(f"{self.name}_created", labels, child.created, None, None))
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = LeanCounter(
            "scoring_requests",
            "Requests handled, by model, version, endpoint and HTTP status code.",
            ["model", "version", "endpoint", "code"],
            registry=self.registry,
        )
        self.request_latency = LeanHistogram(
            "scoring_request_duration_seconds",
            "Time from request body received to response built, by model, version and endpoint.",
            ["model", "version", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_latency = LeanHistogram(
            "scoring_inference_duration_seconds",
            "Time spent inside onnxruntime, by model and version (one observation per run: with adaptive "
            "batching, per batch).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_failures = Counter(
            "scoring_inference_failures",
            "Requests that passed validation against the model's signature but that onnxruntime failed to run "
            "(answered 400): a model that fails on well-formed inputs shows here; the canary analysis counts them.",
            ["model", "version"],
            registry=self.registry,
        )
        self.load_failures = Counter(
            "scoring_model_load_failures",
            "Model bundles that failed to load (bad manifest, sha256 mismatch, invalid ONNX).",
            ["model", "version"],
            registry=self.registry,
        )
        self.model_ready = Gauge(
            "scoring_model_ready",
            "1 if the model version is loaded and serving, else 0.",
            ["model", "version"],
            registry=self.registry,
        )

        self._add_batching_metrics()
        self._add_shadow_metrics()

    def _add_batching_metrics(self) -> None:
        """Models served with adaptive batching (`batching.py`), by model and version."""
        self.batch_rows = Histogram(
            "scoring_batch_rows",
            "Rows per onnxruntime run of a model served with adaptive batching, by model and version.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_wait = Histogram(
            "scoring_batch_wait_seconds",
            "Time a request of a batched model waited for its batch's run to begin (forming, plus the run "
            "ahead of it), by model and version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_fallbacks = Counter(
            "scoring_batch_fallbacks",
            "Batched runs that failed and whose requests were then run one at a time.",
            ["model", "version"],
            registry=self.registry,
        )

    def _add_shadow_metrics(self) -> None:
        """Mirroring to a candidate (`shadow.py`), by model, serving version and candidate version."""
        labels = ["model", "serving", "candidate"]

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, [*labels, *extra], registry=self.registry)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, labels, buckets=LATENCY_BUCKETS, registry=self.registry)

        self.shadow_requests = counter("scoring_shadow_requests", "Requests mirrored to the candidate.")
        self.shadow_failures = counter(
            "scoring_shadow_failures",
            "Mirrored requests not compared: error (non-2xx), timeout, connect, mismatch.",
            ("reason",),
        )
        self.shadow_dropped = counter("scoring_shadow_dropped", "Requests not mirrored: the queue was full.")
        self.shadow_abs_diff = counter(
            "scoring_shadow_abs_diff_sum", "Sum of |serving - candidate| over the numeric output values."
        )
        self.shadow_values = counter("scoring_shadow_values", "Numeric output values compared.")
        self.shadow_rows = counter("scoring_shadow_rows", "Rows compared for top-1 agreement.")
        self.shadow_agreed_rows = counter("scoring_shadow_agreed_rows", "Rows whose top-1 answers agreed.")
        self.shadow_serving_latency = histogram(
            "scoring_shadow_serving_duration_seconds",
            "The serving model's own time for the mirrored requests the candidate answered.",
        )
        self.shadow_candidate_latency = histogram(
            "scoring_shadow_candidate_duration_seconds",
            "The candidate's round trip (as seen from this pod) for the mirrored requests it answered.",
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
