"""gRPC messages <-> checked tensors (grpc_codecs) and the error mapping (grpc_server), no server."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from scoring_service import errors
from scoring_service.codecs import DATATYPE_TO_NUMPY, binary_data, serialize_bytes
from scoring_service.grpc_codecs import (
    CONTENTS_FIELD,
    SPLIT_MIN_BYTES,
    grpc_inputs,
    infer_response,
    model_metadata,
    parse_grpc_infer,
    split_infer_request,
)
from scoring_service.grpc_server import GRPC_STATUS, grpc_status
from scoring_service.parsing import Limits
from scoring_service.proto import grpc_predict_v2_pb2 as pb
from scoring_service.runtime import OnnxModel
from scoring_service.settings import Settings
from unit.scoring.scoring_models import DATATYPES, identity_model, linear_model

pytestmark = pytest.mark.unit

IDENTITY = OnnxModel(identity_model().SerializeToString())  # in_<DT> [N, 2] -> out_<DT>, every datatype
LINEAR = OnnxModel(linear_model().SerializeToString())  # x FP32 [N, 3] -> y FP32 [N, 1]
TYPED = [dt for dt in DATATYPES if dt in CONTENTS_FIELD]  # all but FP16, which has no typed field

Tensor = pb.ModelInferRequest.InferInputTensor


def sample(datatype: str) -> npt.NDArray[Any]:
    """A [2, 2] tensor of `datatype` with values at the edges of its range."""
    if datatype == "BYTES":
        return np.array([[b"a", "\u00e9".encode()], [b"", b"xyz"]], dtype=object)
    dtype = DATATYPE_TO_NUMPY[datatype]
    if dtype.kind == "b":
        return np.array([[True, False], [False, True]])
    if dtype.kind == "f":
        return np.array([[1.5, -2.25], [0.0, 1e-3]], dtype=dtype)
    info = np.iinfo(dtype)
    return np.array([[info.min, info.max], [0, 1]], dtype=dtype)


def typed(datatype: str, arr: npt.NDArray[Any], name: str | None = None) -> Tensor:
    tensor = Tensor(name=name or f"in_{datatype}", datatype=datatype, shape=list(arr.shape))
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(arr.reshape(-1).tolist())
    return tensor


def specs(*datatypes: str) -> dict[str, Any]:
    return {f"in_{dt}": IDENTITY.input_by_name[f"in_{dt}"] for dt in datatypes}


def text(arr: npt.NDArray[Any]) -> list[Any]:
    """What the model is fed for BYTES (str), to compare with what was sent (bytes)."""
    return [v.decode() if isinstance(v, bytes) else v for v in arr.reshape(-1).tolist()]


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", TYPED)
def test_typed_contents_decode_to_the_datatype(datatype: str) -> None:
    arr = sample(datatype)
    feeds, count = grpc_inputs(specs(datatype), [typed(datatype, arr)], [])
    got = feeds[f"in_{datatype}"]
    assert count == 4
    assert got.shape == (2, 2)
    if datatype == "BYTES":
        assert text(got) == text(arr)
    else:
        assert got.dtype == DATATYPE_TO_NUMPY[datatype]
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_raw_contents_decode_to_the_datatype_and_equal_typed_ones(datatype: str) -> None:
    arr = sample(datatype)
    tensor = Tensor(name=f"in_{datatype}", datatype=datatype, shape=[2, 2])
    feeds, _ = grpc_inputs(specs(datatype), [tensor], [binary_data(arr)])
    got = feeds[f"in_{datatype}"]
    if datatype == "BYTES":
        assert text(got) == text(arr)
        return
    assert got.dtype == DATATYPE_TO_NUMPY[datatype]
    np.testing.assert_array_equal(got, arr)
    if datatype in CONTENTS_FIELD:
        np.testing.assert_array_equal(
            grpc_inputs(specs(datatype), [typed(datatype, arr)], [])[0][tensor.name], got
        )


def test_the_response_is_typed_for_typed_inputs_and_raw_for_raw_ones() -> None:
    x = np.array([[1, 2, 3]], dtype=np.float32)
    as_typed = pb.ModelInferRequest(model_name="linear", id="r1", inputs=[typed("FP32", x, "x")])
    checked = parse_grpc_infer(LINEAR, as_typed)
    assert (checked.outputs, checked.binary_outputs, checked.request_id) == (["y"], set(), "r1")
    as_raw = pb.ModelInferRequest(
        inputs=[Tensor(name="x", datatype="FP32", shape=[1, 3])], raw_input_contents=[x.tobytes()]
    )
    assert parse_grpc_infer(LINEAR, as_raw).binary_outputs == {"y"}
    asked = pb.ModelInferRequest(inputs=[typed("FP32", x, "x")])
    asked.parameters["binary_data_output"].bool_param = True
    assert parse_grpc_infer(LINEAR, asked).binary_outputs == {"y"}
    one = pb.ModelInferRequest(inputs=[typed("FP32", x, "x")])
    one.outputs.add(name="y").parameters["binary_data"].bool_param = True
    assert parse_grpc_infer(LINEAR, one).binary_outputs == {"y"}


@pytest.mark.parametrize(
    ("datatype", "as_raw"), [(dt, True) for dt in DATATYPES] + [(dt, False) for dt in TYPED]
)
def test_outputs_encode_typed_and_raw(datatype: str, as_raw: bool) -> None:
    arr = sample(datatype)
    name = f"out_{datatype}"
    checked = parse_grpc_infer(IDENTITY, all_inputs(), limits=Limits())
    checked.outputs, checked.binary_outputs = [name], {name} if as_raw else set()
    response = pb.ModelInferResponse.FromString(infer_response("identity", "1", IDENTITY, checked, [arr]))
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == (name, datatype, [2, 2])
    if as_raw:
        assert list(response.raw_output_contents) == [binary_data(arr)]
        return
    assert not response.raw_output_contents
    values = list(getattr(out.contents, CONTENTS_FIELD[datatype]))
    assert values == [v.encode() if isinstance(v, str) else v for v in arr.reshape(-1).tolist()]


def all_inputs() -> pb.ModelInferRequest:
    """The identity model's 13 inputs, raw (FP16 has no typed field)."""
    request = pb.ModelInferRequest()
    for dt in DATATYPES:
        request.inputs.add(name=f"in_{dt}", datatype=dt, shape=[2, 2])
        request.raw_input_contents.append(binary_data(sample(dt)))
    return request


