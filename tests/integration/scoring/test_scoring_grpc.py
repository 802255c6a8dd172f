"""The gRPC API against tritonclient[grpc], a real Open Inference Protocol client we did not write.

tritonclient sends raw_input_contents; typed `contents` go through tritonclient's own generated stub.
Every answer is compared with what REST answers for the same request.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from integration.scoring.conftest import Server
from integration.scoring.test_scoring_tritonclient import DIABETES_ROWS
from onnx import TensorProto, helper
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException
from unit.scoring.scoring_models import DATATYPES, OPSET, save

pytestmark = pytest.mark.integration

TYPED_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
CLIENT_ERRORS_NEVER = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


@pytest.fixture(scope="module")
def client(server: Server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_target)


@pytest.fixture(scope="module")
def rest(server: Server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30)


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"a", b"bc"], [b"", "\u00e9".encode()]], dtype=np.object_)
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    dtype = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(datatype) or np.dtype(
        datatype.lower()
    )
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, info.max], [0, 1]], dtype=dtype)
    return np.array([[1.5, -2.25], [0.0, 1e-3]], dtype=dtype)


def grpc_error(call: Callable[[], Any]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as exc:
        call()
    assert exc.value.status() not in {str(s) for s in CLIENT_ERRORS_NEVER}, exc.value
    assert exc.value.message()
    return exc.value


def rest_error(server: Server, model: str, body: dict[str, Any]) -> str:
    response = httpx.post(f"{server.url}/v2/models/{model}/infer", json=body)
    assert response.status_code >= 400
    message: str = response.json()["error"]
    return message


# -- health, metadata ----------------------------------------------------------------------------


def test_health_and_server_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "modelapp-scoring-service"
    assert "binary_tensor_data" in meta.extensions


def test_model_metadata_and_readiness(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_model_ready("diabetes")
    assert client.is_model_ready("diabetes", "1.0.0")
    assert grpc_error(lambda: client.is_model_ready("diabetes", "9.9.9")).status() == "StatusCode.NOT_FOUND"
    meta = client.get_model_metadata("diabetes", "1.0.0", as_json=True)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "10"]}]
    assert meta["outputs"] == [{"name": "variable", "datatype": "FP32", "shape": ["-1", "1"]}]
    assert (meta["versions"], meta["platform"]) == (["1.0.0"], "onnxruntime_onnx")
    error = grpc_error(lambda: client.get_model_metadata("nope"))
    assert (error.status(), error.message()) == ("StatusCode.NOT_FOUND", "model 'nope' not found")


def test_the_health_service_says_serving(server: Server) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as exc:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_broken_bundle_is_not_serving(
    start_server: Callable[..., Server], example_bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "diabetes"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(b"not onnx")
    server = start_server(bundle, wait_ready=False)
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    client = grpcclient.InferenceServerClient(server.grpc_target)
    assert not client.is_server_ready()
    assert not client.is_model_ready("diabetes")
    inp = grpcclient.InferInput("input", [1, 10], "FP32")
    inp.set_data_from_numpy(DIABETES_ROWS[:1])
    error = grpc_error(lambda: client.infer("diabetes", [inp]))
    assert error.status() == "StatusCode.UNAVAILABLE"
    assert "model diabetes version 1 is not ready" in error.message()


# -- inference: the same numbers as REST ---------------------------------------------------------


@pytest.mark.parametrize("version", ["", "1.0.0"], ids=["latest", "versioned"])
def test_raw_contents_give_rest_s_numbers(
    client: grpcclient.InferenceServerClient, rest: httpclient.InferenceServerClient, version: str
) -> None:
    inp = grpcclient.InferInput("input", [2, 10], "FP32")
    inp.set_data_from_numpy(DIABETES_ROWS)
    result = client.infer("diabetes", [inp], model_version=version, request_id="r-42")
    rest_inp = httpclient.InferInput("input", [2, 10], "FP32")
    rest_inp.set_data_from_numpy(DIABETES_ROWS, binary_data=False)
    expected = rest.infer("diabetes", [rest_inp]).as_numpy("variable")
    np.testing.assert_array_equal(result.as_numpy("variable"), expected)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("r-42", "diabetes", "1.0.0")
    assert len(response.raw_output_contents) == 1


def test_typed_contents_give_typed_outputs_and_rest_s_numbers(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, rest: httpclient.InferenceServerClient
) -> None:
    request = pb.ModelInferRequest(model_name="diabetes", id="typed")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[2, 10])
    tensor.contents.fp32_contents.extend(DIABETES_ROWS.reshape(-1).tolist())
    response = stub.ModelInfer(request, timeout=10)
    assert not response.raw_output_contents
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("variable", "FP32", [2, 1])
    rest_inp = httpclient.InferInput("input", [2, 10], "FP32")
    rest_inp.set_data_from_numpy(DIABETES_ROWS, binary_data=False)
    expected = rest.infer("diabetes", [rest_inp]).as_numpy("variable").reshape(-1)
    np.testing.assert_array_equal(np.array(out.contents.fp32_contents, dtype=np.float32), expected)


def test_every_datatype_round_trips_raw(client: grpcclient.InferenceServerClient) -> None:
    inputs = []
    for dt in DATATYPES:
        tensor = grpcclient.InferInput(f"in_{dt}", [2, 2], dt)
        tensor.set_data_from_numpy(sample(dt))
        inputs.append(tensor)
    result = client.infer("identity", inputs)
    for dt in DATATYPES:
        got, sent = result.as_numpy(f"out_{dt}"), sample(dt)
        if dt == "BYTES":
            assert got.reshape(-1).tolist() == sent.reshape(-1).tolist()
        else:
            np.testing.assert_array_equal(got, sent, err_msg=dt)
            assert got.dtype == sent.dtype, dt


def test_every_typed_datatype_round_trips(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = pb.ModelInferRequest(model_name="identity")
    for dt in DATATYPES:
        tensor = request.inputs.add(name=f"in_{dt}", datatype=dt, shape=[2, 2])
        if dt != "FP16":  # no typed field: raw only, so a typed request leaves it out
            getattr(tensor.contents, TYPED_FIELD[dt]).extend(sample(dt).reshape(-1).tolist())
    with pytest.raises(grpc.RpcError) as exc:
        stub.ModelInfer(request, timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details() == "input 'in_FP16': FP16 has no typed contents; send it in raw_input_contents"
    del request.inputs[list(DATATYPES).index("FP16")]
    request.outputs.extend(
        pb.ModelInferRequest.InferRequestedOutputTensor(name=f"out_{dt}") for dt in TYPED_FIELD
    )
    fp16 = request.inputs.add(name="in_FP16", datatype="FP16", shape=[0, 2])  # empty: no contents needed
    assert not fp16.HasField("contents")
    response = stub.ModelInfer(request, timeout=10)
    assert not response.raw_output_contents
    for out in response.outputs:
        dt = out.datatype
        assert list(getattr(out.contents, TYPED_FIELD[dt])) == sample(dt).reshape(-1).tolist(), dt


def test_png_bytes_through_preprocess(client: grpcclient.InferenceServerClient,
                                      example_bundles: dict[str, Path]) -> None:  # fmt: skip
    import base64

    import orjson

    sample_ = orjson.loads((example_bundles["digits"] / "contract.json").read_bytes())["samples"][0]
    pngs = np.array([base64.b64decode(s) for s in sample_["request"]["inputs"][0]["data"]], dtype=np.object_)
    inp = grpcclient.InferInput("input", [len(pngs)], "BYTES")
    inp.set_data_from_numpy(pngs)
    result = client.infer("digits", [inp], outputs=[grpcclient.InferRequestedOutput("label")])
    assert result.as_numpy("label").tolist() == sample_["expected"]["outputs"][0]["data"]


# -- bad requests: a gRPC status and REST's message ----------------------------------------------


def test_bad_requests_get_rest_s_message(client: grpcclient.InferenceServerClient, server: Server) -> None:
    for shape, datatype, arr in [
        ([1, 3], "FP32", np.zeros((1, 3), np.float32)),  # wrong shape
        ([2, 10], "FP64", DIABETES_ROWS.astype(np.float64)),  # wrong datatype
    ]:
        inp = grpcclient.InferInput("input", shape, datatype)
        inp.set_data_from_numpy(arr)
        error = grpc_error(lambda inp=inp: client.infer("diabetes", [inp]))
        body = {
            "inputs": [
                {"name": "input", "shape": shape, "datatype": datatype, "data": arr.reshape(-1).tolist()}
            ]
        }
        assert (error.status(), error.message()) == (
            "StatusCode.INVALID_ARGUMENT",
            rest_error(server, "diabetes", body),
        )
    inp = grpcclient.InferInput("input", [1, 10], "FP32")
    inp.set_data_from_numpy(DIABETES_ROWS[:1])
    error = grpc_error(lambda: client.infer("nope", [inp]))
    assert (error.status(), error.message()) == ("StatusCode.NOT_FOUND", "model 'nope' not found")


def test_malformed_raw_contents(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    def refused(request: pb.ModelInferRequest) -> str:
        with pytest.raises(grpc.RpcError) as exc:
            stub.ModelInfer(request, timeout=10)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details: str = exc.value.details()
        return details

    short = pb.ModelInferRequest(model_name="diabetes", raw_input_contents=[b"\0" * 39])
    short.inputs.add(name="input", datatype="FP32", shape=[1, 10])
    assert "binary_data_size 39 does not match shape [1, 10] of FP32 (40 bytes)" in refused(short)
    extra = pb.ModelInferRequest(model_name="diabetes", raw_input_contents=[b"\0" * 40, b""])
    extra.inputs.add(name="input", datatype="FP32", shape=[1, 10])
    assert "raw_input_contents has 2 entries for 1 inputs" in refused(extra)
    text = pb.ModelInferRequest(model_name="identity", raw_input_contents=[b"\x05\0\0\0ab"])
    text.inputs.add(name="in_BYTES", datatype="BYTES", shape=[1, 2])
    assert "BYTES element overruns" in refused(text)


@pytest.mark.parametrize("size", [100, 70000])  # parsed whole by protobuf; split around the raw bytes
def test_a_message_that_is_not_protobuf_is_invalid_argument(server: Server, size: int) -> None:
    request = pb.ModelInferRequest(model_name="diabetes", raw_input_contents=[b"\0" * size])
    request.inputs.add(name="input", datatype="FP32", shape=[1, 10])
    with grpc.insecure_channel(server.grpc_target) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as exc:
            infer(request.SerializeToString()[:-1], timeout=10)  # the raw bytes cut short
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed ModelInferRequest" in exc.value.details()


def test_requests_are_counted_with_rest_s_codes(
    client: grpcclient.InferenceServerClient, server: Server
) -> None:
    inp = grpcclient.InferInput("input", [1, 10], "FP32")
    inp.set_data_from_numpy(DIABETES_ROWS[:1])
    client.infer("diabetes", [inp])
    bad = grpcclient.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
    grpc_error(lambda: client.infer("diabetes", [bad]))
    text = httpx.get(server.metrics_url + "/metrics").text
    for code in ("200", "400"):
        assert (
            f'scoring_requests_total{{code="{code}",endpoint="grpc_infer",model="diabetes",version="1.0.0"}}'
            in text
        )


# -- images: 1x3x224x224 FP32, and the size limits -----------------------------------------------


@pytest.fixture(scope="module")
def image_server(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Server:
    """GlobalAveragePool over [N, 3, 224, 224]; 8 MiB per message, 1 MiB of typed contents (JSON's budget)."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["y"])],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 1, 1])],
    )
    bundle = save(
        helper.make_model(graph, opset_imports=OPSET, ir_version=9), tmp_path_factory.mktemp("m") / "image"
    )
    env = {"SCORING_MAX_REQUEST_BYTES": str(8 << 20), "SCORING_MAX_JSON_BYTES": str(1 << 20)}
    return start_server(bundle, env=env)


