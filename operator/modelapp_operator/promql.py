"""The canary figures from a Prometheus (pure): the instant queries, and their answers reduced to the same
``CanaryFigures`` the pod scrape gives. ``prometheus.py`` sends them.

The queries select the candidate's series by the scorer's own labels (``model``, ``version``; ``code`` for
server errors; see scoring-service/scoring_service/metrics.py) and by ``namespace``: the target label that a
Prometheus scraping pods adds with the usual kubernetes_sd relabelling (``__meta_kubernetes_namespace`` to
``namespace``; the Prometheus Operator's PodMonitor and ServiceMonitor add it too). The scorer's labels must
reach Prometheus under their own names (no target label of the same name).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from modelapp_operator.figures import CanaryFigures

NAMESPACE_LABEL = "namespace"
QUERY_PATH = "/api/v1/query"


class QueryError(ValueError):
    """The Prometheus cannot be asked, or its answer is not one an instant query of ours gets."""


def escape(value: str) -> str:
    """``value`` as a PromQL double-quoted string (Go's escapes: backslash, quote, control characters)."""
    out = []
    for ch in value:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def matchers(namespace: str, model: str, version: str) -> str:
    """The label matchers that pick one model version's series in one namespace: the one place that knows
    which labels the queries assume."""
    labels = {NAMESPACE_LABEL: namespace, "model": model, "version": version}
    return ",".join(f"{name}={escape(value)}" for name, value in labels.items())


@dataclass(frozen=True)
class CanaryQueries:
    """Totals since the candidate's pods started, summed over them (as the pod scrape sums its samples)."""

    requests: str
    server_errors: str
    inference_failures: str
    p99: str

    def all(self) -> tuple[str, str, str, str]:
        """In the order ``reduce`` takes their answers."""
        return self.requests, self.server_errors, self.inference_failures, self.p99


def canary_queries(namespace: str, model: str, version: str) -> CanaryQueries:
    m = matchers(namespace, model, version)
    return CanaryQueries(
        requests=f"sum(scoring_requests_total{{{m}}})",
        server_errors=f'sum(scoring_requests_total{{{m},code=~"5.*"}})',
        inference_failures=f"sum(scoring_inference_failures_total{{{m}}})",
        p99=f"histogram_quantile(0.99, sum by (le) (scoring_request_duration_seconds_bucket{{{m}}}))",
    )


def query_url(base: str) -> str:
    """The instant-query endpoint under ``base`` (which may carry a path prefix). Credentials in the URL are
    refused rather than sent: the operator authenticates to no Prometheus."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueryError(f"not an http(s) URL: {base!r}")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise QueryError("the URL must carry no credentials, query or fragment")
    return base.rstrip("/") + QUERY_PATH


def answer(status: int, body: bytes) -> object:
    """The ``data`` of a successful API answer; QueryError with Prometheus's own message otherwise."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise QueryError(f"HTTP {status}, not JSON: {body[:200]!r}") from None
    if not isinstance(doc, dict):
        raise QueryError(f"HTTP {status}, not an API answer")
    if status != 200 or doc.get("status") != "success":
        raise QueryError(f"HTTP {status}: {doc.get('errorType', '')} {str(doc.get('error', ''))[:200]}")
    return doc.get("data")


def value(data: object) -> float | None:
    """The one sample of an instant vector, None when it is empty (no such series)."""
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise QueryError(f"not an instant vector: {str(data)[:200]}")
    result = data.get("result")
    if not isinstance(result, list) or len(result) > 1:
        raise QueryError(f"not one sample: {str(result)[:200]}")
    if not result:
        return None
    try:
        return float(result[0]["value"][1])
    except (TypeError, KeyError, IndexError, ValueError):
        raise QueryError(f"not a sample: {str(result[0])[:200]}") from None


def _count(data: object) -> int:
    found = value(data)
    if found is not None and not (math.isfinite(found) and found >= 0):
        raise QueryError(f"not a count: {found}")
    return int(found or 0)


def reduce(requests: object, server_errors: object, inference_failures: object, p99: object) -> CanaryFigures:
    """The answers' ``data`` (in the order of ``CanaryQueries``) as figures: no series is no requests, and
    a p99 Prometheus cannot tell (NaN: no observations) is none."""
    q = value(p99)
    return CanaryFigures(
        _count(requests),
        _count(server_errors) + _count(inference_failures),
        q if q is not None and math.isfinite(q) else None,
    )
