"""`contract.json`: OIP requests with expected outputs; pure parsing and comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scoring_service.codecs import DATATYPE_TO_NUMPY, decode_binary_tensor


class Tolerance(BaseModel):
    """A float output matches when |actual - expected| <= abs + rel * |expected| (numpy.isclose)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    abs: float = Field(default=1e-6, ge=0)
    rel: float = Field(default=1e-5, ge=0)


class ExpectedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    datatype: str | None = None
    shape: list[int] | None = None
    data: list[Any]
    tolerance: Tolerance | None = None


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = 200
    outputs: list[ExpectedOutput] = Field(default_factory=list)
    error_contains: str | None = None


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    request: dict[str, Any]
    expected: Expected


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(default=1, alias="schemaVersion")
    model: str | None = None
    """Model the samples target; needed only when the model directory holds several."""
    tolerance: Tolerance = Tolerance()
    samples: list[Sample] = Field(min_length=1)


class ContractError(Exception):
    pass


def load_contract(path: Path) -> Contract:
    try:
        return Contract.model_validate(orjson.loads(path.read_bytes()))
    except OSError as exc:
        raise ContractError(f"cannot read contract {path}: {exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"contract {path} is not valid JSON: {exc}") from None
    except ValidationError as exc:
        raise ContractError(f"contract {path} is invalid: {exc}") from None


def decode_response(
    body: bytes, header_length: int | None
) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
    """An OIP response (JSON, or JSON header + binary tensors) -> (json, {output: array})."""
    header = body if header_length is None else body[:header_length]
    doc = orjson.loads(header)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    offset = header_length or 0
    for out in doc.get("outputs", []):
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = memoryview(body)[offset : offset + size]
            offset += size
            arrays[out["name"]] = decode_binary_tensor(out["datatype"], out["shape"], raw, out["name"])
        else:
            dtype = DATATYPE_TO_NUMPY.get(out["datatype"], np.dtype(object))
            arrays[out["name"]] = np.asarray(out["data"], dtype=dtype).reshape(out["shape"])
    return doc, arrays


def compare(
    sample: Sample, default: Tolerance, status: int, body: bytes, header_length: int | None
) -> list[str]:
    """Mismatches between a response and a sample's expectations, as readable lines (empty = pass)."""
    expected = sample.expected
    problems: list[str] = []
    if status != expected.status:
        return [f"HTTP {status}, expected {expected.status}: {body[:300].decode('utf-8', 'replace')}"]
    if status != 200:
        if expected.error_contains and expected.error_contains not in body.decode("utf-8", "replace"):
            problems.append(f"error body {body[:300]!r} lacks {expected.error_contains!r}")
        return problems
    try:
        doc, actual = decode_response(body, header_length)
    except (ValueError, KeyError, TypeError) as exc:
        return [f"malformed response: {exc}"]
    request_id = sample.request.get("id")
    if request_id is not None and doc.get("id") != request_id:
        problems.append(f"id {doc.get('id')!r} was not echoed as {request_id!r}")
    types = {o["name"]: o.get("datatype") for o in doc.get("outputs", [])}
    for want in expected.outputs:
        got = actual.get(want.name)
        if got is None:
            problems.append(f"output {want.name!r} missing (got {sorted(actual)})")
            continue
        if want.datatype is not None and types.get(want.name) != want.datatype:
            problems.append(
                f"output {want.name!r}: datatype {types.get(want.name)}, expected {want.datatype}"
            )
        if want.shape is not None and list(got.shape) != want.shape:
            problems.append(f"output {want.name!r}: shape {list(got.shape)}, expected {want.shape}")
        problems.extend(_compare_values(want, got, want.tolerance or default))
    return problems


def _compare_values(want: ExpectedOutput, got: np.ndarray[Any, Any], tol: Tolerance) -> list[str]:
    flat_got = got.reshape(-1)
    flat_want = np.asarray(want.data, dtype=object).reshape(-1)
    if flat_got.size != flat_want.size:
        return [f"output {want.name!r}: {flat_got.size} values, expected {flat_want.size}"]
    if got.dtype.kind == "f":
        try:
            expect = flat_want.astype(np.float64)
        except (TypeError, ValueError):
            return [f"output {want.name!r}: expected data is not numeric"]
        actual = flat_got.astype(np.float64)
        close = np.isclose(actual, expect, atol=tol.abs, rtol=tol.rel, equal_nan=True)
        if close.all():
            return []
        bad = np.flatnonzero(~close)
        i = int(bad[0])
        worst = float(np.max(np.abs(actual[bad] - expect[bad])))
        return [
            f"output {want.name!r}: {bad.size} of {actual.size} values outside tolerance (abs {tol.abs}, "
            f"rel {tol.rel}); first at [{i}]: got {float(actual[i])!r}, expected {float(expect[i])!r}; max diff {worst:.3g}"
        ]
    mismatched = [
        i
        for i, (a, e) in enumerate(zip(flat_got.tolist(), flat_want.tolist(), strict=True))
        if _norm(a) != _norm(e)
    ]
    if not mismatched:
        return []
    i = mismatched[0]
    return [
        f"output {want.name!r}: {len(mismatched)} of {flat_got.size} values differ; "
        f"first at [{i}]: got {_norm(flat_got[i].item() if hasattr(flat_got[i], 'item') else flat_got[i])!r}, expected {flat_want[i]!r}"
    ]


def _norm(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
