"""Prometheus metrics, one registry per app so tests can build many apps in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Sub-millisecond buckets: a small tabular model answers in ~100 us, so the defaults (5 ms+) say nothing.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

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
            "Time spent inside onnxruntime, by model and version.",
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
