"""JSON and binary tensor codecs: every datatype, and the inputs they must refuse."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scoring_service import codecs
from scoring_service.errors import BadRequest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("BOOL", [True, False], np.array([True, False])),
        ("UINT8", [0, 255], np.array([0, 255], dtype=np.uint8)),
        ("UINT16", [0, 65535], np.array([0, 65535], dtype=np.uint16)),
        ("UINT32", [0, 2**32 - 1], np.array([0, 2**32 - 1], dtype=np.uint32)),
        ("UINT64", [0, 2**64 - 1], np.array([0, 2**64 - 1], dtype=np.uint64)),
        ("INT8", [-128, 127], np.array([-128, 127], dtype=np.int8)),
        ("INT16", [-(2**15), 2**15 - 1], np.array([-(2**15), 2**15 - 1], dtype=np.int16)),
        ("INT32", [-(2**31), 2**31 - 1], np.array([-(2**31), 2**31 - 1], dtype=np.int32)),
        ("INT64", [-(2**63), 2**63 - 1], np.array([-(2**63), 2**63 - 1], dtype=np.int64)),
        ("FP16", [0.5, 1], np.array([0.5, 1], dtype=np.float16)),
        ("FP32", [0.25, 3], np.array([0.25, 3], dtype=np.float32)),
        ("FP64", [0.1, -2], np.array([0.1, -2], dtype=np.float64)),
    ],
)
def test_json_decodes_every_numeric_datatype(datatype: str, data: list[Any], expected: np.ndarray) -> None:
    arr = codecs.decode_json_tensor(datatype, [1, 2], data, "x")
    assert arr.dtype == expected.dtype
    assert arr.shape == (1, 2)
    np.testing.assert_array_equal(arr.reshape(-1), expected)


def test_json_accepts_nested_row_major_data() -> None:
    arr = codecs.decode_json_tensor("INT32", [2, 2], [[1, 2], [3, 4]], "x")
    np.testing.assert_array_equal(arr, [[1, 2], [3, 4]])


def test_json_bytes_are_strings() -> None:
    arr = codecs.decode_json_tensor("BYTES", [2], ["a", "é"], "x")
    assert arr.dtype == object
    assert arr.tolist() == ["a", "é"]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("INT32", [2], [1, 2.5], "must be integers"),
        ("INT32", [2], [True, False], "must be integers"),
        ("UINT8", [1], [256], "out of range"),
        ("UINT64", [1], [-1], "out of range"),
        ("INT64", [1], [2**64], "out of range"),
        ("UINT64", [2], [2**64 - 1, 0.5], "must be integers"),
        ("FP32", [2], [1.0, "a"], "must be numbers"),
        ("FP32", [1], [None], "must be numbers"),
        ("FP32", [2], [True, False], "must be numbers"),
        ("BOOL", [1], [1], "true/false"),
        ("FP32", [3], [1.0, 2.0], "needs 3 elements"),
        ("FP32", [2, 2], [[1.0, 2.0], [3.0]], "rectangular"),
        ("BYTES", [1], [1], "must be strings"),
        ("BYTES", [2], ["a"], "needs 2 elements"),
        ("BF16", [1], [1.0], "not supported"),
    ],
)
def test_json_rejects_data_that_does_not_fit(
    datatype: str, shape: list[int], data: Any, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        codecs.decode_json_tensor(datatype, shape, data, "x")


@pytest.mark.parametrize("shape", [[1, -1], [1.0], [True], "3", None, [[1]]])
def test_shape_must_be_non_negative_ints(shape: Any) -> None:
    with pytest.raises(BadRequest, match="shape"):
        codecs.check_shape(shape, "x")


@pytest.mark.parametrize("datatype", [dt for dt in codecs.DATATYPE_TO_NUMPY if dt not in ("BYTES", "BOOL")])
def test_binary_round_trip_every_fixed_size_datatype(datatype: str) -> None:
    dtype = codecs.DATATYPE_TO_NUMPY[datatype]
    arr = np.arange(6).astype(dtype).reshape(2, 3)
    raw = codecs.binary_data(arr)
    assert len(raw) == 6 * dtype.itemsize
    back = codecs.decode_binary_tensor(datatype, [2, 3], memoryview(raw), "x")
    np.testing.assert_array_equal(back, arr)
    assert codecs.datatype_of(back) == datatype


def test_binary_unaligned_buffer_is_copied_aligned() -> None:
    raw = b"\x00" + np.arange(4, dtype=np.float64).tobytes()
    arr = codecs.decode_binary_tensor("FP64", [4], memoryview(raw)[1:], "x")
    assert arr.ctypes.data % 8 == 0
    np.testing.assert_array_equal(arr, [0, 1, 2, 3])


def test_binary_size_must_match_shape() -> None:
    with pytest.raises(BadRequest, match="binary_data_size 8 does not match"):
        codecs.decode_binary_tensor("FP32", [3], memoryview(bytes(8)), "x")


def test_binary_bool_rejects_values_other_than_0_and_1() -> None:
    assert codecs.decode_binary_tensor("BOOL", [2], memoryview(b"\x01\x00"), "x").tolist() == [True, False]
    with pytest.raises(BadRequest, match="0 or 1"):
        codecs.decode_binary_tensor("BOOL", [2], memoryview(b"\x01\x02"), "x")


def test_binary_bytes_length_prefixed() -> None:
    raw = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    arr = codecs.decode_binary_tensor("BYTES", [2], memoryview(raw), "x")
    assert arr.tolist() == [b"abc", b""]
    assert codecs.serialize_bytes(arr) == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x03\x00", "truncated"),
        (struct.pack("<I", 10) + b"abc", "overruns"),
        (struct.pack("<I", 1) + b"a", "needs 2 elements"),
    ],
)
def test_binary_bytes_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        codecs.decode_binary_tensor("BYTES", [2], memoryview(raw), "x")


@given(st.lists(st.binary(max_size=20), min_size=1, max_size=8))
def test_bytes_serialisation_round_trips(items: list[bytes]) -> None:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    raw = codecs.serialize_bytes(arr)
    assert codecs.deserialize_bytes(memoryview(raw), [len(items)], "x").tolist() == items


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=16))
def test_fp32_json_and_binary_agree(values: list[float]) -> None:
    from_json = codecs.decode_json_tensor("FP32", [len(values)], values, "x")
    from_binary = codecs.decode_binary_tensor(
        "FP32", [len(values)], memoryview(codecs.binary_data(from_json)), "x"
    )
    np.testing.assert_array_equal(from_json, from_binary)


def test_json_data_of_outputs() -> None:
    assert codecs.json_data(np.array([[1.5, 2.0]], dtype=np.float32)).tolist() == [1.5, 2.0]
    assert codecs.json_data(np.array([b"x", "y"], dtype=object)) == ["x", "y"]


def test_base64_accepts_data_urls_and_rejects_garbage() -> None:
    assert codecs.decode_base64("aGk=", "x") == b"hi"
    assert codecs.decode_base64("data:image/png;base64,aGk=", "x") == b"hi"
    with pytest.raises(BadRequest, match="base64"):
        codecs.decode_base64("not base64!", "x")
