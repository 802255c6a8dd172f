"""OIP infer request parsing as pure functions: good requests, and each bad one's 400 and message."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from scoring_service import parsing
from scoring_service.errors import BadRequest
from scoring_service.runtime import OnnxModel
from unit.scoring.scoring_models import b64, classifier_model, identity_model, linear_model

pytestmark = pytest.mark.unit

LINEAR = OnnxModel(linear_model().SerializeToString())  # x FP32 [N, 3] -> y FP32 [N, 1]
CLASSIFIER = OnnxModel(classifier_model().SerializeToString())  # x FP32 [N, 4] -> label, probabilities
IDENTITY = OnnxModel(identity_model().SerializeToString())  # in_<DT> [N, 2] -> out_<DT>, every datatype

X = {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}


def doc(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def binary(header: dict[str, Any], data: bytes) -> tuple[bytes, int]:
    head = orjson.dumps(header)
    return head + data, len(head)


def x_binary(size: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": size}}


# -- good requests -------------------------------------------------------------------------------


def test_json_request() -> None:
    request = parsing.parse_infer(LINEAR, doc({**X, "shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]}), None)
    assert list(request.feeds) == ["x"]
    assert request.feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(request.feeds["x"], [[1, 2, 3], [4, 5, 6]])
    assert (request.count, request.outputs, request.binary_outputs, request.request_id) == (
        6,
        ["y"],
        set(),
        None,
    )


def test_binary_request_and_request_wide_binary_outputs() -> None:
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = {
        "id": "r1",
        "inputs": [{**x_binary(24), "shape": [2, 3]}],
        "parameters": {"binary_data_output": True},
    }
    body, length = binary(header, rows.tobytes())
    request = parsing.parse_infer(LINEAR, body, length)
    np.testing.assert_array_equal(request.feeds["x"], rows)
    assert (request.count, request.outputs, request.binary_outputs, request.request_id) == (
        6,
        ["y"],
        {"y"},
        "r1",
    )


@pytest.mark.parametrize(
    ("outputs", "binary_all", "expected"),
    [
        (None, False, (["label", "probabilities"], set())),
        (None, True, (["label", "probabilities"], {"label", "probabilities"})),
        ([{"name": "probabilities"}, {"name": "label"}], False, (["probabilities", "label"], set())),
        ([{"name": "label", "parameters": {"binary_data": True}}], False, (["label"], {"label"})),
        (
            [{"name": "label", "parameters": {"binary_data": False}}, {"name": "probabilities"}],
            True,
            (["label", "probabilities"], {"probabilities"}),
        ),
        ([{"name": "label", "parameters": {}}], True, (["label"], {"label"})),
    ],
)
def test_requested_outputs(outputs: Any, binary_all: bool, expected: tuple[list[str], set[str]]) -> None:
    assert parsing.requested_outputs(CLASSIFIER, outputs, binary_all) == expected


def test_bytes_tensors_reach_the_model_as_text() -> None:
    strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"a", b"bc", b"", "é".encode()))
    item = {
        "name": "in_BYTES",
        "datatype": "BYTES",
        "shape": [2, 2],
        "parameters": {"binary_data_size": len(strings)},
    }
    feeds, count = parsing.decode_inputs(
        {"in_BYTES": IDENTITY.input_by_name["in_BYTES"]}, [item], memoryview(strings)
    )
    assert feeds["in_BYTES"].tolist() == [["a", "bc"], ["", "é"]]
    assert count == 4


def test_binary_slices_follow_the_inputs_order() -> None:
    a, b = np.ones((1, 2), dtype="<f4"), np.full((1, 2), 2.0, dtype="<f8")
    items = [
        {"name": "in_FP32", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
        {"name": "in_FP64", "datatype": "FP64", "shape": [1, 2], "parameters": {"binary_data_size": 16}},
    ]
    specs = {n: IDENTITY.input_by_name[n] for n in ("in_FP32", "in_FP64")}
    feeds, _ = parsing.decode_inputs(specs, items, memoryview(a.tobytes() + b.tobytes()))
    np.testing.assert_array_equal(feeds["in_FP32"], a)
    np.testing.assert_array_equal(feeds["in_FP64"], b)


def test_image_inputs_go_to_their_decoder_only_as_bytes() -> None:
    seen: list[tuple[list[int], Any, Any, str]] = []

    def decode(shape: list[int], data: Any, raw: memoryview | None, where: str) -> npt.NDArray[Any]:
        seen.append((shape, data, raw, where))
        return np.zeros((1, 4), dtype=np.float32)

    images = {"x": decode}
    request = parsing.parse_infer(
        CLASSIFIER, doc({"name": "x", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}), None, images
    )
    assert seen == [([1], ["aGk="], None, "input 'x'")]
    assert request.feeds["x"].shape == (1, 4)
    assert request.count == 4
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    parsing.parse_infer(CLASSIFIER, doc(tensor), None, images)  # a plain tensor never reaches it
    assert len(seen) == 1


def test_image_bytes_from_json_and_binary() -> None:
    assert parsing.image_bytes([2], [b64(b"one"), "data:image/png;base64," + b64(b"two")], None, "w") == [
        b"one",
        b"two",
    ]
    raw = memoryview(struct.pack("<I", 3) + b"one")
    assert parsing.image_bytes([1, 1], None, raw, "w") == [b"one"]


def test_split_body() -> None:
    assert parsing.split_body(b"{}", None) == (b"{}", None)
    header, rest = parsing.split_body(b"{}abc", 2)
    assert header == b"{}"
    assert rest is not None
    assert bytes(rest) == b"abc"


# -- bad requests: always a 400 with the message a client reads ----------------------------------

BAD: list[tuple[str, bytes, int | None, str]] = [
    # the document
    ("header length past the body", b"{}", 3, "Inference-Header-Content-Length 3 exceeds the body (2)"),
    ("not JSON", b"{not json", None, "request is not valid JSON: "),
    ("not an object", b"[]", None, "request must be a JSON object"),
    ("no inputs", b"{}", None, "'inputs' must be a non-empty list"),
    ("empty inputs", b'{"inputs": []}', None, "'inputs' must be a non-empty list"),
    ("inputs not a list", b'{"inputs": {}}', None, "'inputs' must be a non-empty list"),
    # each input
    ("input not an object", b'{"inputs": [1]}', None, "inputs[0] must be an object"),
    ("unknown input", doc({**X, "name": "z"}), None, "inputs[0]: unknown input 'z'; the model takes ['x']"),
    ("name not a string", doc({**X, "name": 5}), None, "inputs[0]: unknown input 5; the model takes ['x']"),
    ("input twice", doc(X, X), None, "input 'x' is given twice"),
    ("unknown datatype", doc({**X, "datatype": "NOPE"}), None, "input 'x': unknown datatype 'NOPE'"),
    ("datatype a list", doc({**X, "datatype": ["FP32"]}), None, "input 'x': unknown datatype ['FP32']"),
    ("datatype an object", doc({**X, "datatype": {}}), None, "input 'x': unknown datatype {}"),
    (
        "no datatype",
        doc({k: v for k, v in X.items() if k != "datatype"}),
        None,
        "input 'x': unknown datatype None",
    ),
    (
        "shape not a list",
        doc({**X, "shape": "1,3"}),
        None,
        "input 'x': 'shape' must be a list of non-negative integers",
    ),
    (
        "negative dimension",
        doc({**X, "shape": [-1, 3]}),
        None,
        "input 'x': 'shape' must be a list of non-negative integers, got [-1, 3]",
    ),
    (
        "input parameters not an object",
        doc({**X, "parameters": 5}),
        None,
        "input 'x': 'parameters' must be an object",
    ),
    (
        "binary size without the header length",
        doc(x_binary(12)),
        None,
        "input 'x': binary_data_size without Inference-Header-Content-Length",
    ),
    (
        "no data",
        doc({k: v for k, v in X.items() if k != "data"}),
        None,
        "input 'x': needs 'data' or parameters.binary_data_size",
    ),
    (
        "other datatype",
        doc({**X, "datatype": "FP64"}),
        None,
        "input 'x': datatype FP64 does not match the model's FP32",
    ),
    (
        "other shape",
        doc({**X, "shape": [1, 4], "data": [1, 2, 3, 4]}),
        None,
        "input 'x': shape [1, 4] does not match the model's [-1, 3]",
    ),
    ("other rank", doc({**X, "shape": [3]}), None, "input 'x': shape [3] does not match the model's [-1, 3]"),
    (
        "too little data",
        doc({**X, "data": [1, 2]}),
        None,
        "input 'x': shape [1, 3] needs 3 elements, data has 2",
    ),
    ("not numbers", doc({**X, "data": ["a", 2, 3]}), None, "input 'x': FP32 data must be numbers"),
    # the request as a whole
    ("request parameters not an object", doc(X, parameters=[]), None, "'parameters' must be an object"),
    ("outputs not a list", doc(X, outputs={}), None, "'outputs' must be a list"),
    ("no outputs", doc(X, outputs=[]), None, "'outputs' must not be empty"),
    ("output not an object", doc(X, outputs=["y"]), None, "outputs[0] must be an object with a 'name'"),
    ("output without a name", doc(X, outputs=[{}]), None, "outputs[0] must be an object with a 'name'"),
    (
        "unknown output",
        doc(X, outputs=[{"name": "q"}]),
        None,
        "outputs[0]: unknown output 'q'; the model has ['y']",
    ),
    (
        "output twice",
        doc(X, outputs=[{"name": "y"}, {"name": "y"}]),
        None,
        "outputs[1]: output 'y' requested twice",
    ),
    (
        "output parameters not an object",
        doc(X, outputs=[{"name": "y", "parameters": 1}]),
        None,
        "outputs[0]: 'parameters' must be an object",
    ),
    ("id not a string", doc(X, id=5), None, "'id' must be a string"),
    # checks run in order: the first problem is the one reported
    (
        "bad input before bad id",
        doc({**X, "name": "z"}, id=5),
        None,
        "inputs[0]: unknown input 'z'; the model takes ['x']",
    ),
    (
        "bad inputs before bad outputs",
        doc({**X, "data": [1, 2]}, outputs={}),
        None,
        "input 'x': shape [1, 3] needs 3 elements, data has 2",
    ),
    ("bad outputs before bad id", doc(X, outputs={}, id=5), None, "'outputs' must be a list"),
]


def _binary_case(name: str, header: dict[str, Any], data: bytes, message: str) -> tuple[str, bytes, int, str]:
    body, length = binary(header, data)
    return name, body, length, message


BAD += [
    _binary_case("size past the data", {"inputs": [x_binary(13)]}, bytes(12), "input 'x': binary_data_size 13 exceeds the binary data"),
    _binary_case("negative size", {"inputs": [x_binary(-1)]}, bytes(12), "input 'x': binary_data_size -1 exceeds the binary data"),
    _binary_case("size not an int", {"inputs": [x_binary("12")]}, bytes(12), "input 'x': binary_data_size '12' exceeds the binary data"),
    _binary_case("size not the shape's", {"inputs": [x_binary(8)]}, bytes(8), "input 'x': binary_data_size 8 does not match shape [1, 3] of FP32 (12 bytes)"),
    _binary_case("bytes left over", {"inputs": [x_binary(12)]}, bytes(13), "1 bytes of binary data are not claimed by any input"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "header_length", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_requests(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parsing.parse_infer(LINEAR, body, header_length)
    assert caught.value.status_code == 400
    if message.endswith(": "):  # the rest is the JSON parser's own words
        assert caught.value.message.startswith(message)
    else:
        assert caught.value.message == message


def test_missing_inputs_are_named() -> None:
    item = {"name": "in_FP32", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}
    with pytest.raises(BadRequest, match=r"^missing inputs \['in_BOOL', 'in_UINT8', "):
        parsing.parse_infer(IDENTITY, doc(item), None)


def test_bytes_that_are_not_text() -> None:
    item = {"name": "in_BYTES", "datatype": "BYTES", "shape": [1, 2], "parameters": {"binary_data_size": 10}}
    body, length = binary({"inputs": [item]}, struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"\xff")
    with pytest.raises(BadRequest, match=r"^input 'in_BYTES': element 1 is not UTF-8 text$"):
        parsing.parse_infer(IDENTITY, body, length)


@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([2, 2], ["a", "b", "c", "d"], "w: images must be sent as a BYTES tensor of shape [N] or [N, 1]"),
        ([1], ["%%%"], "w[0]: not valid base64"),
        ([1], [1], "w: BYTES data must be strings"),
    ],
)
def test_bad_images(shape: list[int], data: Any, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parsing.image_bytes(shape, data, None, "w")
    assert caught.value.message == message
