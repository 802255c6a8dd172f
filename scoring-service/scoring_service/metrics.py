"""Prometheus metrics, one registry per app so tests can build many apps in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Sub-millisecond buckets: a small tabular model answers in ~100 us, so the defaults (5 ms+) say nothing.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "scoring_requests",
            "Requests handled, by model, version, endpoint and HTTP status code.",
            ["model", "version", "endpoint", "code"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "scoring_request_duration_seconds",
            "Time from request body received to response built, by model, version and endpoint.",
            ["model", "version", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_latency = Histogram(
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
