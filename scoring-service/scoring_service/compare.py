"""Pure comparison of two OIP inference responses (the serving model's and a candidate's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from scoring_service.codecs import DATATYPE_TO_NUMPY, decode_binary_tensor, flatten
from scoring_service.errors import ScoringError

LABEL_DATATYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BYTES"}
)
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})


class Mismatch(ValueError):
    """The two responses cannot be compared: other outputs, shapes or row counts, or unreadable."""


@dataclass(frozen=True, slots=True)
class Output:
    """One output tensor of a response: numeric data as float64, BYTES as objects."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Comparison:
    abs_diff_sum: float
    """Sum over every element of every numeric output of |serving - candidate|."""
    values: int
    """Elements that went into `abs_diff_sum`."""
    rows: int
    """Rows compared for top-1 agreement (0 for regressors)."""
    agreed_rows: int


def read_outputs(body: bytes, header_length: int | None = None) -> list[Output]:
    """The outputs of an OIP response, JSON or with binary tensor data after a JSON header."""
    header = body if header_length is None else body[:header_length]
    raw = memoryview(body)[len(header) :]
    try:
        document = orjson.loads(header)
        tensors = document["outputs"]
        if not isinstance(tensors, list):
            raise Mismatch("'outputs' is not a list")
        outputs = []
        for tensor in tensors:
            output, used = _read_output(tensor, raw)
            raw = raw[used:]
            outputs.append(output)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ScoringError) as exc:
        if isinstance(exc, Mismatch):
            raise
        raise Mismatch(f"unreadable response: {exc!r}"[:200]) from None
    return outputs


def _read_output(tensor: dict[str, Any], raw: memoryview) -> tuple[Output, int]:
    """One output and how many bytes of the binary data it took."""
    name, datatype, shape = str(tensor["name"]), str(tensor["datatype"]), [int(d) for d in tensor["shape"]]
    if datatype not in DATATYPE_TO_NUMPY:
        raise Mismatch(f"output {name!r}: datatype {datatype} cannot be compared")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    kind = object if datatype == "BYTES" else np.float64  # JSON null (NaN) becomes NaN here
    if size is not None:
        used = int(size)
        values = np.asarray(decode_binary_tensor(datatype, shape, raw[:used], name), dtype=kind).reshape(-1)
    else:
        used = 0
        values = np.asarray(flatten(tensor["data"], len(shape) or 1, name), dtype=kind)
    if values.size != int(np.prod(shape)):
        raise Mismatch(f"output {name!r}: shape {shape} but {values.size} values")
    return Output(name, datatype, tuple(shape), values), used


def compare(serving: list[Output], candidate: list[Output]) -> Comparison:
    """Absolute differences of the numeric outputs and top-1 agreement per row; `Mismatch` if the
    outputs differ in names, shapes or kind."""
    theirs = {o.name: o for o in candidate}
    if sorted(theirs) != sorted(o.name for o in serving) or len(theirs) != len(candidate):
        raise Mismatch(f"outputs {[o.name for o in serving]} vs {[o.name for o in candidate]}")
    diff_sum, values = 0.0, 0
    for ours in serving:
        other = theirs[ours.name]
        if ours.shape != other.shape:
            raise Mismatch(f"output {ours.name!r}: shape {list(ours.shape)} vs {list(other.shape)}")
        if (ours.datatype == "BYTES") != (other.datatype == "BYTES"):
            raise Mismatch(f"output {ours.name!r}: datatype {ours.datatype} vs {other.datatype}")
        if ours.datatype != "BYTES":
            diff_sum += _abs_diff_sum(ours.name, ours.values, other.values)
            values += ours.values.size
    rows, agreed = _agreement(serving, theirs)
    return Comparison(diff_sum, values, rows, agreed)


def _abs_diff_sum(name: str, ours: npt.NDArray[np.float64], theirs: npt.NDArray[np.float64]) -> float:
    diff = np.abs(ours - theirs)
    diff[np.isnan(ours) & np.isnan(theirs)] = 0.0  # both NaN: the same answer
    if not np.isfinite(diff).all():
        raise Mismatch(f"output {name!r}: a value is NaN or infinite on one side only")
    return float(diff.sum())


def _agreement(serving: list[Output], theirs: dict[str, Output]) -> tuple[int, int]:
    """(rows, rows whose top-1 answer is the same) from the label output, else the scores' argmax."""
    label = next((o for o in serving if o.datatype in LABEL_DATATYPES and o.shape), None)
    if label is not None:
        rows = label.shape[0]
        if rows == 0:
            return 0, 0
        ours, other = label.values.reshape(rows, -1), theirs[label.name].values.reshape(rows, -1)
        return rows, int((ours == other).all(axis=1).sum())
    scores = next(
        (o for o in serving if o.datatype in FLOAT_DATATYPES and len(o.shape) == 2 and o.shape[1] > 1), None
    )
    if scores is None:
        return 0, 0  # a regressor: no classes to agree on
    rows = scores.shape[0]
    ours, other = scores.values.reshape(scores.shape), theirs[scores.name].values.reshape(scores.shape)
    return rows, int((ours.argmax(axis=1) == other.argmax(axis=1)).sum())