def test_an_fp16_output_makes_the_whole_response_raw() -> None:
    request = pb.ModelInferRequest(inputs=[typed(dt, sample(dt)) for dt in TYPED])
    request.inputs.add(name="in_FP16", datatype="FP16", shape=[2, 2])
    with pytest.raises(errors.BadRequest, match="FP16 has no typed contents; send it in raw_input_contents"):
        parse_grpc_infer(IDENTITY, request)
    raw = all_inputs()
    raw.outputs.add(name="out_INT8")
    raw.outputs.add(name="out_FP16")
    assert parse_grpc_infer(IDENTITY, raw).binary_outputs == {"out_INT8", "out_FP16"}


# -- bad requests: the same errors and messages as REST ------------------------------------------


def x_typed(**contents: Any) -> Tensor:
    return Tensor(name="x", datatype="FP32", shape=[1, 3], contents=pb.InferTensorContents(**contents))


def x_raw() -> Tensor:
    return Tensor(name="x", datatype="FP32", shape=[1, 3])


@pytest.mark.parametrize(
    ("inputs", "raw", "error", "message"),
    [
        ([], [], errors.BadRequest, "'inputs' must be a non-empty list"),
        ([x_typed(fp32_contents=[1, 2])], [], errors.BadRequest, r"shape \[1, 3\] needs 3 elements, contents.fp32_contents has 2"),
        ([x_typed(fp64_contents=[1, 2, 3])], [], errors.BadRequest, "FP32 values go in contents.fp32_contents, not fp64_contents"),
        ([x_typed(fp32_contents=[1, float("nan"), 3])], [], errors.BadRequest, "values must be finite numbers"),
        ([Tensor(name="x", datatype="FP64", shape=[1, 3])], [b"\0" * 24], errors.BadRequest, "datatype FP64 does not match the model's FP32"),
        ([Tensor(name="x", datatype="FP32", shape=[1, 4])], [b"\0" * 16], errors.BadRequest, r"shape \[1, 4\] does not match the model's \[-1, 3\]"),
        ([Tensor(name="x", datatype="FP32", shape=[-1, 3])], [b""], errors.BadRequest, "'shape' must be a list of non-negative integers"),
        ([Tensor(name="x", datatype="NOPE", shape=[1, 3])], [b""], errors.BadRequest, "unknown datatype 'NOPE'"),
        ([Tensor(name="z", datatype="FP32", shape=[1, 3])], [b""], errors.BadRequest, "unknown input 'z'; the model takes"),
        ([x_raw()], [b"\0" * 11], errors.BadRequest, "binary_data_size 11 does not match shape"),
        ([x_raw()], [b"\0" * 12, b""], errors.BadRequest, "raw_input_contents has 2 entries for 1 inputs"),
        ([x_typed(fp32_contents=[1, 2, 3])], [b"\0" * 12], errors.BadRequest, "has contents, and raw_input_contents are sent"),
        ([x_raw(), x_raw()], [b"\0" * 12] * 2, errors.BadRequest, "input 'x' is given twice"),
        ([x_typed(fp32_contents=[1.0] * 300)], [], errors.PayloadTooLarge, "typed contents of 1203 bytes, above the limit of 1024"),
    ],
)  # fmt: skip
def test_bad_inputs(inputs: list[Tensor], raw: list[bytes], error: type[Exception], message: str) -> None:
    request = pb.ModelInferRequest(inputs=inputs, raw_input_contents=raw)
    with pytest.raises(error, match=message):
        parse_grpc_infer(LINEAR, request, limits=Limits(max_json_bytes=1024))


