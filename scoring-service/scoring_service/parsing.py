"""Pure parsing of an Open Inference Protocol infer request: body bytes -> checked feeds and outputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy.typing as npt
import orjson

from scoring_service.codecs import (
    KNOWN_DATATYPES,
    check_shape,
    decode_base64,
    decode_binary_tensor,
    decode_json_tensor,
)
from scoring_service.errors import BadRequest, PayloadTooLarge, brief

if TYPE_CHECKING:
    from scoring_service.runtime import OnnxModel, TensorSpec

ImageDecoder = Callable[[list[int], Any, memoryview | None, str], npt.NDArray[Any]]
"""(shape, JSON data, binary slice, where) -> the model's tensor, for an input that takes encoded images."""

NO_IMAGES: Mapping[str, ImageDecoder] = {}


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may hold (from the settings; these defaults are the settings' defaults)."""

    allow_non_finite: bool = False
    """Accept NaN and ±infinity in float tensors."""
    max_json_bytes: int = 4 * 1024 * 1024
    """The JSON document (with binary tensor data, its header): parsing costs ~13x its size in memory."""


DEFAULT_LIMITS = Limits()


# Not frozen: a frozen dataclass sets each field through object.__setattr__, about 0.5 µs per
# request on the hot path for nothing (nobody mutates it).
@dataclass(slots=True)
class InferRequest:
    """An infer request, checked against the model."""

    feeds: dict[str, npt.NDArray[Any]]
    count: int
    """Elements over all inputs: decides whether the model runs inline or in a thread."""
    outputs: list[str]
    binary_outputs: set[str]
    request_id: str | None


def parse_infer(
    model: OnnxModel,
    body: bytes,
    header_length: int | None,
    image_inputs: Mapping[str, ImageDecoder] = NO_IMAGES,
    limits: Limits = DEFAULT_LIMITS,
) -> InferRequest:
    """The whole request, checked in the order a client reads its errors: framing, inputs, outputs, id.

    `image_inputs` maps the inputs that also accept encoded images (as BYTES) to their decoder.
    """
    header, binary = (body, None) if header_length is None else split_body(body, header_length)
    request = load_request(header, limits.max_json_bytes)
    inputs = request_inputs(request)
    feeds, count = decode_inputs(model.input_by_name, inputs, binary, image_inputs, limits.allow_non_finite)
    if len(request) == 1:  # {"inputs": [...]} alone, the usual request: no parameters, outputs or id to read
        return InferRequest(feeds, count, model.output_names, set(), None)
    binary_all = binary_data_output(request)
    outputs, binary_outputs = requested_outputs(model, request.get("outputs"), binary_all)
    return InferRequest(feeds, count, outputs, binary_outputs, request_id(request))


# -- the document --------------------------------------------------------------------------------


def split_body(body: bytes, header_length: int | None) -> tuple[bytes, memoryview | None]:
    """The JSON header and, with the binary tensor data extension, the binary data after it."""
    if header_length is None:
        return body, None
    if header_length > len(body):
        raise BadRequest(f"Inference-Header-Content-Length {header_length} exceeds the body ({len(body)})")
    return body[:header_length], memoryview(body)[header_length:]


def load_json(text: bytes, max_bytes: int = DEFAULT_LIMITS.max_json_bytes) -> Any:
    if len(text) > max_bytes:
        raise PayloadTooLarge(
            f"the JSON document is {len(text)} bytes, above the limit of {max_bytes}; "
            "send large tensors with the binary tensor data extension"
        )
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request is not valid JSON: {exc}") from None


def load_request(header: bytes, max_bytes: int = DEFAULT_LIMITS.max_json_bytes) -> dict[str, Any]:
    request = load_json(header, max_bytes)
    if type(request) is not dict:
        raise BadRequest("request must be a JSON object")
    return request


def request_inputs(request: dict[str, Any]) -> list[Any]:
    inputs = request.get("inputs")
    if type(inputs) is not list or not inputs:
        raise BadRequest("'inputs' must be a non-empty list")
    return inputs


def binary_data_output(request: dict[str, Any]) -> bool:
    """The request-wide `parameters.binary_data_output` flag (every output binary unless one says not)."""
    params = request.get("parameters")
    if params is not None and type(params) is not dict:
        raise BadRequest("'parameters' must be an object")
    return params is not None and params.get("binary_data_output") is True


def request_id(request: dict[str, Any]) -> str | None:
    value = request.get("id")
    if value is not None and type(value) is not str:
        raise BadRequest("'id' must be a string")
    return value


# -- the inputs ----------------------------------------------------------------------------------


def decode_inputs(
    specs: Mapping[str, TensorSpec],
    inputs: list[Any],
    binary: memoryview | None,
    image_inputs: Mapping[str, ImageDecoder] = NO_IMAGES,
    allow_non_finite: bool = False,
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """Every input tensor as the model's array, and their total element count."""
    feeds: dict[str, npt.NDArray[Any]] = {}
    offset = count = 0
    for i, item in enumerate(inputs):
        name, spec = input_spec(i, item, specs, feeds)
        where = spec.where
        datatype, shape = tensor_header(item, where)
        raw, offset = tensor_payload(item, binary, offset, where)
        images = image_inputs.get(name) if datatype == "BYTES" else None
        if images is not None:
            arr = images(shape, item.get("data"), raw, where)
        else:
            arr = decode_tensor(spec, datatype, shape, item.get("data"), raw, where, not allow_non_finite)
        feeds[name] = arr
        count += arr.size
    check_complete(specs, feeds, binary, offset)
    return feeds, count


def input_spec(
    i: int, item: Any, specs: Mapping[str, TensorSpec], seen: Mapping[str, Any]
) -> tuple[str, TensorSpec]:
    """The name of `inputs[i]` and the model's spec for it: an object naming a model input, once."""
    if type(item) is not dict:
        raise BadRequest(f"inputs[{i}] must be an object")
    name = item.get("name")
    spec = specs.get(name) if type(name) is str else None
    if spec is None or type(name) is not str:
        raise BadRequest(f"inputs[{i}]: unknown input {brief(name)}; the model takes {list(specs)}")
    if name in seen:
        raise BadRequest(f"input {name!r} is given twice")
    return name, spec


def tensor_header(item: dict[str, Any], where: str) -> tuple[str, list[int]]:
    """The tensor's datatype (one the protocol knows) and shape (non-negative ints)."""
    datatype = item.get("datatype")
    # The type check first: a list or object is unhashable, and `in` a frozenset would raise (a 500).
    if type(datatype) is not str or datatype not in KNOWN_DATATYPES:
        raise BadRequest(f"{where}: unknown datatype {brief(datatype)}")
    return datatype, check_shape(item.get("shape"), where)


def tensor_payload(
    item: dict[str, Any], binary: memoryview | None, offset: int, where: str
) -> tuple[memoryview | None, int]:
    """The tensor's slice of the binary data (None for JSON `data`) and the offset after it."""
    params = item.get("parameters")
    if params is not None:
        if type(params) is not dict:
            raise BadRequest(f"{where}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if binary is None:
                raise BadRequest(f"{where}: binary_data_size without Inference-Header-Content-Length")
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise BadRequest(f"{where}: binary_data_size {brief(size)} exceeds the binary data")
            return binary[offset : offset + size], offset + size
    if "data" not in item:
        raise BadRequest(f"{where}: needs 'data' or parameters.binary_data_size")
    return None, offset


def decode_tensor(
    spec: TensorSpec,
    datatype: str,
    shape: list[int],
    data: Any,
    raw: memoryview | None,
    where: str,
    finite: bool = False,
) -> npt.NDArray[Any]:
    """A tensor the model takes as it is: its datatype and shape must match the model's; with
    `finite`, its float values must be finite."""
    check_tensor(spec, datatype, shape, where)
    if raw is not None:
        arr = decode_binary_tensor(datatype, shape, raw, where, finite)
    else:
        arr = decode_json_tensor(datatype, shape, data, where, finite)
    if datatype == "BYTES":
        arr = as_text(arr, where)
    return arr


def check_tensor(spec: TensorSpec, datatype: str, shape: list[int], where: str) -> None:
    if datatype != spec.datatype:
        raise BadRequest(f"{where}: datatype {datatype} does not match the model's {spec.datatype}")
    if not spec.accepts_shape(shape):
        raise BadRequest(f"{where}: shape {shape} does not match the model's {list(spec.shape)}")


def check_complete(
    specs: Mapping[str, TensorSpec],
    feeds: Mapping[str, Any],
    binary: memoryview | None,
    offset: int,
) -> None:
    """Every model input is given, and every byte of binary data belongs to one of them."""
    if len(feeds) != len(specs):
        missing = [n for n in specs if n not in feeds]
        raise BadRequest(f"missing inputs {missing}")
    if binary is not None and offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data are not claimed by any input")


def image_bytes(shape: list[int], data: Any, raw: memoryview | None, where: str) -> list[bytes]:
    """The encoded images of a BYTES input: binary elements, or base64 text in JSON."""
    if len(shape) != 1 and not (len(shape) == 2 and shape[1] == 1):
        raise BadRequest(f"{where}: images must be sent as a BYTES tensor of shape [N] or [N, 1]")
    if raw is not None:
        return list(decode_binary_tensor("BYTES", shape, raw, where).reshape(-1))
    texts = decode_json_tensor("BYTES", shape, data, where).reshape(-1)
    return [decode_base64(t, f"{where}[{i}]") for i, t in enumerate(texts)]


JSON_BLANKS = " \t\n\r"


def score_image_bytes(payload: str | list[Any], max_images: int, where: str = "input") -> list[bytes]:
    """The encoded images of a `/score` payload, in one of three forms.

    - one base64 string;
    - a list of base64 strings;
    - a string whose first character after JSON whitespace is `[`: a JSON list of base64 strings,
      the cat-species seed's form (`{"input": json.dumps([...])}`). Base64 never holds `[`, so
      no string is read both ways.

    Each string may be a `data:` URL or a Python bytes repr, `b'...'` or `b"..."` (the seed's
    clients send `str(base64.b64encode(png))`; the seed stripped `b'` and `'`). More than
    `max_images` are refused before any is decoded.
    """
    texts = [payload] if isinstance(payload, str) else payload
    if isinstance(payload, str) and payload.lstrip(JSON_BLANKS).startswith("["):
        texts = json_list(payload, where)
    if len(texts) > max_images:
        raise BadRequest(f"{where}: {len(texts)} images exceed the limit of {max_images} per request")
    out = []
    for i, text in enumerate(texts):
        if type(text) is not str:
            raise BadRequest(f"{where}[{i}]: must be a base64 string, not {brief(text)}")
        out.append(decode_base64(unwrap_bytes_repr(text), f"{where}[{i}]"))
    return out


def json_list(text: str, where: str) -> list[Any]:
    """A JSON list held in a string (no larger than the body it came in, so within its JSON budget)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"{where}: a string starting with '[' must be a JSON list of base64 images: {exc}"
        ) from None
    if type(value) is not list:  # cannot happen for text starting with '[', but say so rather than assume
        raise BadRequest(f"{where}: a string starting with '[' must be a JSON list of base64 images")
    return value


def unwrap_bytes_repr(text: str) -> str:
    """`b'...'` or `b"..."` (a Python bytes repr) -> the text inside; any other text as it is."""
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        return text[2:-1]
    return text


def as_text(arr: npt.NDArray[Any], where: str) -> npt.NDArray[Any]:
    """onnxruntime string tensors take `str`; binary BYTES arrive as `bytes`."""
    flat = arr.reshape(-1)
    for i, item in enumerate(flat):
        if isinstance(item, bytes):
            try:
                flat[i] = item.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"{where}: element {i} is not UTF-8 text") from None
    return arr


# -- the outputs ---------------------------------------------------------------------------------


def requested_outputs(model: OnnxModel, requested: Any, binary_all: bool) -> tuple[list[str], set[str]]:
    """The outputs to compute, in the order asked (all when none are), and which go back as binary."""
    if requested is None:
        names = model.output_names
        return names, set(names) if binary_all else set()
    if type(requested) is not list:
        raise BadRequest("'outputs' must be a list")
    names, binary = [], set()
    for i, out in enumerate(requested):
        name, as_binary = output_request(i, out, model, names, binary_all)
        if as_binary:
            binary.add(name)
        names.append(name)
    if not names:
        raise BadRequest("'outputs' must not be empty")
    return names, binary


def output_request(i: int, out: Any, model: OnnxModel, seen: list[str], binary_all: bool) -> tuple[str, bool]:
    """`outputs[i]`: a model output asked for once, and whether it goes back as binary."""
    if type(out) is not dict or type(out.get("name")) is not str:
        raise BadRequest(f"outputs[{i}] must be an object with a 'name'")
    name: str = out["name"]
    if name not in model.output_by_name:
        raise BadRequest(f"outputs[{i}]: unknown output {name!r}; the model has {model.output_names}")
    if name in seen:
        raise BadRequest(f"outputs[{i}]: output {name!r} requested twice")
    params = out.get("parameters")
    if params is not None and type(params) is not dict:
        raise BadRequest(f"outputs[{i}]: 'parameters' must be an object")
    flag = params.get("binary_data") if params else None
    return name, flag is True or (flag is None and binary_all)
