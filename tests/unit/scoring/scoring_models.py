"""Tiny real ONNX models built with onnx.helper (no training), shared by the scorer's tests."""

from __future__ import annotations

import base64
import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

OPSET = [helper.make_opsetid("", 17)]

# Every OIP datatype onnxruntime's Identity accepts, with the ONNX element type behind it.
DATATYPES: dict[str, int] = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}

LINEAR_W = np.array([[1.0], [2.0], [-1.0]], dtype=np.float32)
LINEAR_B = np.array([0.5], dtype=np.float32)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path / "model.onnx")
    return path


def linear_model(bias: float = float(LINEAR_B[0])) -> onnx.ModelProto:
    """y = x @ W + b, x: FP32 [N, 3] -> y: FP32 [N, 1] (a stand-in for a regressor)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, [3, 1], LINEAR_W.reshape(-1).tolist()),
            helper.make_tensor("B", TensorProto.FLOAT, [1], [bias]),
        ],
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)


def identity_model() -> onnx.ModelProto:
    """One Identity per datatype: input `in_<DT>` [-1, 2] -> output `out_<DT>`."""
    nodes, inputs, outputs = [], [], []
    for dt, elem in DATATYPES.items():
        nodes.append(helper.make_node("Identity", [f"in_{dt}"], [f"out_{dt}"]))
        inputs.append(helper.make_tensor_value_info(f"in_{dt}", elem, ["N", 2]))
        outputs.append(helper.make_tensor_value_info(f"out_{dt}", elem, ["N", 2]))
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)


CLASSIFIER_W = np.array(
    [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [1.0, 1.0, 1.0]], dtype=np.float32
)


def classifier_model() -> onnx.ModelProto:
    """A 2x2 grayscale "image" classifier: x FP32 [N, 4] -> label INT64 [N], probabilities FP32 [N, 3]."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
        ],
        [helper.make_tensor("W", TensorProto.FLOAT, [4, 3], CLASSIFIER_W.reshape(-1).tolist())],
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)


CLASSIFIER_PREPROCESS: dict[str, Any] = {
    "size": [2, 2],
    "color": "grayscale",
    "scale": 1 / 255,
    "layout": "NCHW",
}
CLASSIFIER_LABELS = ["top-left", "top-right", "bottom-left"]


def png(pixels: list[list[int]], mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- models for adaptive batching ------------------------------------------------------------------

GATHER_TABLE = np.arange(12, dtype=np.float32).reshape(4, 3)


def gather_model() -> onnx.ModelProto:
    """idx INT64 [N] -> rows of a 4x3 table, FP32 [N, 3]; an index outside 0..3 makes onnxruntime fail."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["rows"], axis=0)],
        "gather",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("table", TensorProto.FLOAT, [4, 3], GATHER_TABLE.reshape(-1).tolist())],
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)


def relu_model() -> onnx.ModelProto:
    """x FP32 [N, D] -> relu FP32 [N, D] and neg FP32 [N, D]: any width, two outputs."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["relu"]), helper.make_node("Neg", ["x"], ["neg"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "D"])],
        [
            helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["N", "D"]),
            helper.make_tensor_value_info("neg", TensorProto.FLOAT, ["N", "D"]),
        ],
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)


def column_sum_model() -> onnx.ModelProto:
    """x FP32 [N, 3] -> the sum over rows, declared [M, 3]: a dynamic first dimension without batch semantics."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1)],
        "column_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["M", 3])],
        [axes],
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)


def fixed_batch_model() -> onnx.ModelProto:
    """x FP32 [1, 3] -> y FP32 [1, 3]: a batch dimension fixed at 1, which cannot be batched."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)


def mlp_model(dims: tuple[int, ...] = (16, 32, 4), seed: int = 0) -> onnx.ModelProto:
    """x FP32 [N, dims[0]] -> y FP32 [N, dims[-1]]: MatMul+Add layers with Relu between, random weights."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = (rng.standard_normal(b) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(bias, f"B{i}")]
        out = "y" if i == len(dims) - 2 else f"h{i}"
        nodes += [
            helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"B{i}"], [out]),
        ]
        if out != "y":
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            prev = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dims[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dims[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)
