"""What the canary and shadow gates measure (pure): the scorer's own Prometheus metrics, as scraped from its
pods' operations port, summed over the pods and reduced to the figures the gates compare with the spec.

The scorer's metrics (scoring-service/scoring_service/metrics.py) are the one definition of the names:
``scoring_requests_total{model,version,endpoint,code}`` and ``scoring_request_duration_seconds`` for the
canary, with ``scoring_inference_failures_total{model,version}``; ``scoring_shadow_*{model,serving,candidate}`` for the shadow comparison.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = Mapping[str, str]
Sample = tuple[str, Labels, float]


def samples(texts: Iterable[str]) -> list[Sample]:
    """Every sample of every scrape; a scrape that does not parse counts as no samples."""
    out: list[Sample] = []
    for text in texts:
        try:
            for family in text_string_to_metric_families(text):
                out.extend((s.name, s.labels, float(s.value)) for s in family.samples)
        except ValueError:
            continue
    return out


def total(found: Iterable[Sample], name: str, match: Callable[[Labels], bool]) -> float:
    return sum(v for n, labels, v in found if n == name and match(labels))


def quantile(q: float, found: Iterable[Sample], name: str, match: Callable[[Labels], bool]) -> float | None:
    """``histogram_quantile`` over the summed buckets of ``name`` (linear within the bucket, as Prometheus)."""
    buckets: dict[float, float] = defaultdict(float)
    for n, labels, v in found:
        if n == f"{name}_bucket" and match(labels):
            buckets[float(labels["le"])] += v
    if not buckets or buckets.get(math.inf, 0.0) <= 0:
        return None
    ordered = sorted(buckets.items())
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the largest finite bucket: its bound, as Prometheus does
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True)
class CanaryFigures:
    """The candidate's requests (all of its pods, since they started) and how they went."""

    requests: int
    errors: int
    p99_seconds: float | None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def canary_figures(texts: Iterable[str], model: str, version: str) -> CanaryFigures:
    found = samples(texts)

    def ours(labels: Labels) -> bool:
        return labels.get("model") == model and labels.get("version") == version

    requests = total(found, "scoring_requests_total", ours)
    # Server errors, and requests the model failed to run although they matched its signature (the
    # scorer answers those 400, like any input it cannot use, but counts them apart).
    errors = total(
        found, "scoring_requests_total", lambda lb: ours(lb) and lb.get("code", "").startswith("5")
    )
    errors += total(found, "scoring_inference_failures_total", ours)
    p99 = quantile(0.99, found, "scoring_request_duration_seconds", ours)
    return CanaryFigures(int(requests), int(errors), p99)


@dataclass(frozen=True)
class ShadowFigures:
    """The serving pods' comparison of their answers with the candidate's, on the requests they mirrored."""

    requests: int  # compared (mirrored and answered comparably)
    failures: int
    abs_diff_sum: float
    values: int
    rows: int
    agreed_rows: int
    serving_p99: float | None
    candidate_p99: float | None

    @property
    def mean_abs_diff(self) -> float | None:
        return self.abs_diff_sum / self.values if self.values else None

    @property
    def agreement(self) -> float | None:
        return self.agreed_rows / self.rows if self.rows else None

    @property
    def latency_ratio(self) -> float | None:
        if self.serving_p99 is None or self.candidate_p99 is None or self.serving_p99 <= 0:
            return None
        return self.candidate_p99 / self.serving_p99


def shadow_figures(texts: Iterable[str], model: str, serving: str, candidate: str) -> ShadowFigures:
    found = samples(texts)

    def ours(labels: Labels) -> bool:
        return (
            labels.get("model") == model
            and labels.get("serving") == serving
            and labels.get("candidate") == candidate
        )

    def count(name: str) -> float:
        return total(found, f"scoring_shadow_{name}", ours)

    # The scorer counts every mirrored request, and each one either compared or failed.
    failures = int(count("failures_total"))
    return ShadowFigures(
        requests=max(0, int(count("requests_total")) - failures),
        failures=failures,
        abs_diff_sum=count("abs_diff_sum_total"),
        values=int(count("values_total")),
        rows=int(count("rows_total")),
        agreed_rows=int(count("agreed_rows_total")),
        serving_p99=quantile(0.99, found, "scoring_shadow_serving_duration_seconds", ours),
        candidate_p99=quantile(0.99, found, "scoring_shadow_candidate_duration_seconds", ours),
    )
