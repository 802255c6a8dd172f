"""Driving the real operator, the real `modelapp` CLI and ModelApps on the test bed, for tests."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import KUBECONFIG, REPO, Azurite, kubectl, wait_until

VENV_BIN = Path(sys.executable).parent
# The KWOK nodes are labelled `type: kwok` and tainted kwok.x-k8s.io/node=fake:NoSchedule, so that real
# workloads land on the real node. Whatever must run on KWOK (its pods simulated: Ready at once, Jobs
# completing, `kwok-fail` images failing) says so with this, merged into a pod spec or spec.serve.
KWOK_PLACEMENT: dict[str, Any] = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}
MODELAPP = str(VENV_BIN / "modelapp")
OPERATOR = str(VENV_BIN / "modelapp-operator")


# How the tests run the operator process (the e2e HA test too).
TEST_OPERATOR_ENV = {
    "MODELAPP_OPERATOR_METRICS_PORT": "0",
    "MODELAPP_OPERATOR_SCORER_IMAGE": "registry.example/scoring-service:test",
    "MODELAPP_OPERATOR_FETCH_IMAGE": "registry.example/modelapp-operator:test",
    # The KWOK stories name other images of this made-up registry (kwok-fail ones among them).
    "MODELAPP_OPERATOR_ALLOWED_SERVE_IMAGES": "registry.example/*",
    "MODELAPP_OPERATOR_ALLOWED_KANIKO_IMAGES": "registry.example/*",
    # The test bed's Azurite, as the host (127.0.0.1) and pods (10.250.0.1) reach it: not an Azure
    # blob host, so the operator sends it credentials only because it is allowed here.
    "MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS": "127.0.0.1:10000,10.250.0.1:10000",
    # The tests poll every second to stay fast; the operator's default floor (10 s) would slow
    # every wait for a new version.
    "MODELAPP_OPERATOR_POLL_INTERVAL_FLOOR_SECONDS": "1",
}


@dataclass
class OperatorProcess:
    """`modelapp-operator` as a process watching one namespace, logging to a file."""

    namespace: str
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    kubeconfig: Path = KUBECONFIG
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **TEST_OPERATOR_ENV, **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [OPERATOR, "-n", self.namespace, "--liveness", "", "--log-format", "plain", *self.extra_args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def modelapp_cli(
    *args: str, azurite: Azurite | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if azurite is not None:
        env["MODELAPP_CONNECTION_STRING"] = azurite.connection_string
    proc = subprocess.run([MODELAPP, *args], env=env, text=True, capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"modelapp {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def publish(azurite: Azurite, bundle: Path, container: str, prefix: str, version: str, *extra: str) -> None:
    modelapp_cli(
        "publish",
        str(bundle),
        "--container",
        container,
        "--prefix",
        prefix,
        "--version",
        version,
        *extra,
        azurite=azurite,
    )


def on_kwok(pod_spec: Mapping[str, Any]) -> dict[str, Any]:
    """A pod spec (a Pod's, or a Job's or Deployment's template's) placed on the KWOK nodes."""
    return {**pod_spec, **copy.deepcopy(KWOK_PLACEMENT)}


def modelapp_manifest(
    name: str, container: str, prefix: str, *, secret: str = "blob-creds", **spec: Any
) -> dict[str, Any]:
    """A ModelApp for the test bed: Azurite through a Secret, InitContainer packaging, fast polling, and
    every pod it owns on the KWOK nodes."""
    body: dict[str, Any] = {
        "apiVersion": "modelapp.dev/v1alpha1",
        "kind": "ModelApp",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "source": {
                    "azureBlob": {
                        "accountUrl": "http://127.0.0.1:10000/devstoreaccount1",
                        "container": container,
                        "prefix": prefix,
                        "auth": {"secretRef": {"name": secret}},
                    }
                },
                "pollInterval": "1s",
            },
            "packaging": "InitContainer",
            "serve": on_kwok({"replicas": 2}),
            "rollout": {"progressDeadlineSeconds": 10},
        },
    }
    _deep_update(body["spec"], spec)
    return body


def _deep_update(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for k, v in other.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _deep_update(into[k], v)
        else:
            into[k] = v


def apply(namespace: str, body: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(body), check=False)


def patch_modelapp(namespace: str, name: str, merge_patch: str) -> None:
    """`kubectl patch modelapp --type merge`, as a user edits a ModelApp."""
    kubectl("-n", namespace, "patch", "modelapp", name, "--type", "merge", "-p", merge_patch)


def _create_secret(namespace: str, name: str, *args: str) -> str:
    kubectl("-n", namespace, "create", "secret", "generic", name, *args)
    return name


def create_blob_secret(namespace: str, connection_string: str, name: str = "blob-creds") -> str:
    """A Secret holding a store's connection string, as a user would create it."""
    return _create_secret(namespace, name, f"--from-literal=connectionString={connection_string}")


def create_push_secret(
    namespace: str,
    name: str = "push-creds",
    registry: str = "registry.example",
    auth: str | None = "dXNlcjpwYXNz",
) -> str:
    """A docker-config Secret for Kaniko, as `kubectl create secret docker-registry` makes one
    (``auth`` None: a registry that takes no credentials)."""
    config = {"auths": {registry: {"auth": auth} if auth else {}}}
    return _create_secret(
        namespace,
        name,
        "--type=kubernetes.io/dockerconfigjson",
        f"--from-literal=.dockerconfigjson={json.dumps(config)}",
    )


def get_modelapp(namespace: str, name: str) -> dict[str, Any]:
    out = kubectl("-n", namespace, "get", "modelapp", name, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def condition(app: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for c in (app.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def wait_for_status(
    namespace: str, name: str, predicate: Any, timeout: float = 60, what: str = "status"
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        app = get_modelapp(namespace, name)
        return app if predicate(app) else None

    try:
        return wait_until(probe, timeout=timeout, interval=0.3, what=what)
    except AssertionError as exc:
        status = json.dumps(get_modelapp(namespace, name).get("status"), indent=1)[-3000:]
        raise AssertionError(f"{exc}\nlast status:\n{status}") from None


def serving(version: str) -> Any:
    def check(app: Mapping[str, Any]) -> bool:
        st = app.get("status") or {}
        return bool(
            (st.get("servingVersion") or {}).get("version") == version
            and condition(app, "Ready").get("status") == "True"
            and condition(app, "RolledOut").get("status") == "True"
            and st.get("observedGeneration") == app["metadata"]["generation"]
        )

    return check


def deployment(namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        kubectl("-n", namespace, "get", "deployment", name, "-o", "json").stdout
    )
    return result


def events(namespace: str, name: str) -> list[dict[str, Any]]:
    out = kubectl(
        "-n",
        namespace,
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={name},involvedObject.kind=ModelApp",
        "-o",
        "json",
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def train_example(name: str, out: Path, version: str = "1.0.0", *extra: str) -> Path:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / name / "train.py"),
            "--out",
            str(out),
            "--version",
            version,
            *extra,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def settle(seconds: float) -> None:
    """Let the operator run for a while when a test asserts that something does NOT happen."""
    time.sleep(seconds)
