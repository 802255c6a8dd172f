"""Pure JSON/binary <-> numpy codecs for Open Inference Protocol (KServe V2) tensors."""

from __future__ import annotations

import base64
import binascii
import math
import struct
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from scoring_service.errors import BadRequest, brief

# Casting a client's 1e39 to FP32, or squaring values in `check_finite`, overflows by design here:
# the result is checked, so numpy's RuntimeWarning would only print the client's data to stderr.
warnings.filterwarnings("ignore", category=RuntimeWarning, module=__name__)

# OIP datatype -> numpy dtype. BF16 and the FP8 types have no numpy dtype: the runtime
# reports them in metadata but refuses to decode them (a 400, not a crash).
DATATYPE_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

NUMPY_TO_DATATYPE: dict[np.dtype[Any], str] = {
    dt: name for name, dt in DATATYPE_TO_NUMPY.items() if name != "BYTES"
}

# onnxruntime's type strings -> OIP datatypes. Types the protocol cannot carry are absent.
ONNX_TO_DATATYPE: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
    "tensor(bfloat16)": "BF16",
}

KNOWN_DATATYPES = frozenset(DATATYPE_TO_NUMPY) | {"BF16"}

_INT_KINDS = "iu"
_NUMERIC_KINDS = "iuf"


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def check_shape(value: Any, where: str) -> list[int]:
    """Validate a client-sent shape: a list of non-negative ints (bools are not ints here)."""
    if not isinstance(value, list):
        raise BadRequest(f"{where}: 'shape' must be a list of non-negative integers")
    for dim in value:
        if type(dim) is not int or dim < 0:
            raise BadRequest(f"{where}: 'shape' must be a list of non-negative integers, got {brief(value)}")
    return value


def decode_json_tensor(
    datatype: str, shape: list[int], data: Any, where: str, finite: bool = False
) -> npt.NDArray[Any]:
    """Turn the JSON `data` of an OIP tensor into an array of `shape` and `datatype`.

    `data` may be flat or nested row-major, as the protocol allows. Values are checked, not
    coerced: 1.5 is not an INT32, true is not an FP32, 300 is not a UINT8. With `finite`, float
    values must be finite (`check_finite`, on the array before its reshape: flat data is checked as is).
    """
    if datatype == "BYTES":
        return _decode_json_bytes(shape, data, where)
    arr = coerce_array(datatype, data if isinstance(data, list) else [data], where)
    if arr.size != math.prod(shape):
        raise BadRequest(f"{where}: shape {shape} needs {element_count(shape)} elements, data has {arr.size}")
    if finite and arr.dtype.kind == "f":
        check_finite(arr, where)
    return arr.reshape(shape)


def coerce_array(datatype: str, data: Any, where: str) -> npt.NDArray[Any]:
    """Nested JSON numbers -> an array of `datatype`, keeping the nesting as the shape."""
    target = DATATYPE_TO_NUMPY.get(datatype)
    if target is None or datatype == "BYTES":
        raise BadRequest(f"{where}: datatype {datatype} is not supported in JSON")
    try:
        arr = np.asarray(data)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(f"{where}: data is not a rectangular array of numbers ({exc})") from None
    kind = arr.dtype.kind
    if arr.size == 0:
        return arr.astype(target)
    if target.kind == "b":
        if kind != "b":
            raise BadRequest(f"{where}: BOOL data must be true/false")
    elif target.kind in _INT_KINDS:
        if kind in "fO":
            # numpy turns ints that straddle int64 and uint64 ([0, 2**64 - 1]) into float64 or object;
            # look at the JSON values themselves to tell those from real floats.
            return _exact_ints(data, arr.ndim, target, datatype, where)
        if kind not in _INT_KINDS:
            raise BadRequest(f"{where}: {datatype} data must be integers")
        info = np.iinfo(target)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise BadRequest(f"{where}: {datatype} data out of range [{info.min}, {info.max}]")
    elif kind not in _NUMERIC_KINDS:
        # Object arrays come from ints beyond 64 bits or from nulls; 'U' from strings mixed in.
        raise BadRequest(f"{where}: {datatype} data must be numbers")
    return arr.astype(target, copy=False)


def _exact_ints(data: Any, ndim: int, target: np.dtype[Any], datatype: str, where: str) -> npt.NDArray[Any]:
    flat = flatten(data, max(ndim, 1), where)
    if not all(type(v) is int for v in flat):
        raise BadRequest(f"{where}: {datatype} data must be integers")
    info = np.iinfo(target)
    if min(flat) < info.min or max(flat) > info.max:
        raise BadRequest(f"{where}: {datatype} data out of range [{info.min}, {info.max}]")
    try:
        return np.array(data, dtype=target)
    except ValueError as exc:
        raise BadRequest(f"{where}: data is not a rectangular array of numbers ({exc})") from None


