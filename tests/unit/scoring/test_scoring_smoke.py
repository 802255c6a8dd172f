"""`scoring-service smoke` and the contract comparison behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from modelapp_bundle import write_manifest
from scoring_service import cli
from scoring_service.contract import Sample, Tolerance, compare
from unit.scoring.scoring_models import LINEAR_B, LINEAR_W, linear_model, save

pytestmark = pytest.mark.unit

ROW = [1.0, 2.0, 3.0]
Y = float((LINEAR_W.reshape(-1) * ROW).sum() + LINEAR_B[0])  # 2.5


def contract(expected: float, **extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "tolerance": {"abs": 1e-4, "rel": 0},
        "samples": [
            {
                "name": "one row",
                "request": {
                    "id": "c1",
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": ROW}],
                },
                "expected": {
                    "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 1], "data": [expected]}]
                },
            },
            {
                "name": "bad shape",
                "request": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]},
                "expected": {"status": 400, "error_contains": "shape"},
            },
        ],
        **extra,
    }


def bundle_with_contract(tmp_path: Path, expected: float) -> Path:
    path = save(linear_model(), tmp_path / "linear")
    (path / "contract.json").write_bytes(orjson.dumps(contract(expected)))
    write_manifest(path, "linear", "3", contract="contract.json")
    return path


def test_smoke_passes_on_a_matching_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle_with_contract(tmp_path, Y)
    assert cli.main(["smoke", "--model-dir", str(path)]) == 0
    out = capsys.readouterr().out
    assert "PASS linear:3 one row" in out
    assert "OK: 3 passed, 0 failed" in out


def test_smoke_fails_readably_on_a_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle_with_contract(tmp_path, Y + 0.01)
    assert cli.main(["smoke", "--model-dir", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL linear:3 one row" in out
    assert "output 'y': 1 of 1 values outside tolerance" in out
    assert "expected 2.51" in out


def test_smoke_with_explicit_contract_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = save(linear_model(), tmp_path / "linear")
    other = tmp_path / "other.json"
    other.write_bytes(orjson.dumps(contract(Y)))
    assert cli.main(["smoke", "--model-dir", str(path), "--contract", str(other)]) == 0
    other.write_text('{"samples": []}')
    assert cli.main(["smoke", "--model-dir", str(path), "--contract", str(other)]) == 1
    assert "contract" in capsys.readouterr().out


def test_smoke_without_contract_sends_a_generated_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = save(linear_model(), tmp_path / "bare")
    assert cli.main(["smoke", "--model-dir", str(path)]) == 0
    assert "PASS bare:1 generated-request" in capsys.readouterr().out


def test_smoke_fails_when_the_model_does_not_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle_with_contract(tmp_path, Y)
    (path / "model.onnx").write_bytes(b"tampered")
    assert cli.main(["smoke", "--model-dir", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL server ready" in out
    assert "checksum mismatch for model.onnx" in out


def response(outputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return orjson.dumps({"model_name": "m", "outputs": outputs, **extra})


def sample(expected: dict[str, Any], request: dict[str, Any] | None = None) -> Sample:
    return Sample.model_validate({"name": "s", "request": request or {}, "expected": expected})


def test_compare_exact_for_ints_and_strings_tolerant_for_floats() -> None:
    got = response(
        [
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 2]},
            {"name": "p", "datatype": "FP32", "shape": [2], "data": [0.5, 0.25]},
            {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["cat"]},
        ]
    )
    tol = Tolerance(abs=0.01, rel=0)
    ok = sample({"outputs": [{"name": "label", "data": [1, 2]}, {"name": "p", "data": [0.505, 0.25]},
                             {"name": "s", "data": ["cat"]}]})  # fmt: skip
    assert compare(ok, tol, 200, got, None) == []
    bad = sample({"outputs": [{"name": "label", "data": [1, 3]}, {"name": "p", "data": [0.6, 0.25]},
                              {"name": "s", "data": ["dog"], "datatype": "FP32"}, {"name": "q", "data": []}]})  # fmt: skip
    problems = compare(bad, tol, 200, got, None)
    assert any("'label': 1 of 2 values differ" in p for p in problems)
    assert any("'p': 1 of 2 values outside tolerance" in p for p in problems)
    assert any("'s': datatype BYTES, expected FP32" in p for p in problems)
    assert any("'q' missing" in p for p in problems)


def test_compare_status_id_and_binary_responses() -> None:
    assert compare(sample({"status": 400}), Tolerance(), 200, response([]), None) != []
    assert compare(sample({}, {"id": "a"}), Tolerance(), 200, response([], id="b"), None) == [
        "id 'b' was not echoed as 'a'"
    ]
    header = response(
        [{"name": "y", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]
    )
    import numpy as np

    body = header + np.array([2.5], dtype=np.float32).tobytes()
    assert (
        compare(sample({"outputs": [{"name": "y", "data": [2.5]}]}), Tolerance(), 200, body, len(header))
        == []
    )
