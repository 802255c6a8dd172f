"""Helpers for tests on the test bed's real node: its addresses and images (.local/testbed.env),
pods and Services that really run, and HTTP from the host or from inside a pod."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from operator_kit import create_blob_secret, create_push_secret, modelapp_manifest
from testbed import LOCAL, kubectl, wait_until

TESTBED_ENV = LOCAL / "testbed.env"
APP = "diabetes"
# Rows for the diabetes model (10 features, about the scale of the dataset's standardised columns).
ROWS = np.random.default_rng(3).normal(0, 0.05, size=(4, 10)).astype(np.float32)


@dataclass(frozen=True)
class RealNode:
    """What `hack/cluster.sh up` wrote to .local/testbed.env."""

    name: str
    registry: str
    blob_url: str
    python_image: str
    scorer_image: str
    operator_image: str
    kaniko_image: str

    @classmethod
    def load(cls) -> RealNode:
        env: dict[str, str] = {}
        for line in TESTBED_ENV.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line.removeprefix("export ").partition("=")
                env[key] = value
        return cls(
            name=env["MODELAPP_TESTBED_REAL_NODE"],
            registry=env["MODELAPP_TESTBED_REGISTRY"],
            blob_url=env["MODELAPP_TESTBED_BLOB_URL"],
            python_image=env["MODELAPP_TESTBED_PYTHON_IMAGE"],
            scorer_image=env["MODELAPP_TESTBED_BASE_IMAGE"],
            operator_image=env["MODELAPP_TESTBED_OPERATOR_IMAGE"],
            kaniko_image=env["MODELAPP_TESTBED_KANIKO_IMAGE"],
        )

    def connection_string(self, account: str, key: str) -> str:
        """Azurite's connection string with the endpoint pods reach (the host reaches it too)."""
        return f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={self.blob_url};"


def restricted_container() -> dict[str, Any]:
    """The securityContext the `restricted` Pod Security level asks of a container."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def get_json(namespace: str, *what: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kubectl("-n", namespace, "get", *what, "-o", "json").stdout)
    return result


def pod_phase(namespace: str, name: str) -> str:
    return str(get_json(namespace, "pod", name).get("status", {}).get("phase", ""))


def wait_pod_ready(namespace: str, name: str, timeout: float = 180) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = get_json(namespace, "pod", name)
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        return pod if conds.get("Ready") == "True" else None

    try:
        return wait_until(ready, timeout=timeout, interval=0.5, what=f"pod {name} Ready")
    except AssertionError as exc:
        desc = kubectl("-n", namespace, "describe", "pod", name, check=False).stdout[-3000:]
        raise AssertionError(f"{exc}\n{desc}") from None


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def http_from_pod(namespace: str, pod: str, url: str) -> str:
    """GET url from inside a pod (its image has python3), through `kubectl exec`."""
    code = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).read().decode())"
    return kubectl("-n", namespace, "exec", pod, "--", "python3", "-c", code).stdout


def cluster_ip(namespace: str, service: str) -> str:
    return str(get_json(namespace, "service", service)["spec"]["clusterIP"])


def registry_digest(registry: str, repository: str, tag: str) -> str:
    """The manifest digest the registry itself reports for repository:tag."""
    accept = ", ".join(
        [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
    )
    req = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": accept}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.headers["Docker-Content-Digest"])


def infer_json(url: str, rows: list[list[float]], model: str = "diabetes") -> dict[str, Any]:
    """A KServe V2 REST inference call with FP32 rows."""
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [len(rows), len(rows[0])], "data": rows}]
    }
    req = urllib.request.Request(
        f"{url}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def predictions(bundle: Path) -> list[float]:
    """What onnxruntime on the host answers for ROWS with the bundle's model."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    return [float(v) for v in session.run(None, {"input": ROWS})[0].reshape(-1)]


def image_app(node: RealNode, container: str, destination: str, **rollout: Any) -> dict[str, Any]:
    """The diabetes ModelApp with Image packaging on the real node: Azurite at the address pods reach,
    pushed to the local registry, the contract test on."""
    body = modelapp_manifest(APP, container, f"{APP}/")
    spec = body["spec"]
    spec["model"]["source"]["azureBlob"]["accountUrl"] = node.blob_url
    spec["packaging"] = "Image"
    spec["build"] = {"destination": destination, "pushSecretRef": {"name": "push-creds"}}
    spec["serve"] = {"replicas": 2}
    spec["rollout"] = {"progressDeadlineSeconds": 90, "contractTest": True, **rollout}
    return body


def create_user_secrets(node: RealNode, namespace: str, account: str, key: str) -> None:
    """The Secrets a user creates for the real node's stories: Azurite's connection string as pods reach
    it (`blob-creds`) and a push config for the local registry, which takes no credentials (`push-creds`)."""
    create_blob_secret(namespace, node.connection_string(account, key))
    create_push_secret(namespace, registry=node.registry, auth=None)


def delete_namespace(namespace: str) -> None:
    """Deletes a namespace whose operator has stopped: kopf's finalizers go first, or it never ends."""
    for app in get_json(namespace, "modelapps")["items"]:
        patch = '{"metadata": {"finalizers": null}}'
        kubectl("-n", namespace, "patch", "modelapp", app["metadata"]["name"], "--type", "merge", "-p", patch)
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def first_answer(url: str, timeout: float = 60) -> list[float]:
    """The first inference answer through a Service, waiting for kube-proxy to program it (a Service
    is routable a moment after its pods are Ready)."""

    def attempt() -> list[float] | None:
        try:
            return [float(v) for v in infer_json(url, ROWS.tolist())["outputs"][0]["data"]]
        except OSError:
            return None

    return wait_until(attempt, timeout=timeout, interval=0.5, what=f"an answer from {url}")


@dataclass
class Load:
    """Steady requests through the Service from the host, counting every failure."""

    url: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    answers: list[list[float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = infer_json(self.url, ROWS.tolist())["outputs"][0]["data"]
                self.answers.append([float(v) for v in out])
                self.ok += 1
            except Exception as exc:  # every kind of failure counts
                self.failures.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
            time.sleep(0.02)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
