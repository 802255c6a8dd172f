"""`make demo`: the whole story on the local test bed.

A data scientist publishes diabetes v1 to blob storage (Azurite); the platform applies a ModelApp; the
operator rolls it out; v2 is published and rolls out by itself; `kubectl get modelapps` tells the story.
The scoring service then answers a real prediction on this machine (KWOK pods run no containers).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / ".local"
KUBECONFIG = LOCAL / "kubeconfig"
BIN = Path(sys.executable).parent
NAMESPACE = "modelapp-demo"
CONTAINER = "demo-models"
# Azurite's documented development account: public, not a secret.
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
ENV = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "MODELAPP_CONNECTION_STRING": AZURITE}


def step(text: str) -> None:
    print(f"\n\033[1;36m==> {text}\033[0m", flush=True)


def run(*cmd: str, check: bool = True, quiet: bool = False, stdin: str | None = None) -> str:
    if not quiet:
        print(f"$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, env=ENV, text=True, capture_output=True, input=stdin, timeout=300)
    if not quiet and proc.stdout.strip():
        print(proc.stdout.rstrip(), flush=True)
    if check and proc.returncode != 0:
        sys.exit(f"demo: `{' '.join(cmd)}` failed:\n{proc.stderr}")
    return proc.stdout


def kubectl(*args: str, **kw: Any) -> str:
    return run("kubectl", "-n", NAMESPACE, *args, **kw)


def status() -> dict[str, Any]:
    out = kubectl("get", "modelapp", "diabetes", "-o", "json", quiet=True)
    result: dict[str, Any] = json.loads(out).get("status") or {}
    return result


def wait(what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status()
        if predicate(st):
            return st
        time.sleep(0.5)
    sys.exit(f"demo: timed out waiting for {what}; operator log: {LOCAL / 'logs' / 'demo-operator.log'}")


def serving(st: dict[str, Any]) -> str:
    return str((st.get("servingVersion") or {}).get("version", ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def score_for_real(bundle_root: Path) -> None:
    """Fetch what the operator serves, exactly as the init container does, and ask the real scorer."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "scoring-service"), "serve", "--model-dir", str(bundle_root), "--port", str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        print(f"$ curl {base}/version")
        with urllib.request.urlopen(f"{base}/version", timeout=5) as r:  # noqa: S310 - loopback
            print(r.read().decode())
        body = json.dumps(
            {"data": [[0.038, 0.050, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]]}
        )
        print(f"$ curl -X POST {base}/score -d '{body}'")
        req = urllib.request.Request(  # noqa: S310 - loopback
            f"{base}/score", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback
            print(r.read().decode())
    finally:
        server.terminate()
        server.wait(timeout=10)


def publish(bundle: Path, version: str, *extra: str) -> None:
    run(
        str(BIN / "modelapp"),
        "publish",
        str(bundle),
        "--container",
        CONTAINER,
        "--prefix",
        "diabetes/",
        "--version",
        version,
        "--force",
        *extra,
    )


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="modelapp-demo-"))
    run("kubectl", "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"), quiet=True)
    run("kubectl", "wait", "--for=condition=Established", "crd/modelapps.modelapp.dev", quiet=True)
    run("kubectl", "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", quiet=True)
    run("kubectl", "create", "namespace", NAMESPACE, quiet=True)

    step("A data scientist trains the diabetes model and publishes version 1.0.0 to blob storage (Azurite)")
    bundle = work / "diabetes"
    run(
        sys.executable,
        str(REPO / "examples" / "diabetes" / "train.py"),
        "--out",
        str(bundle),
        "--version",
        "1.0.0",
    )
    publish(bundle, "1.0.0", "--create-container")

    step("The operator starts (watching the demo namespace)")
    log = (LOCAL / "logs" / "demo-operator.log").open("w")
    operator = subprocess.Popen(
        [
            str(BIN / "modelapp-operator"),
            "-n",
            NAMESPACE,
            "--liveness",
            "",
            "--log-format",
            "plain",
            "--metrics-port",
            "0",
        ],
        env=ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        step("The platform team stores the blob credentials in a Secret and applies a ModelApp")
        kubectl(
            "create",
            "secret",
            "generic",
            "blob-creds",
            f"--from-literal=connectionString={AZURITE}",
            quiet=True,
        )
        print("(secret/blob-creds created from the connection string; it is never printed or logged)")
        manifest = (REPO / "examples" / "diabetes" / "modelapp.yaml").read_text()
        print(manifest)
        kubectl("apply", "-f", "-", stdin=manifest)
        kubectl("wait", "--for=condition=Ready", "modelapp/diabetes", "--timeout=120s")
        kubectl("get", "modelapps")
        kubectl("get", "deployment,pods,service", "-l", "modelapp.dev/name=diabetes")

        step("Version 1.1.0 is published: the operator notices it and rolls it out by itself")
        publish(bundle, "1.1.0")
        seen: set[str] = set()

        def rolled(st: dict[str, Any]) -> bool:
            pending = st.get("pending")
            if pending and pending.get("version") not in seen:
                seen.add(pending["version"])
                print(f"   rolling out {pending['version']} (stage {pending['stage']})", flush=True)
            return serving(st) == "1.1.0"

        st = wait("1.1.0 to serve", rolled)
        for h in st.get("history", [])[-4:]:
            took = f" in {h['durationSeconds']}s" if "durationSeconds" in h else ""
            print(f"   {h['at']}  {h['event']:<15} {h['version']}{took}")
        kubectl(
            "get", "events", "--field-selector", "involvedObject.kind=ModelApp", "--sort-by=.lastTimestamp"
        )

        step("The scoring service that the pods run, answering for real on this machine")
        served = work / "served"
        run(
            str(BIN / "modelapp"),
            "fetch",
            "--container",
            CONTAINER,
            "--prefix",
            "diabetes/",
            "--version",
            "1.1.0",
            "--out",
            str(served / "diabetes"),
        )
        score_for_real(served)

        step("kubectl get modelapps")
        kubectl("get", "modelapps", "-o", "wide")
    finally:
        os.killpg(operator.pid, signal.SIGTERM)
        operator.wait(timeout=30)
    print(
        f"\nThe test bed is still up: export KUBECONFIG={KUBECONFIG}\n"
        f"Operator log: {LOCAL / 'logs' / 'demo-operator.log'}. Stop everything with: make cluster-down"
    )


if __name__ == "__main__":
    main()
