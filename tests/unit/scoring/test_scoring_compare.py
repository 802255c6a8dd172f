"""Comparing the serving model's answer with a candidate's (shadow mirroring)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from scoring_service.codecs import binary_data
from scoring_service.compare import Comparison, Mismatch, compare, read_outputs


def response(*outputs: tuple[str, str, list[int], list[Any]]) -> bytes:
    """An OIP response with JSON outputs (name, datatype, shape, data)."""
    return orjson.dumps(
        {
            "model_name": "m",
            "model_version": "1",
            "outputs": [{"name": n, "datatype": dt, "shape": s, "data": d} for n, dt, s, d in outputs],
        }
    )


def compared(serving: bytes, candidate: bytes) -> Comparison:
    return compare(read_outputs(serving), read_outputs(candidate))


def test_a_regressor_sums_absolute_differences_and_has_no_agreement_rows() -> None:
    result = compared(
        response(("y", "FP32", [3, 1], [1.0, 2.0, 3.0])), response(("y", "FP64", [3, 1], [1.5, 2.0, 1.0]))
    )
    assert result == Comparison(abs_diff_sum=2.5, values=3, rows=0, agreed_rows=0)


def test_a_classifier_agrees_on_its_label_output_per_row() -> None:
    serving = response(
        ("label", "INT64", [3], [0, 1, 2]),
        ("probabilities", "FP32", [3, 2], [0.9, 0.1, 0.2, 0.8, 0.5, 0.5]),
    )
    candidate = response(
        ("label", "INT64", [3], [0, 1, 0]),
        ("probabilities", "FP32", [3, 2], [0.8, 0.2, 0.2, 0.8, 0.5, 0.5]),
    )
    result = compared(serving, candidate)
    assert (result.rows, result.agreed_rows, result.values) == (3, 2, 9)
    assert result.abs_diff_sum == pytest.approx(2 + 0.1 + 0.1)  # the label's 2 - 0, then the scores


def test_text_labels_agree_by_equality() -> None:
    result = compared(
        response(("label", "BYTES", [2], ["cat", "dog"])), response(("label", "BYTES", [2], ["cat", "cow"]))
    )
    assert result == Comparison(abs_diff_sum=0.0, values=0, rows=2, agreed_rows=1)


def test_without_a_label_output_the_scores_argmax_decides_agreement() -> None:
    serving = response(("scores", "FP32", [2, 3], [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]]))
    candidate = response(("scores", "FP32", [2, 3], [[0.1, 0.6, 0.3], [0.2, 0.3, 0.5]]))
    result = compared(serving, candidate)
    assert (result.rows, result.agreed_rows, result.values) == (2, 1, 6)
    assert result.abs_diff_sum == pytest.approx(0.1 + 0.1 + 0.3 + 0.3)


def test_identical_answers_differ_by_nothing_and_agree_fully() -> None:
    body = response(("label", "INT64", [2], [1, 0]), ("p", "FP32", [2, 2], [0.1, 0.9, 0.7, float("nan")]))
    assert compared(body, body) == Comparison(0.0, 6, 2, 2)


def test_binary_outputs_compare_with_json_ones() -> None:
    values = np.array([[1.0], [2.0]], dtype=np.float32)
    chunk = binary_data(values)
    header = orjson.dumps(
        {
            "outputs": [
                {
                    "name": "y",
                    "datatype": "FP32",
                    "shape": [2, 1],
                    "parameters": {"binary_data_size": len(chunk)},
                }
            ]
        }
    )
    serving = read_outputs(header + chunk, len(header))
    candidate = read_outputs(response(("y", "FP32", [2, 1], [1.0, 2.5])))
    assert compare(serving, candidate) == Comparison(0.5, 2, 0, 0)


@pytest.mark.parametrize(
    ("candidate", "says"),
    [
        (response(("z", "FP32", [1, 1], [1.0])), "outputs"),
        (response(("y", "FP32", [1, 1], [1.0]), ("z", "FP32", [1, 1], [1.0])), "outputs"),
        (response(("y", "FP32", [2, 1], [1.0, 2.0])), "shape"),  # another row count
        (response(("y", "FP32", [1], [1.0])), "shape"),
        (response(("y", "BYTES", [1, 1], ["a"])), "datatype"),
        (response(("y", "FP32", [1, 1], [1.0, 2.0])), "values"),
        (response(("y", "FP32", [1, 1], [float("inf")])), "infinite"),
        (b'{"outputs": 3}', "list"),
        (b'{"error": "boom"}', "unreadable"),
        (b"not json", "unreadable"),
    ],
)
def test_answers_that_cannot_be_compared_are_a_mismatch(candidate: bytes, says: str) -> None:
    with pytest.raises(Mismatch, match=says):
        compared(response(("y", "FP32", [1, 1], [1.0])), candidate)
