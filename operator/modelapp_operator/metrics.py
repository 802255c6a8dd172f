"""Prometheus metrics of the operator."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

VERSIONS_SEEN = Counter(
    "modelapp_versions_seen_total", "New model versions detected, per ModelApp", ["namespace", "name"]
)
ROLLOUTS = Counter(
    "modelapp_rollouts_total", "Completed rollouts of a new model version or spec", ["namespace", "name"]
)
ROLLOUT_FAILURES = Counter(
    "modelapp_rollout_failures_total", "Rollouts that missed their progress deadline", ["namespace", "name"]
)
TIME_TO_SERVING = Histogram(
    "modelapp_time_to_serving_seconds",
    "Time to production: from detecting a model version to it serving on every replica",
    ["namespace", "name"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
BUILD_SECONDS = Histogram(
    "modelapp_build_duration_seconds",
    "Kaniko build Jobs, from start to image pushed",
    ["namespace", "name"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
BUILD_FAILURES = Counter("modelapp_build_failures_total", "Build Jobs that failed", ["namespace", "name"])
VERIFY_SECONDS = Histogram(
    "modelapp_verify_duration_seconds",
    "Contract-test Jobs, from start to verdict",
    ["namespace", "name"],
    buckets=(5, 10, 30, 60, 120, 300, 600),
)
RECONCILES = Counter("modelapp_reconciles_total", "Reconciles, by result", ["result"])
RECONCILE_SECONDS = Histogram("modelapp_reconcile_duration_seconds", "Time of one reconcile")
STORE_CALLS = Counter("modelapp_store_calls_total", "Blob API requests made by the pollers", ["container"])
STORE_POLLS = Counter("modelapp_store_polls_total", "Container listings, by result", ["container", "result"])
POLLERS = Gauge("modelapp_store_pollers", "Active container pollers")

OBSERVATIONS = {
    "versions_seen": lambda ns, name, v: VERSIONS_SEEN.labels(ns, name).inc(v),
    "rollouts": lambda ns, name, v: ROLLOUTS.labels(ns, name).inc(v),
    "rollout_failures": lambda ns, name, v: ROLLOUT_FAILURES.labels(ns, name).inc(v),
    "time_to_serving": lambda ns, name, v: TIME_TO_SERVING.labels(ns, name).observe(v),
    "build_seconds": lambda ns, name, v: BUILD_SECONDS.labels(ns, name).observe(v),
    "build_failures": lambda ns, name, v: BUILD_FAILURES.labels(ns, name).inc(v),
    "verify_seconds": lambda ns, name, v: VERIFY_SECONDS.labels(ns, name).observe(v),
}


PER_APP: tuple[Counter | Histogram, ...] = (
    VERSIONS_SEEN,
    ROLLOUTS,
    ROLLOUT_FAILURES,
    TIME_TO_SERVING,
    BUILD_SECONDS,
    BUILD_FAILURES,
    VERIFY_SECONDS,
)


def observe(namespace: str, name: str, metric: str, value: float) -> None:
    OBSERVATIONS[metric](namespace, name, value)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted ModelApp's series: with many tenants coming and going they would only grow."""
    for metric in PER_APP:
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)
