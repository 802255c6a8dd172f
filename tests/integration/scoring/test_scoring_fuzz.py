"""Fuzzing the live HTTP API: no 5xx for any input, and every error is a well-formed {"error": str}."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integration.scoring.conftest import Server
from schemathesis import GenerationMode

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def dumps(value: Any) -> bytes:
    # stdlib json: orjson refuses ints beyond 64 bits, and those are exactly what we want to send.
    return json.dumps(value).encode()


def assert_well_formed(response: Any, status: int, content: bytes) -> None:
    assert status < 500, content[:500]
    if status >= 400:
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise AssertionError(f"HTTP {status} with a non-JSON body: {content[:200]!r}") from None
        assert isinstance(body, dict)
        assert set(body) == {"error"}
        assert isinstance(body["error"], str)
        assert body["error"]


# -- schemathesis: every documented operation, generated from the app's own OpenAPI -------------


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    # The document is served on the operations port; the operations it describes on the serving port.
    return schemathesis.openapi.from_url(server.metrics_url + "/openapi.json")


# schemathesis' own pytest plugin (schema.parametrize) does not run under pytest 9 yet, so its case
# strategies are drawn from a plain hypothesis test: positive and negative data, random and real names.
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_openapi_operations_never_5xx(server: Server, api_schema: Any, data: st.DataObject) -> None:
    mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    real = data.draw(st.booleans())
    path_parameters = {"name": "diabetes", "version": "1.0.0"} if real else None
    case = data.draw(api_schema.as_strategy(mode, path_parameters=path_parameters))
    response = case.call(base_url=server.url)
    assert str(response.request.url).startswith(server.url + "/")
    assert_well_formed(response, response.status_code, response.content)


# -- hypothesis: near-valid OIP requests against real models ----------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=8),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
datatypes = st.sampled_from(
    [
        "FP32",
        "FP64",
        "FP16",
        "INT64",
        "INT32",
        "INT8",
        "UINT8",
        "UINT64",
        "BOOL",
        "BYTES",
        "BF16",
        "fp32",
        "X",
    ]
)
shapes = st.one_of(st.lists(st.integers(min_value=-2, max_value=12), max_size=4), json_values)


@st.composite
def oip_requests(draw: st.DrawFn) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["input", "in_FP32", "in_BYTES", "nope", 3])),
        "datatype": draw(datatypes),
        "shape": draw(shapes),
    }
    if draw(st.booleans()):
        tensor["data"] = draw(
            st.one_of(json_values, st.lists(st.floats(allow_nan=False, width=32), max_size=24),
                      st.lists(st.lists(st.integers(-300, 300), max_size=11), max_size=3))
        )  # fmt: skip
    if draw(st.booleans()):
        tensor["parameters"] = draw(
            st.one_of(json_values, st.fixed_dictionaries({"binary_data_size": json_values}))
        )
    request: dict[str, Any] = {"inputs": draw(st.one_of(st.just([tensor]), json_values))}
    if draw(st.booleans()):
        request["outputs"] = draw(st.one_of(json_values, st.just([{"name": "variable"}])))
    if draw(st.booleans()):
        request["parameters"] = draw(json_values)
    if draw(st.booleans()):
        request["id"] = draw(json_values)
    return request


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@FUZZ
@given(
    model=st.sampled_from(["diabetes", "digits", "identity", "missing"]),
    request=oip_requests(),
)
def test_infer_json_fuzz(http: httpx.Client, model: str, request: dict[str, Any]) -> None:
    response = http.post(f"/v2/models/{model}/infer", content=dumps(request))
    assert_well_formed(response, response.status_code, response.content)


@FUZZ
@given(
    model=st.sampled_from(["diabetes", "digits", "identity"]),
    request=oip_requests(),
    payload=st.binary(max_size=64),
    header_length=st.one_of(
        st.none(),
        st.integers(min_value=-5, max_value=400),
        st.text(alphabet="0123456789abc-+. ", min_size=1, max_size=4).map(str.strip).filter(bool),
    ),
)
def test_infer_binary_framing_fuzz(
    http: httpx.Client, model: str, request: dict[str, Any], payload: bytes, header_length: Any
) -> None:
    head = dumps(request)
    length = len(head) if header_length is None else header_length
    response = http.post(
        f"/v2/models/{model}/infer",
        content=head + payload,
        headers={"Inference-Header-Content-Length": str(length), "Content-Type": "application/octet-stream"},
    )
    assert_well_formed(response, response.status_code, response.content)


@FUZZ
@given(body=st.one_of(json_values, st.fixed_dictionaries({"data": json_values}),
                      st.fixed_dictionaries({"input": json_values, "top_k": json_values})))  # fmt: skip
def test_score_fuzz(http: httpx.Client, body: Any) -> None:
    response = http.post("/score", content=dumps(body))
    assert_well_formed(response, response.status_code, response.content)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes_and_images_fuzz(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/v2/models/digits/infer", content=raw)
    assert_well_formed(response, response.status_code, response.content)
    import base64

    image = {
        "inputs": [
            {"name": "input", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(raw).decode()]}
        ]
    }
    response = http.post("/v2/models/digits/infer", content=dumps(image))
    assert_well_formed(response, response.status_code, response.content)
