"""Train an 8x8 handwritten-digit classifier on scikit-learn's digits data and write a ModelApp bundle.

    python examples/digits/train.py --out /tmp/digits

The manifest's `preprocess` block lets clients send PNG/JPEG: images are converted to grayscale,
resized to 8x8 and scaled by 16/255 (the dataset's 0..16 intensity range). The contract sends
held-out digits as base64 PNGs and expects the label and the class probabilities.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import SEED, TARGET_OPSET, created_time, fresh_dir, parse_args, write_json
from modelapp_bundle import write_manifest

NAME = "digits"
SIDE = 8
MAX_INTENSITY = 16.0
LABELS = [str(d) for d in range(10)]
PREPROCESS = {
    "size": [SIDE, SIDE],
    "color": "grayscale",
    "scale": MAX_INTENSITY / 255.0,
    "mean": [0.0],
    "std": [1.0],
    "layout": "NCHW",
    "input": "input",
}


def train() -> tuple[LogisticRegression, np.ndarray[Any, Any], np.ndarray[Any, Any], dict[str, float]]:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    model = LogisticRegression(max_iter=2000, random_state=SEED).fit(x_train, y_train)
    pred = model.predict(x_test)
    metrics = {
        "accuracy": float(accuracy_score(y_test, pred)),
        "f1_macro": float(f1_score(y_test, pred, average="macro")),
    }
    return model, x_test, y_test, metrics


def to_onnx(model: LogisticRegression) -> bytes:
    onx = convert_sklearn(
        model,
        name=NAME,
        initial_types=[("input", FloatTensorType([None, SIDE * SIDE]))],
        # zipmap off: probabilities as a plain [N, 10] tensor instead of a list of maps.
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return bytes(onx.SerializeToString())


def to_png(row: np.ndarray[Any, Any]) -> bytes:
    pixels = np.rint(row.reshape(SIDE, SIDE) * (255.0 / MAX_INTENSITY)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def contract(model: LogisticRegression, rows: np.ndarray[Any, Any]) -> dict[str, Any]:
    pngs = [to_png(r) for r in rows]
    # Expected values come from what the scorer will actually see: the PNG's 8-bit pixels rescaled.
    seen = np.stack(
        [np.asarray(Image.open(io.BytesIO(p)), dtype=np.float32).reshape(-1) for p in pngs]
    ) * np.float32(MAX_INTENSITY / 255.0)
    proba = model.predict_proba(seen.astype(np.float64))
    labels = model.classes_[proba.argmax(axis=1)].astype(np.int64)
    return {
        "schemaVersion": 1,
        "model": NAME,
        "tolerance": {"abs": 1e-4, "rel": 1e-3},
        "samples": [
            {
                "name": f"png digits {', '.join(map(str, labels.tolist()))}",
                "request": {
                    "id": "contract-digits-1",
                    "inputs": [
                        {
                            "name": "input",
                            "datatype": "BYTES",
                            "shape": [len(pngs)],
                            "data": [base64.b64encode(p).decode("ascii") for p in pngs],
                        }
                    ],
                },
                "expected": {
                    "outputs": [
                        {"name": "label", "datatype": "INT64", "shape": [len(pngs)], "data": labels.tolist()},
                        {
                            "name": "probabilities",
                            "datatype": "FP32",
                            "shape": list(proba.shape),
                            "data": proba.astype(np.float32).reshape(-1).tolist(),
                        },
                    ]
                },
            },
            {
                "name": "raw 64-feature tensor",
                "request": {
                    "inputs": [
                        {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": seen[0].tolist()}
                    ],
                    "outputs": [{"name": "label"}],
                },
                "expected": {"outputs": [{"name": "label", "shape": [1], "data": [int(labels[0])]}]},
            },
            {
                "name": "bytes that are not an image are a 400",
                "request": {
                    "inputs": [
                        {"name": "input", "datatype": "BYTES", "shape": [1], "data": ["bm90IGFuIGltYWdl"]}
                    ]
                },
                "expected": {"status": 400, "error_contains": "image"},
            },
        ],
    }


def main() -> None:
    args = parse_args(NAME)
    out = fresh_dir(args.out)
    model, x_test, _, metrics = train()
    (out / "model.onnx").write_bytes(to_onnx(model))
    write_json(out / "contract.json", contract(model, x_test[:6]))
    manifest = write_manifest(
        out,
        NAME,
        args.version,
        metrics=metrics,
        labels=LABELS,
        preprocess=PREPROCESS,
        contract="contract.json",
        created=created_time(),
    )
    print(
        f"wrote {out} ({NAME} {args.version}, accuracy={metrics['accuracy']:.4f}, sha256={manifest.short_sha})"
    )


if __name__ == "__main__":
    main()
