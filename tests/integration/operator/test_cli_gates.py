"""`modelapp status|promote|abort`, and `kubectl modelapp`, against the real API server.

No operator runs: each test writes the status the operator would (through the status subresource), so what is
checked is the command line's reading of it and the annotations it writes. It needs the CRD to know the canary
and shadow fields of status.pending (a structural schema would prune them otherwise).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from operator_kit import VENV_BIN, apply, get_modelapp, modelapp_cli, modelapp_manifest
from testbed import KUBECONFIG, kubectl

pytestmark = pytest.mark.integration


def stamp(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def put_status(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Writes status as the operator would and returns the ModelApp as the API server then has it."""
    kubectl(
        "-n", namespace, "patch", "modelapp", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    return get_modelapp(namespace, name)


def canary_status() -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": "1.1.0 serves",
             "lastTransitionTime": stamp(60)},
            {"type": "RolledOut", "status": "False", "reason": "Progressing", "message": "canary step 1/2",
             "lastTransitionTime": stamp(3)},
        ],
        "servingVersion": {"version": "1.1.0", "image": "registry.example/diabetes@sha256:ab", "since": stamp(60)},
        "latestVersion": {"version": "1.2.0", "seenAt": stamp(5)},
        "pending": {
            "version": "1.2.0", "stage": "Canary", "since": stamp(4),
            "canary": {"step": 1, "steps": 2, "weight": 10, "canaryReplicas": 1, "stableReplicas": 2,
                       "share": 33, "stepSince": stamp(2), "requests": 1520, "errorRatio": 0.002,
                       "p99Seconds": 0.042},
        },
        "quarantined": [{"version": "1.0.5", "reason": "CanaryFailed", "message": "error ratio 5%", "at": stamp(90)}],
        "history": [
            {"version": "1.1.0", "event": "RolledOut", "at": stamp(60), "durationSeconds": 40},
            {"version": "1.2.0", "event": "CanaryStarted", "at": stamp(4)},
        ],
    }  # fmt: skip


@pytest.fixture
def app(namespace: str, crds: None) -> str:
    """A ModelApp no operator follows: its status is only what the test writes."""
    assert apply(namespace, modelapp_manifest("diabetes", "models", "diabetes/")).returncode == 0
    return "diabetes"


def annotations(namespace: str, name: str) -> dict[str, str]:
    return dict(get_modelapp(namespace, name)["metadata"].get("annotations") or {})


def cli(namespace: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return modelapp_cli(*args, "-n", namespace, "--kubeconfig", str(KUBECONFIG), check=check)


def test_status_shows_the_canary_step_and_a_json_summary(namespace: str, app: str) -> None:
    written = put_status(namespace, app, canary_status())
    assert written["status"]["pending"].get("canary"), "the CRD pruned status.pending.canary"

    text = cli(namespace, "status", app).stdout
    assert text.startswith(f"ModelApp {namespace}/diabetes\n")
    assert "Ready        True  Serving  1.1.0 serves" in text
    assert "image registry.example/diabetes@sha256:ab" in text
    assert re.search(r"1\.2\.0  Canary for 4m(\d+s)?\n", text)  # the clock ticks between write and read
    assert "step 1/2 weight 10% (1 canary / 2 stable pods, share 33%)" in text
    assert "requests 1520, error ratio 0.2%, p99 42ms" in text
    assert f"modelapp promote diabetes -n {namespace} --version 1.2.0" in text
    assert "CanaryFailed" in text
    assert "Progressing" in text
    timeline = text.split("History (oldest first)\n")[1]
    assert timeline.index("RolledOut") < timeline.index("CanaryStarted")  # oldest first

    summary = json.loads(cli(namespace, "status", app, "-o", "json").stdout)
    assert summary["namespace"] == namespace
    assert summary["pending"]["canary"]["weight"] == 10
    assert summary["ready"]["reason"] == "Serving"
    assert [n["command"].split()[1] for n in summary["next"]] == ["promote", "abort"]


def test_kubectl_runs_the_plugin_like_the_command(namespace: str, app: str) -> None:
    put_status(namespace, app, canary_status())
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(KUBECONFIG),
    }
    # kubectl takes no flags before a plugin's name: they go after it, to the plugin.
    proc = subprocess.run(
        ["kubectl", "modelapp", "status", app, "-n", namespace],
        env=env, text=True, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"ModelApp {namespace}/diabetes\n")
    assert "step 1/2 weight 10% (1 canary / 2 stable pods, share 33%)" in proc.stdout
    # The commands it suggests are the plugin's own.
    assert f"kubectl modelapp abort diabetes -n {namespace} --version 1.2.0" in proc.stdout
    assert " modelapp abort" not in proc.stdout.replace("kubectl modelapp abort", "")
    help_ = subprocess.run(
        ["kubectl", "modelapp", "promote", "--help"],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert help_.stdout.startswith("usage: kubectl modelapp promote ")


def test_promote_annotates_the_canary_version(namespace: str, app: str) -> None:
    put_status(namespace, app, canary_status())
    out = cli(namespace, "promote", app).stdout
    assert "promoting diabetes 1.2.0" in out
    assert annotations(namespace, app)["modelapp.dev/promote"] == "1.2.0"


def test_abort_annotates_the_shadowed_version(namespace: str, app: str) -> None:
    status = canary_status()
    status["pending"] = {
        "version": "1.3.0", "stage": "Shadowing", "since": stamp(10),
        "shadow": {"sample": 10, "requests": 400, "failures": 3, "agreement": 0.9, "latencyRatio": 2.5,
                   "since": stamp(10)},
    }  # fmt: skip
    assert put_status(namespace, app, status)["status"]["pending"].get("shadow"), "the CRD pruned the shadow"
    assert "agreement 90%, latency ratio 2.5x" in cli(namespace, "status", app).stdout
    out = cli(namespace, "abort", app).stdout
    assert "aborting diabetes 1.3.0" in out
    assert annotations(namespace, app)["modelapp.dev/abort"] == "1.3.0"
    assert "modelapp.dev/promote" not in annotations(namespace, app)


def test_promote_outside_a_gate_is_a_usage_error_and_writes_nothing(namespace: str, app: str) -> None:
    status = canary_status()
    status["pending"] = {"version": "1.2.0", "stage": "AwaitingApproval", "since": stamp(1)}
    put_status(namespace, app, status)
    proc = cli(namespace, "promote", app, check=False)
    assert proc.returncode == 2
    assert "1.2.0 is AwaitingApproval" in proc.stderr
    assert "modelapp.dev/promote" not in annotations(namespace, app)
    # Named explicitly, the version is passed on: the operator decides.
    cli(namespace, "abort", app, "--version", "1.2.0")
    assert annotations(namespace, app)["modelapp.dev/abort"] == "1.2.0"


def test_status_of_a_modelapp_that_is_not_there(namespace: str, crds: None) -> None:
    proc = cli(namespace, "status", "nope", check=False)
    assert proc.returncode == 1
    assert "nope" in proc.stderr
    assert "Traceback" not in proc.stderr