@pytest.mark.parametrize(
    ("datatype", "values", "message"),
    [
        ("INT8", [127, 128], r"INT8 data out of range \[-128, 127\]"),
        ("INT16", [-32769, 0], r"INT16 data out of range"),
        ("UINT8", [255, 256], r"UINT8 data out of range \[0, 255\]"),
        ("UINT16", [0, 65536], r"UINT16 data out of range"),
    ],
)
def test_typed_narrow_integers_are_range_checked(datatype: str, values: list[int], message: str) -> None:
    tensor = Tensor(name=f"in_{datatype}", datatype=datatype, shape=[1, 2])
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(values)
    with pytest.raises(errors.BadRequest, match=message):
        grpc_inputs(specs(datatype), [tensor], [])


def test_malformed_raw_bytes_and_non_utf8_text_are_refused() -> None:
    tensor = Tensor(name="in_BYTES", datatype="BYTES", shape=[1, 2])
    with pytest.raises(errors.BadRequest, match="truncated BYTES element length"):
        grpc_inputs(specs("BYTES"), [tensor], [b"\x01\x00\x00\x00a\x05"])
    with pytest.raises(errors.BadRequest, match="BYTES element overruns"):
        grpc_inputs(specs("BYTES"), [tensor], [b"\x09\x00\x00\x00a"])
    bad_text = serialize_bytes(np.array([b"\xff", b"a"], dtype=object))
    with pytest.raises(errors.BadRequest, match="element 0 is not UTF-8 text"):
        grpc_inputs(specs("BYTES"), [tensor], [bad_text])


def test_missing_inputs_and_bad_outputs() -> None:
    with pytest.raises(errors.BadRequest, match=r"missing inputs \['in_INT8'\]"):
        grpc_inputs(specs("INT32", "INT8"), [typed("INT32", sample("INT32"))], [])
    request = pb.ModelInferRequest(inputs=[x_typed(fp32_contents=[1, 2, 3])])
    request.outputs.add(name="nope")
    with pytest.raises(errors.BadRequest, match=r"outputs\[0\]: unknown output 'nope'"):
        parse_grpc_infer(LINEAR, request)


# -- the wire format: raw tensor bytes around protobuf --------------------------------------------


def image_request(*raw: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="image", model_version="2", id="r1", raw_input_contents=raw)
    for i, _ in enumerate(raw):
        request.inputs.add(name=f"x{i}", datatype="FP32", shape=[1, 3, 224, 224])
    request.outputs.add(name="y").parameters["binary_data"].bool_param = True
    request.parameters["priority"].int64_param = 3
    return request


@pytest.mark.parametrize("sizes", [[602112], [602112, 0, 70000], [12, 40]])
def test_a_split_request_is_the_message_and_views_of_its_raw_bytes(sizes: list[int]) -> None:
    raw = [bytes([i + 1]) * size for i, size in enumerate(sizes)]
    data = image_request(*raw).SerializeToString()
    request, views = split_infer_request(data)
    assert [bytes(v) for v in views] == raw
    if len(data) >= SPLIT_MIN_BYTES:  # not copied: views of the received bytes
        assert all(isinstance(v, memoryview) and v.obj is data for v in views)
        assert not request.raw_input_contents
    request.ClearField("raw_input_contents")
    expected = image_request()
    expected.inputs.extend(image_request(*raw).inputs)
    assert request == expected


