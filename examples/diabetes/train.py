"""Train a ridge regression on scikit-learn's diabetes data and write a ModelApp bundle.

    python examples/diabetes/train.py --out /tmp/diabetes

The bundle holds model.onnx, contract.json (five held-out rows with the trained model's predictions,
plus one malformed request that must get a 400) and modelapp.json with the r2 metric.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import SEED, TARGET_OPSET, created_time, fresh_dir, parse_args, write_json
from modelapp_bundle import write_manifest

NAME = "diabetes"
N_FEATURES = 10


def train(alpha: float) -> tuple[Ridge, np.ndarray[Any, Any], np.ndarray[Any, Any], dict[str, float]]:
    """The same model and split as MLOpsPython's diabetes example (Ridge, alpha 0.5 by default)."""
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=SEED)
    model = Ridge(alpha=alpha).fit(x_train, y_train)
    pred = model.predict(x_test)
    metrics = {"r2": float(r2_score(y_test, pred)), "mse": float(mean_squared_error(y_test, pred))}
    return model, x_test.astype(np.float32), y_test, metrics


def to_onnx(model: Ridge) -> bytes:
    onx = convert_sklearn(
        model,
        name=NAME,
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        target_opset=TARGET_OPSET,
    )
    return bytes(onx.SerializeToString())


def contract(model: Ridge, rows: np.ndarray[Any, Any]) -> dict[str, Any]:
    expected = model.predict(rows.astype(np.float64)).astype(np.float32).reshape(-1, 1)
    return {
        "schemaVersion": 1,
        "model": NAME,
        # Float32 inference vs the float64 training model: ~1e-5 relative error is expected.
        "tolerance": {"abs": 1e-3, "rel": 1e-4},
        "samples": [
            {
                "name": "held-out rows 0-4",
                "request": {
                    "id": "contract-diabetes-1",
                    "inputs": [
                        {
                            "name": "input",
                            "datatype": "FP32",
                            "shape": list(rows.shape),
                            "data": rows.tolist(),
                        }
                    ],
                },
                "expected": {
                    "outputs": [
                        {
                            "name": "variable",
                            "datatype": "FP32",
                            "shape": list(expected.shape),
                            "data": expected.reshape(-1).tolist(),
                        }
                    ]
                },
            },
            {
                "name": "wrong feature count is a 400",
                "request": {
                    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]
                },
                "expected": {"status": 400, "error_contains": "shape"},
            },
        ],
    }


def main() -> None:
    args = parse_args(NAME, alpha=0.5)
    out = fresh_dir(args.out)
    model, x_test, _, metrics = train(args.alpha)
    (out / "model.onnx").write_bytes(to_onnx(model))
    write_json(out / "contract.json", contract(model, x_test[:5]))
    manifest = write_manifest(
        out, NAME, args.version, metrics=metrics, contract="contract.json", created=created_time()
    )
    print(f"wrote {out} ({NAME} {args.version}, r2={metrics['r2']:.4f}, sha256={manifest.short_sha})")


if __name__ == "__main__":
    main()
