"""Helpers for the chart's e2e tests: helm, rendered manifests, ServiceAccount kubeconfigs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from testbed import KUBECONFIG, LOCAL, REPO, kubectl, wait_until

HELM = LOCAL / "bin" / "helm"
CHART = REPO / "charts" / "modelapp-operator"
# `helm template` has no server to ask; the test bed's version, so kubeVersion in Chart.yaml is checked.
KUBE_VERSION = "1.34.4"

Docs = list[dict[str, Any]]
# install(values) -> release name (the `install` fixture).
Installer = Callable[..., str]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(HELM), "--kubeconfig", str(KUBECONFIG), *args],
        text=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def set_args(values: dict[str, Any]) -> list[str]:
    """Values as --set-json flags, one per top-level key (lists and maps survive intact)."""
    return [a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]


def template(values: dict[str, Any], namespace: str = "modelapp-system", release: str = "t") -> str:
    return helm(
        "template", release, str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION, *set_args(values)
    ).stdout


def render(values: dict[str, Any], namespace: str = "modelapp-system", release: str = "t") -> Docs:
    return [d for d in yaml.safe_load_all(template(values, namespace, release)) if d]


def find(docs: Docs, kind: str, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    for d in docs:
        meta = d["metadata"]
        if d["kind"] == kind and name in (None, meta["name"]) and namespace in (None, meta.get("namespace")):
            return d
    raise AssertionError(f"no {kind} {namespace or ''}/{name or ''} in {[d['kind'] for d in docs]}")


def new_namespace() -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "modelapp.dev/test=true")
    wait_until(
        lambda: kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0,
        timeout=60,
        what=f"the default ServiceAccount in {name}",
    )
    return name


def service_account_kubeconfig(namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, with a token from the TokenRequest API."""
    token = kubectl("-n", namespace, "create", "token", service_account, "--duration", "30m").stdout.strip()
    ca = base64.b64encode((LOCAL / "pki" / "ca.crt").read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testbed",
                "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": ca},
            }
        ],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "testbed", "user": service_account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