def test_raw_contents_anywhere_in_the_message_are_found() -> None:
    """Protobuf allows fields in any order: the raw bytes first, the rest after them."""
    raw = b"\x07" * 70000
    data = (
        pb.ModelInferRequest(raw_input_contents=[raw]).SerializeToString()
        + image_request().SerializeToString()
    )
    request, views = split_infer_request(data)
    assert [bytes(v) for v in views] == [raw]
    assert (request.model_name, request.id, request.parameters["priority"].int64_param) == ("image", "r1", 3)


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"\x3a\xff\xff\x03", "field at byte {at} runs past the end"),  # raw bytes longer than the message
        (b"\x3a" + b"\xff" * 11, "bad varint at byte {after}"),
        (b"\x0b", "wire type 3 at byte {at}"),  # a group
        (b"\x0a\x02\xff\xfe", "not a valid protobuf message"),  # model_name not UTF-8: protobuf's error
    ],
)
def test_a_malformed_message_is_a_bad_request(tail: bytes, message: str) -> None:
    data = image_request(b"\0" * 602112).SerializeToString()
    where = message.format(at=len(data), after=len(data) + 1)
    with pytest.raises(errors.BadRequest, match=f"malformed ModelInferRequest: {where}"):
        split_infer_request(data + tail)
    with pytest.raises(errors.BadRequest, match="malformed ModelInferRequest: not a valid protobuf message"):
        split_infer_request(b"\x0a\x05ab")  # small: protobuf parses it whole


def test_raw_outputs_of_any_size_are_appended_to_the_response() -> None:
    checked = parse_grpc_infer(IDENTITY, all_inputs(), limits=Limits())
    big = np.arange(40000, dtype=np.float32).reshape(20000, 2)  # 160000 bytes: a 3-byte length
    checked.outputs, checked.binary_outputs = ["out_FP32", "out_INT8"], {"out_FP32", "out_INT8"}
    checked.request_id = "r9"
    data = infer_response("identity", "1", IDENTITY, checked, [big, sample("INT8")])
    response = pb.ModelInferResponse.FromString(data)
    assert (response.model_name, response.model_version, response.id) == ("identity", "1", "r9")
    assert [list(o.shape) for o in response.outputs] == [[20000, 2], [2, 2]]
    assert list(response.raw_output_contents) == [big.tobytes(), binary_data(sample("INT8"))]


# -- metadata, errors ----------------------------------------------------------------------------


def test_model_metadata_is_the_rest_document() -> None:
    info = {
        "name": "linear",
        "versions": ["2"],
        "platform": "onnxruntime_onnx",
        "inputs": [s.metadata() for s in LINEAR.inputs],
        "outputs": [s.metadata() for s in LINEAR.outputs],
    }
    message = model_metadata(info)
    assert (message.name, list(message.versions), message.platform) == ("linear", ["2"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in message.inputs] == [("x", "FP32", [-1, 3])]
    assert [(t.name, t.datatype, list(t.shape)) for t in message.outputs] == [("y", "FP32", [-1, 1])]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InferenceFailed, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnsupportedMediaType, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound, grpc.StatusCode.NOT_FOUND),
        (errors.PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.ModelNotReady, grpc.StatusCode.UNAVAILABLE),
        (errors.Overloaded, grpc.StatusCode.UNAVAILABLE),
        (errors.ScoringError, grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_has_its_grpc_status(error: type[errors.ScoringError], status: grpc.StatusCode) -> None:
    assert grpc_status(error.status_code) is status


def test_no_client_error_is_unknown_or_internal() -> None:
    for code in [*GRPC_STATUS, 402, 409, 422, 429]:
        if code < 500:
            assert grpc_status(code) not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def test_the_grpc_port_must_differ_from_the_others() -> None:
    with pytest.raises(ValueError, match="grpc_port 8080 is also the serving port"):
        Settings(port=8080, grpc_port=8080)
    with pytest.raises(ValueError, match="grpc_port 9000 is also the metrics port"):
        Settings(metrics_port=9000, grpc_port=9000)
    assert Settings(grpc_port=0).grpc_port == 0
    assert Settings().grpc_port == 8081


def test_the_messages_match_the_protocol_as_tritonclient_has_it() -> None:
    """Field for field (name, number, type, repeated) with tritonclient's own copy of the protocol."""
    from tritonclient.grpc import service_pb2 as triton

    def fields(descriptor: Any) -> dict[str, tuple[int, int, bool]]:
        return {f.name: (f.number, f.type, f.is_repeated) for f in descriptor.fields}

    def compare(ours: Any, theirs: Any) -> None:
        assert fields(ours).items() <= fields(theirs).items(), ours.full_name
        for nested in ours.nested_types:
            compare(nested, theirs.nested_types_by_name[nested.name])

    for name, ours in pb.DESCRIPTOR.message_types_by_name.items():
        compare(ours, triton.DESCRIPTOR.message_types_by_name[name])