def test_a_224_image_over_grpc_equals_rest_binary(image_server: Server) -> None:
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    inp = grpcclient.InferInput("x", [1, 3, 224, 224], "FP32")
    inp.set_data_from_numpy(image)
    got = grpcclient.InferenceServerClient(image_server.grpc_target).infer("image", [inp]).as_numpy("y")
    rest_inp = httpclient.InferInput("x", [1, 3, 224, 224], "FP32")
    rest_inp.set_data_from_numpy(image, binary_data=True)
    rest = httpclient.InferenceServerClient(url=f"127.0.0.1:{image_server.port}", network_timeout=30)
    np.testing.assert_array_equal(got, rest.infer("image", [rest_inp]).as_numpy("y"))
    np.testing.assert_allclose(got.reshape(-1), image.mean(axis=(2, 3)).reshape(-1), rtol=1e-5, atol=1e-6)


def test_too_large_is_resource_exhausted(image_server: Server) -> None:
    client = grpcclient.InferenceServerClient(image_server.grpc_target)
    four = grpcclient.InferInput("x", [4, 3, 224, 224], "FP32")  # 2.4 MB raw: within 8 MiB
    four.set_data_from_numpy(np.zeros((4, 3, 224, 224), np.float32))
    assert client.infer("image", [four]).as_numpy("y").shape == (4, 3, 1, 1)
    many = grpcclient.InferInput("x", [16, 3, 224, 224], "FP32")  # 9.6 MB: gRPC refuses the message
    many.set_data_from_numpy(np.zeros((16, 3, 224, 224), np.float32))
    error = grpc_error(lambda: client.infer("image", [many]))
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "larger than max" in error.message()
    with grpc.insecure_channel(image_server.grpc_target) as channel:  # 1.2 MB typed: over JSON's budget
        request = pb.ModelInferRequest(model_name="image")
        tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 3, 224, 224])
        tensor.contents.fp32_contents.extend(np.zeros(2 * 3 * 224 * 224, np.float32).tolist())
        with pytest.raises(grpc.RpcError) as exc:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "above the limit of 1048576; send large tensors in raw_input_contents" in exc.value.details()


def test_workers_share_the_grpc_port(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    server = start_server(example_bundles["diabetes"], "--workers", "2")
    client = grpcclient.InferenceServerClient(server.grpc_target)
    inp = grpcclient.InferInput("input", [1, 10], "FP32")
    inp.set_data_from_numpy(DIABETES_ROWS[:1])
    for _ in range(10):
        assert client.infer("diabetes", [inp]).as_numpy("variable").shape == (1, 1)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