def _decode_json_bytes(shape: list[int], data: Any, where: str) -> npt.NDArray[Any]:
    flat = flatten(data, max(len(shape), 1), where)
    for item in flat:
        if not isinstance(item, str):
            raise BadRequest(f"{where}: BYTES data must be strings")
    if len(flat) != element_count(shape):
        raise BadRequest(
            f"{where}: shape {shape} needs {element_count(shape)} elements, data has {len(flat)}"
        )
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr.reshape(shape)


def flatten(data: Any, max_depth: int, where: str) -> list[Any]:
    """The leaves of nested lists in row-major order; nesting deeper than `max_depth` lists is a 400.

    A loop, not recursion: a client must not choose how deep our stack goes (1000 levels was a 500).
    """
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) >= max_depth:
                    raise BadRequest(f"{where}: data is nested deeper than its {max_depth} dimension(s)")
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def check_finite(arr: npt.NDArray[Any], where: str) -> None:
    """Refuse NaN and ±infinity in a float tensor (unless the settings allow them).

    They reach a model silently: JSON 1e39 becomes inf as FP32, 70000 as FP16, and binary data can
    carry any bit pattern. A dot product is finite exactly when every element is, unless the squares
    overflow; only then is each element looked at. It costs a third of `np.isfinite(arr).all()`
    (~0.5 us on the hot path) and allocates nothing. A flat array is read as it is (a reshape costs
    as much as the dot product): the decoders check before they give the array its shape.
    """
    flat = arr if arr.ndim == 1 else arr.reshape(-1)
    if math.isfinite(flat.dot(flat)) or np.isfinite(flat).all():
        return
    raise BadRequest(f"{where}: values must be finite numbers (no NaN or infinity)")


def decode_binary_tensor(
    datatype: str, shape: list[int], raw: memoryview, where: str, finite: bool = False
) -> npt.NDArray[Any]:
    """Decode one tensor of the binary tensor data extension (little-endian, row-major); with `finite`,
    float values must be finite (see `decode_json_tensor`)."""
    count = element_count(shape)
    if datatype == "BYTES":
        return deserialize_bytes(raw, shape, where)
    target = DATATYPE_TO_NUMPY.get(datatype)
    if target is None:
        raise BadRequest(f"{where}: datatype {datatype} is not supported")
    if len(raw) != count * target.itemsize:
        raise BadRequest(
            f"{where}: binary_data_size {len(raw)} does not match shape {shape} of {datatype} "
            f"({count * target.itemsize} bytes)"
        )
    if target.kind == "b":
        as_u8 = np.frombuffer(raw, dtype=np.uint8)
        if count and int(as_u8.max()) > 1:
            raise BadRequest(f"{where}: BOOL bytes must be 0 or 1")
        return as_u8.astype(np.bool_).reshape(shape)
    arr = np.frombuffer(raw, dtype=target)
    if count and arr.ctypes.data % target.itemsize:
        # The JSON header has arbitrary length, so tensors often start unaligned; copy once
        # rather than hand onnxruntime a misaligned buffer.
        arr = arr.copy()
    if finite and target.kind == "f":
        check_finite(arr, where)
    return arr.reshape(shape)


def deserialize_bytes(raw: memoryview, shape: list[int], where: str) -> npt.NDArray[Any]:
    """BYTES elements are each a 4-byte little-endian length followed by that many bytes."""
    items: list[bytes] = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise BadRequest(f"{where}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > end:
            raise BadRequest(f"{where}: BYTES element overruns binary_data_size")
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    if len(items) != element_count(shape):
        raise BadRequest(
            f"{where}: shape {shape} needs {element_count(shape)} elements, data has {len(items)}"
        )
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def serialize_bytes(arr: npt.NDArray[Any]) -> bytes:
    parts: list[bytes] = []
    for item in arr.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def datatype_of(arr: npt.NDArray[Any]) -> str:
    if arr.dtype.kind in "OSU":
        return "BYTES"
    dt = NUMPY_TO_DATATYPE.get(arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype)
    if dt is None:
        raise ValueError(f"no OIP datatype for numpy dtype {arr.dtype}")
    return dt


def json_data(arr: npt.NDArray[Any]) -> Any:
    """The `data` of a JSON output: a flat array orjson serialises natively (OPT_SERIALIZE_NUMPY)."""
    if arr.dtype.kind in "OSU":
        return [
            item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
            for item in arr.reshape(-1)
        ]
    return arr.ravel()  # a view of a C-contiguous array (onnxruntime's outputs are), else a contiguous copy


def binary_data(arr: npt.NDArray[Any]) -> bytes:
    if arr.dtype.kind in "OSU":
        return serialize_bytes(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr).tobytes()


def decode_base64(value: str, where: str) -> bytes:
    """Decode base64 text, accepting a `data:...;base64,` URL prefix."""
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}: not valid base64") from None
