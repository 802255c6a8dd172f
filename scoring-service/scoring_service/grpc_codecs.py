"""Pure conversions between the Open Inference Protocol's gRPC messages and checked numpy tensors.

A gRPC request is checked by the functions that check a REST one (parsing.py, codecs.py): typed
`contents` are turned into the bytes of the binary tensor data extension, `raw_input_contents` are
those bytes already, and both are decoded as REST's binary tensors are. Same checks, same messages.

ModelInfer travels as bytes (grpc_server.py registers it without a (de)serializer): protobuf parses
the request less its `raw_input_contents`, which stay views of the received bytes, and a response's
`raw_output_contents` are appended to its serialized header. A large tensor is copied neither into
nor out of a protobuf message (upb copies a `bytes` field on parse and on every access).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from scoring_service.codecs import (
    DATATYPE_TO_NUMPY,
    binary_data,
    element_count,
    serialize_bytes,
)
from scoring_service.errors import BadRequest, PayloadTooLarge
from scoring_service.parsing import (
    DEFAULT_LIMITS,
    NO_IMAGES,
    ImageDecoder,
    InferRequest,
    Limits,
    check_complete,
    check_tensor,
    decode_tensor,
    input_spec,
    requested_outputs,
    tensor_header,
)
from scoring_service.proto import grpc_predict_v2_pb2 as pb

if TYPE_CHECKING:
    from scoring_service.runtime import OnnxModel, TensorSpec

InputTensor = pb.ModelInferRequest.InferInputTensor
Parameters = Mapping[str, pb.InferParameter]
Raw = Sequence[bytes | memoryview]

# Field numbers of the protocol's raw tensor bytes (grpc_predict_v2.proto), read and written here as
# protobuf wire format: a key (field << 3 | wire type), then for wire type 2 a varint length and bytes.
RAW_INPUT_FIELD = 7  # ModelInferRequest.raw_input_contents
RAW_OUTPUT_KEY = bytes([6 << 3 | 2])  # ModelInferResponse.raw_output_contents, length-delimited
SPLIT_MIN_BYTES = 16 * 1024
"""Below this, the whole request goes to protobuf: copying a few raw bytes costs less than walking."""

# The field of InferTensorContents that carries each datatype (FP16 and BF16 have none: raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

# The numpy type a field's values arrive in, before the range check to a narrower datatype.
_FIELD_DTYPE: dict[str, type[np.generic]] = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}


def parse_grpc_infer(
    model: OnnxModel,
    request: pb.ModelInferRequest,
    image_inputs: Mapping[str, ImageDecoder] = NO_IMAGES,
    limits: Limits = DEFAULT_LIMITS,
    raw: Raw | None = None,
) -> InferRequest:
    """The request, checked in REST's order: inputs, then outputs. `raw`: its raw_input_contents as
    `split_infer_request` gives them (default: the message's own, read once).

    The outputs go back raw (`binary_outputs` is all of them, as the protocol has a response either
    all raw or all typed) when the inputs came raw, when asked (`binary_data_output`, an output's
    `binary_data`), or when an output's datatype has no typed field (FP16, BF16); typed otherwise.
    """
    if raw is None:
        raw = list(request.raw_input_contents)
    feeds, count = grpc_inputs(model.input_by_name, request.inputs, raw, image_inputs, limits)
    asked = [output_item(out) for out in request.outputs] or None  # none asked: every output
    outputs, binary = requested_outputs(model, asked, flag(request.parameters, "binary_data_output"))
    as_raw = bool(raw) or bool(binary)
    as_raw = as_raw or any(model.output_by_name[n].datatype not in CONTENTS_FIELD for n in outputs)
    return InferRequest(feeds, count, outputs, set(outputs) if as_raw else set(), request.id or None)


def grpc_inputs(
    specs: Mapping[str, TensorSpec],
    inputs: Sequence[InputTensor],
    raw: Raw,
    image_inputs: Mapping[str, ImageDecoder] = NO_IMAGES,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """Every input tensor as the model's array, and their total element count."""
    if not inputs:
        raise BadRequest("'inputs' must be a non-empty list")
    if raw and len(raw) != len(inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs: one per input, in order"
        )
    feeds: dict[str, npt.NDArray[Any]] = {}
    count = 0
    for i, tensor in enumerate(inputs):
        name, spec = input_spec(i, {"name": tensor.name}, specs, feeds)
        where = spec.where
        datatype, shape = tensor_header({"datatype": tensor.datatype, "shape": list(tensor.shape)}, where)
        images = image_inputs.get(name) if datatype == "BYTES" else None
        if images is None:
            check_tensor(spec, datatype, shape, where)  # before the contents: REST's order of errors
        if not raw:
            payload = memoryview(typed_payload(datatype, shape, tensor.contents, limits, where))
        elif tensor.HasField("contents"):
            raise BadRequest(f"{where}: has contents, and raw_input_contents are sent: one or the other")
        else:
            payload = memoryview(raw[i])
        if images is not None:
            arr = images(shape, None, payload, where)
        else:
            arr = decode_tensor(spec, datatype, shape, None, payload, where, not limits.allow_non_finite)
        feeds[name] = arr
        count += arr.size
    check_complete(specs, feeds, None, 0)
    return feeds, count


def typed_payload(
    datatype: str, shape: list[int], contents: pb.InferTensorContents, limits: Limits, where: str
) -> bytes:
    """Typed `contents` as the binary tensor data extension's bytes, range-checked to `datatype`.

    Typed contents cost as JSON does (a Python object per value), so they share its budget.
    """
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        if element_count(shape) == 0 and not contents.ListFields():
            return b""  # an empty FP16 tensor needs no field
        raise BadRequest(f"{where}: {datatype} has no typed contents; send it in raw_input_contents")
    for descriptor, _ in contents.ListFields():
        if descriptor.name != field:
            raise BadRequest(f"{where}: {datatype} values go in contents.{field}, not {descriptor.name}")
    size = contents.ByteSize()
    if size > limits.max_json_bytes:
        raise PayloadTooLarge(
            f"{where}: typed contents of {size} bytes, above the limit of {limits.max_json_bytes}; "
            "send large tensors in raw_input_contents"
        )
    values: Sequence[Any] = getattr(contents, field)
    if len(values) != element_count(shape):
        raise BadRequest(
            f"{where}: shape {shape} needs {element_count(shape)} elements, contents.{field} has {len(values)}"
        )
    if datatype == "BYTES":
        items = np.empty(len(values), dtype=object)
        items[:] = list(values)
        return serialize_bytes(items)
    arr = np.array(values, dtype=_FIELD_DTYPE[field])
    target = DATATYPE_TO_NUMPY[datatype]
    if target.kind in "iu" and target.itemsize < arr.dtype.itemsize and arr.size:
        info = np.iinfo(target)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise BadRequest(f"{where}: {datatype} data out of range [{info.min}, {info.max}]")
    return binary_data(arr.astype(target))


def flag(parameters: Parameters, key: str) -> bool:
    """A bool parameter; absent or of another type: false (as REST reads `"binary_data": 1`)."""
    value = parameters.get(key)
    return value is not None and value.WhichOneof("parameter_choice") == "bool_param" and value.bool_param


def output_item(out: pb.ModelInferRequest.InferRequestedOutputTensor) -> dict[str, Any]:
    """A requested output as REST's `outputs[i]`, for `requested_outputs` to check both alike."""
    item: dict[str, Any] = {"name": out.name}
    if "binary_data" in out.parameters:
        item["parameters"] = {"binary_data": flag(out.parameters, "binary_data")}
    return item


def payload_size(request: pb.ModelInferRequest, raw: Raw) -> int:
    """The bytes of tensor data a request carries: decides whether it is parsed on the event loop."""
    size = sum(len(r) for r in raw)
    return size + sum(t.contents.ByteSize() for t in request.inputs if t.HasField("contents"))


def split_infer_request(data: bytes) -> tuple[pb.ModelInferRequest, Raw]:
    """A serialized ModelInferRequest as the message without its raw_input_contents, and those
    contents as views of `data` (not copied). A small request is parsed whole."""
    if len(data) < SPLIT_MIN_BYTES:
        request = parse_message(data)
        return request, list(request.raw_input_contents)
    view = memoryview(data)
    raw: list[memoryview] = []
    rest: list[memoryview] = []  # the other fields' bytes, in their order
    start = 0
    for field_start, field, value_start, end in wire_fields(data):
        if field == RAW_INPUT_FIELD:
            rest.append(view[start:field_start])
            raw.append(view[value_start:end])
            start = end
    if not raw:
        return parse_message(data), raw
    rest.append(view[start:])
    return parse_message(b"".join(rest)), raw


def parse_message(data: bytes) -> pb.ModelInferRequest:
    try:
        return pb.ModelInferRequest.FromString(data)
    except DecodeError:
        raise BadRequest("malformed ModelInferRequest: not a valid protobuf message") from None


def wire_fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Each top-level field of a protobuf message as (start, field number, value start, end); the
    values of length-delimited fields (wire type 2) are their bytes, without the length."""
    pos, size = 0, len(data)
    while pos < size:
        start = pos
        key, pos = read_varint(data, pos)
        wire_type = key & 7
        if wire_type == 0:
            _, pos = read_varint(data, pos)
            value = pos
        elif wire_type == 2:
            length, value = read_varint(data, pos)
            pos = value + length
        elif wire_type in (1, 5):
            value, pos = pos, pos + (8 if wire_type == 1 else 4)
        else:
            raise BadRequest(f"malformed ModelInferRequest: wire type {wire_type} at byte {start}")
        if pos > size:
            raise BadRequest(f"malformed ModelInferRequest: field at byte {start} runs past the end")
        yield start, key >> 3, value, pos


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos`, and the position after it."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise BadRequest(f"malformed ModelInferRequest: bad varint at byte {pos}")


# -- responses ---------------------------------------------------------------------------------------


def infer_response(
    name: str, version: str, model: OnnxModel, request: InferRequest, results: Sequence[npt.NDArray[Any]]
) -> bytes:
    """The serialized ModelInferResponse: the outputs all raw (`request.binary_outputs` set), appended
    to the serialized rest of the message, or all in typed contents."""
    response = pb.ModelInferResponse(model_name=name, model_version=version, id=request.request_id or "")
    as_raw = bool(request.binary_outputs)
    chunks: list[bytes] = []
    for out_name, arr in zip(request.outputs, results, strict=True):
        datatype = model.output_by_name[out_name].datatype
        tensor = response.outputs.add(name=out_name, datatype=datatype, shape=list(arr.shape))
        if as_raw:
            data = binary_data(arr)
            chunks += (RAW_OUTPUT_KEY, varint(len(data)), data)
        else:
            set_contents(tensor.contents, datatype, arr)
    header = response.SerializeToString()
    return b"".join([header, *chunks]) if chunks else header


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def set_contents(contents: pb.InferTensorContents, datatype: str, arr: npt.NDArray[Any]) -> None:
    values = getattr(contents, CONTENTS_FIELD[datatype])
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        values.extend(item if isinstance(item, bytes) else str(item).encode("utf-8") for item in flat)
    else:
        values.extend(flat.tolist())


def server_metadata(info: Mapping[str, Any]) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=info["name"], version=info["version"], extensions=info["extensions"]
    )


def model_metadata(info: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    """The REST model metadata document (`ServedModel.metadata`) as the gRPC message."""
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=info["name"],
        versions=info["versions"],
        platform=info["platform"],
        inputs=[tensor(**t) for t in info["inputs"]],
        outputs=[tensor(**t) for t in info["outputs"]],
    )
