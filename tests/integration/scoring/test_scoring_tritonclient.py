"""Conformance with tritonclient[http], a real Open Inference Protocol client we did not write."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from integration.scoring.conftest import Server
from PIL import Image
from tritonclient.utils import InferenceServerException
from unit.scoring.scoring_models import DATATYPES

pytestmark = pytest.mark.integration

DIABETES_ROWS = np.array(
    [[0.038, 0.050, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017],
     [-0.001, -0.044, -0.051, -0.026, -0.008, -0.019, 0.074, -0.039, -0.068, -0.092]],
    dtype=np.float32,
)  # fmt: skip


@pytest.fixture(scope="module")
def client(server: Server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(
        url=f"127.0.0.1:{server.port}", connection_timeout=10, network_timeout=30
    )


def contract_expectation(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    """The example's own contract: inputs and the outputs the trained model produced."""
    contract = orjson.loads((bundle / "contract.json").read_bytes())
    sample = contract["samples"][0]
    tensor = sample["request"]["inputs"][0]
    return np.asarray(tensor["data"], dtype=np.float32), np.asarray(sample["expected"]["outputs"][0]["data"])


def test_health_and_server_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "modelapp-scoring-service"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_readiness(client: httpclient.InferenceServerClient) -> None:
    assert client.is_model_ready("diabetes")
    assert client.is_model_ready("diabetes", "1.0.0")
    assert not client.is_model_ready("diabetes", "9.9.9")
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata("diabetes", "1.0.0")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["outputs"] == [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}]
    assert client.get_model_metadata("digits")["versions"] == ["1.0.0"]
    with pytest.raises(InferenceServerException, match="not found"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("version", ["", "1.0.0"], ids=["latest", "versioned"])
def test_infer_diabetes(client: httpclient.InferenceServerClient, example_bundles: dict[str, Path],
                        binary: bool, version: str) -> None:  # fmt: skip
    rows, expected = contract_expectation(example_bundles["diabetes"])
    inp = httpclient.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows, binary_data=binary)
    out = httpclient.InferRequestedOutput("variable", binary_data=binary)
    result = client.infer("diabetes", [inp], model_version=version, outputs=[out], request_id="r-42")
    np.testing.assert_allclose(result.as_numpy("variable").reshape(-1), expected, rtol=1e-4, atol=1e-3)
    response = result.get_response()
    assert response["id"] == "r-42"
    assert response["model_version"] == "1.0.0"
    assert ("parameters" in response["outputs"][0]) is binary


def test_infer_without_requested_outputs_gets_all_outputs_binary(
    client: httpclient.InferenceServerClient,
) -> None:
    # tritonclient then sets parameters.binary_data_output = true.
    inp = httpclient.InferInput("input", [1, 64], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 64), dtype=np.float32))
    result = client.infer("digits", [inp])
    assert result.as_numpy("label").shape == (1,)
    probs = result.as_numpy("probabilities")
    assert probs.shape == (1, 10)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_infer_png_bytes_through_preprocess(client: httpclient.InferenceServerClient,
                                            example_bundles: dict[str, Path]) -> None:  # fmt: skip
    contract = orjson.loads((example_bundles["digits"] / "contract.json").read_bytes())
    sample = contract["samples"][0]
    pngs = [base64.b64decode(s) for s in sample["request"]["inputs"][0]["data"]]
    assert Image.open(io.BytesIO(pngs[0])).format == "PNG"
    images = np.array(pngs, dtype=np.object_)
    inp = httpclient.InferInput("input", [len(pngs)], "BYTES")
    inp.set_data_from_numpy(images, binary_data=True)
    result = client.infer(
        "digits", [inp], outputs=[httpclient.InferRequestedOutput("label", binary_data=False)]
    )
    assert result.as_numpy("label").tolist() == sample["expected"]["outputs"][0]["data"]


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_request_compression(client: httpclient.InferenceServerClient, compression: str) -> None:
    inp = httpclient.InferInput("input", [2, 10], "FP32")
    inp.set_data_from_numpy(DIABETES_ROWS)
    result = client.infer("diabetes", [inp], request_compression_algorithm=compression)
    assert result.as_numpy("variable").shape == (2, 1)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips(client: httpclient.InferenceServerClient, binary: bool) -> None:
    inputs, expected = [], {}
    rng = np.random.default_rng(0)
    for dt in DATATYPES:
        if dt == "BYTES":
            arr = np.array([[b"a", b"bc"], [b"", "é".encode()]], dtype=np.object_)
        elif dt == "BOOL":
            arr = np.array([[True, False], [False, True]])
        else:
            np_type = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(dt) or np.dtype(
                dt.lower()
            )
            info = np.iinfo(np_type) if np.dtype(np_type).kind in "iu" else None
            arr = (np.array([[info.min, info.max], [0, 1]], dtype=np_type) if info
                   else rng.standard_normal((2, 2)).astype(np_type))  # fmt: skip
        tensor = httpclient.InferInput(f"in_{dt}", [2, 2], dt)
        tensor.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(tensor)
        expected[f"out_{dt}"] = arr
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in expected]
    result = client.infer("identity", inputs, outputs=outputs)
    for name, arr in expected.items():
        got = result.as_numpy(name)
        if arr.dtype == object:
            got_bytes = [g if isinstance(g, bytes) else str(g).encode() for g in got.reshape(-1)]
            assert got_bytes == list(arr.reshape(-1)), name
        else:
            np.testing.assert_array_equal(got, arr, err_msg=name)


def test_errors_surface_as_inference_server_exceptions(client: httpclient.InferenceServerClient) -> None:
    inp = httpclient.InferInput("input", [1, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as exc:
        client.infer("diabetes", [inp])
    assert exc.value.status() == "400"
    assert "shape [1, 3] does not match" in exc.value.message()
    with pytest.raises(InferenceServerException) as exc:
        client.infer("nope", [inp])
    assert exc.value.status() == "404"
