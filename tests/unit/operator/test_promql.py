"""The canary figures from Prometheus, pure part: the queries and the reading of the HTTP API's answers (the
real Prometheus answers them in tests/integration/prometheus)."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest
from modelapp_operator.figures import CanaryFigures
from modelapp_operator.promql import (
    QueryError,
    answer,
    canary_queries,
    escape,
    matchers,
    query_url,
    reduce,
    value,
)

pytestmark = pytest.mark.unit


def vector(*values: str) -> dict[str, Any]:
    return {"resultType": "vector", "result": [{"metric": {}, "value": [1700000000.5, v]} for v in values]}


def ok(data: object) -> bytes:
    return json.dumps({"status": "success", "data": data}).encode()


# --- queries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["2.0.0", "1.0.0+build.7", 'a"b', "back\\slash", "new\nline\ttab\x00\x7f", "ünï € 🙂", "", '\\"'],
)
def test_escape_quotes_a_value_so_that_it_reads_back_unchanged(raw: str) -> None:
    quoted = escape(raw)
    assert quoted.startswith('"')
    assert quoted.endswith('"')
    # Go's (so PromQL's) escapes \\, \" and \xNN mean what they mean in Python.
    assert ast.literal_eval(quoted) == raw
    assert "\n" not in quoted
    assert "\x00" not in quoted


def test_the_matchers_name_the_namespace_and_the_scorers_own_labels() -> None:
    assert matchers("ns1", "diabetes", '2"0') == 'namespace="ns1",model="diabetes",version="2\\"0"'


def test_the_canary_queries_sum_the_versions_series_since_its_pods_started() -> None:
    q = canary_queries("ns1", "diabetes", "2.0.0")
    m = 'namespace="ns1",model="diabetes",version="2.0.0"'
    assert q.requests == f"sum(scoring_requests_total{{{m}}})"
    assert q.server_errors == f'sum(scoring_requests_total{{{m},code=~"5.*"}})'
    assert q.inference_failures == f"sum(scoring_inference_failures_total{{{m}}})"
    assert q.p99 == f"histogram_quantile(0.99, sum by (le) (scoring_request_duration_seconds_bucket{{{m}}}))"
    assert q.all() == (q.requests, q.server_errors, q.inference_failures, q.p99)


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://prometheus.monitoring:9090", "http://prometheus.monitoring:9090/api/v1/query"),
        ("https://example.test/prom/", "https://example.test/prom/api/v1/query"),
    ],
)
def test_the_query_url_keeps_a_path_prefix(base: str, url: str) -> None:
    assert query_url(base) == url


@pytest.mark.parametrize(
    "base",
    ["ftp://p:21", "file:///etc/passwd", "http://", "http://user:pw@p:9090", "http://p/?x=1", "p:9090"],
)
def test_no_query_goes_to_an_url_that_is_not_plain_http_or_carries_credentials(base: str) -> None:
    with pytest.raises(QueryError):
        query_url(base)


# --- answers ---------------------------------------------------------------------------------------------


def test_a_vector_answer_gives_its_one_sample_and_an_empty_one_none() -> None:
    assert value(answer(200, ok(vector("42")))) == 42.0
    assert value(answer(200, ok(vector()))) is None


def test_the_figures_add_server_errors_and_model_failures() -> None:
    f = reduce(vector("100"), vector("3"), vector("7"), vector("0.0125"))
    assert f == CanaryFigures(100, 10, 0.0125)
    assert f.error_ratio == pytest.approx(0.1)


def test_no_series_is_no_requests_and_a_nan_p99_is_none() -> None:
    assert reduce(vector(), vector(), vector(), vector()) == CanaryFigures(0, 0, None)
    assert reduce(vector("5"), vector(), vector(), vector("NaN")) == CanaryFigures(5, 0, None)
    assert reduce(vector("5"), vector(), vector(), vector("+Inf")).p99_seconds is None


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, "bad_data parse error"),
        (503, {"status": "error", "errorType": "unavailable", "error": "starting"}, "HTTP 503"),
        (200, {"status": "error", "error": "odd"}, "odd"),
        (200, [1, 2], "not an API answer"),
    ],
)
def test_an_error_answer_is_refused_with_prometheuss_message(status: int, body: object, says: str) -> None:
    with pytest.raises(QueryError, match=says):
        answer(status, json.dumps(body).encode())


def test_an_answer_that_is_not_json_is_refused() -> None:
    with pytest.raises(QueryError, match="not JSON"):
        answer(200, b"<html>a proxy's login page</html>")


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"resultType": "matrix", "result": []},
        {"resultType": "scalar", "result": [1700000000, "1"]},
        vector("1", "2"),
        {"resultType": "vector", "result": [{"metric": {}}]},
        {"resultType": "vector", "result": [{"metric": {}, "value": [0, "many"]}]},
    ],
)
def test_an_answer_that_is_not_one_sample_is_refused(data: object) -> None:
    with pytest.raises(QueryError):
        value(data)


@pytest.mark.parametrize("bad", ["NaN", "-1", "+Inf"])
def test_a_count_that_is_not_a_count_is_refused(bad: str) -> None:
    with pytest.raises(QueryError, match="not a count"):
        reduce(vector(bad), vector(), vector(), vector())
