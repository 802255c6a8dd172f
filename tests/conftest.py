"""Shared fixtures: the local test bed (real control plane + KWOK + Azurite), namespaces, clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed import KUBECONFIG, Azurite, cluster, cluster_running, component_running, wait_until

_KEEP = os.environ.get("MODELAPP_KEEP_TESTBED", "") not in ("", "0", "false")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder says what a test needs; a marker makes `-m unit` and friends work.
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in ("unit", "integration", "e2e"):
            if kind in parts and not item.get_closest_marker(kind):
                item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite on 127.0.0.1:10000, started for the session unless already running."""
    started = not component_running("azurite")
    cluster("up", "azurite")
    yield Azurite()
    if started and not _KEEP and not component_running("kube-apiserver"):
        cluster("down", check=False)


@pytest.fixture(scope="session")
def testbed(azurite: Azurite) -> Iterator[Path]:
    """The whole test bed; yields the admin kubeconfig path. Reuses a running one."""
    started = not cluster_running()
    proc = cluster("up", check=False)
    if proc.returncode != 0:
        pytest.fail(f"hack/cluster.sh up failed:\n{proc.stderr[-4000:]}")
    os.environ["KUBECONFIG"] = str(KUBECONFIG)
    yield KUBECONFIG
    if started and not _KEEP:
        cluster("down", check=False)


@pytest.fixture(scope="session")
def k8s(testbed: Path) -> object:
    """A synchronous `kubernetes` ApiClient for assertions (the operator has its own async client)."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(testbed))


@pytest.fixture
def namespace(k8s: object) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for it to go)."""
    from kubernetes import client

    api = client.CoreV1Api(k8s)
    name = f"t-{uuid.uuid4().hex[:10]}"
    api.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"modelapp.dev/test": "true"}))
    )

    def has_default_sa() -> bool:
        return any(sa.metadata.name == "default" for sa in api.list_namespaced_service_account(name).items)

    wait_until(has_default_sa, timeout=60, what=f"the default ServiceAccount in {name}")
    yield name
    # The operators of the test are stopped by now, so nobody would remove kopf's finalizer from the
    # ModelApps left behind and the namespace would never finish terminating.
    custom = client.CustomObjectsApi(k8s)
    try:
        apps = custom.list_namespaced_custom_object("modelapp.dev", "v1alpha1", name, "modelapps")["items"]
    except client.ApiException:
        apps = []
    for app in apps:
        if app["metadata"].get("finalizers"):
            custom.patch_namespaced_custom_object(
                "modelapp.dev",
                "v1alpha1",
                name,
                "modelapps",
                app["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )
    api.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def crds(testbed: Path) -> None:
    """The project's CRDs, applied to the test bed as `kubectl apply -f crds/` would."""
    from testbed import REPO, kubectl

    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/modelapps.modelapp.dev", "--timeout=60s")


@pytest.fixture
def blob_container(azurite: Azurite) -> Iterator[str]:
    """A fresh, empty blob container in Azurite, deleted afterwards."""
    from azure.storage.blob import BlobServiceClient

    svc = BlobServiceClient.from_connection_string(azurite.connection_string)
    name = f"models-{uuid.uuid4().hex[:12]}"
    svc.create_container(name)
    yield name
    svc.delete_container(name)


@pytest.fixture(scope="session")
def diabetes_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The diabetes example bundle, trained once per session."""
    from operator_kit import train_example

    return train_example("diabetes", tmp_path_factory.mktemp("bundles") / "diabetes")


@pytest.fixture
def blob_secret(namespace: str, azurite: Azurite) -> str:
    """A Secret holding Azurite's connection string, as a user would create it."""
    from operator_kit import create_blob_secret

    return create_blob_secret(namespace, azurite.connection_string)


@pytest.fixture
def operator_factory(namespace: str, crds: None, tmp_path: Path) -> Iterator[object]:
    """Starts `modelapp-operator` processes for the test's namespace; stops them all afterwards."""
    from operator_kit import OperatorProcess

    started: list[OperatorProcess] = []

    def start(*args: str, **env: str) -> OperatorProcess:
        op = OperatorProcess(
            namespace, tmp_path / f"operator-{len(started)}.log", env=env, extra_args=args
        ).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
    for op in started:
        if op.log:
            print(f"--- {op.log_path.name} (tail)\n{op.log[-3000:]}")


@pytest.fixture(scope="session")
def real_node(testbed: Path) -> object:
    """The real node's addresses and images (.local/testbed.env); it must be Ready, and a KWOK node
    never stands in for it."""
    from realnode import RealNode, get_json

    node = RealNode.load()
    obj = get_json("default", "node", node.name)
    assert "kwok.x-k8s.io/node" not in obj["metadata"].get("annotations", {}), (
        "a KWOK node is not a real node"
    )
    ready = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert ready.get("Ready") == "True", f"{node.name} is not Ready: {obj['status']['conditions']}"
    return node
