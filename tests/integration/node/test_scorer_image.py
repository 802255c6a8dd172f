"""Story 2: the scorer image built by Kaniko serves in a pod; tritonclient on the host, through the
Service, gets the predictions onnxruntime gives on the host for the same model, over REST and over
gRPC; the kubelet's gRPC probe (grpc.health.v1) says when the pod is ready."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from realnode import RealNode, cluster_ip, restricted_container, wait_pod_ready
from testbed import kubectl, wait_until

pytestmark = pytest.mark.integration


def _model_configmap(namespace: str, bundle: Path) -> None:
    files = [f"--from-file={p.name}={p}" for p in sorted(bundle.iterdir()) if p.is_file()]
    kubectl("-n", namespace, "create", "configmap", "diabetes-bundle", *files)


def _scorer_pod(image: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "scorer", "labels": {"app": "scorer"}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 10001},
            "containers": [
                {
                    "name": "scorer",
                    "image": image,
                    "args": ["serve", "--model-dir", "/models", "--host", "0.0.0.0", "--port", "8080"],
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "grpc", "containerPort": 8081},
                    ],
                    # The kubelet's own gRPC health check (grpc.health.v1, the server's overall status).
                    "readinessProbe": {"grpc": {"port": 8081}, "periodSeconds": 1},
                    "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}},
                    "securityContext": restricted_container(),
                    "volumeMounts": [
                        {"name": "bundle", "mountPath": "/models/diabetes", "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "bundle", "configMap": {"name": "diabetes-bundle"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def test_scorer_image_answers_tritonclient_through_its_service(
    namespace: str, real_node: RealNode, diabetes_bundle: Path
) -> None:
    _model_configmap(namespace, diabetes_bundle)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "scorer"},
        "spec": {
            "selector": {"app": "scorer"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "grpc", "port": 8081, "targetPort": "grpc"},
            ],
        },
    }
    for body in (_scorer_pod(real_node.scorer_image), service):
        kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(body))
    pod = wait_pod_ready(namespace, "scorer", timeout=240)
    assert pod["spec"]["nodeName"] == real_node.name
    assert pod["status"]["containerStatuses"][0]["imageID"].endswith(real_node.scorer_image.split("@")[1])

    rows = np.random.default_rng(7).normal(0, 0.05, size=(8, 10)).astype(np.float32)
    session = ort.InferenceSession(str(diabetes_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": rows})[0]

    client = httpclient.InferenceServerClient(url=f"{cluster_ip(namespace, 'scorer')}:80", network_timeout=30)
    wait_until(lambda: _ready(client), timeout=60, what="the scorer's Service to answer")
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer("diabetes", [tensor])
    got = result.as_numpy("variable")
    assert got is not None
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert result.get_response()["model_version"] == "1.0.0"

    grpc = grpcclient.InferenceServerClient(url=f"{cluster_ip(namespace, 'scorer')}:8081")
    assert grpc.is_model_ready("diabetes")
    raw = grpcclient.InferInput("input", list(rows.shape), "FP32")
    raw.set_data_from_numpy(rows)
    over_grpc = grpc.infer("diabetes", [raw])
    np.testing.assert_allclose(over_grpc.as_numpy("variable"), expected, rtol=1e-6, atol=1e-6)
    assert over_grpc.get_response().model_version == "1.0.0"


def _ready(client: httpclient.InferenceServerClient) -> bool:
    try:
        return bool(client.is_model_ready("diabetes"))
    except Exception:  # connection refused until kube-proxy has the endpoint
        return False
