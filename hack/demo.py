"""`make demo`: the whole story on the local test bed.

A data scientist publishes diabetes v1 to blob storage (Azurite); the platform applies a ModelApp with
Image packaging; on the test bed's real node a Kaniko Job bakes the model into an image FROM the scorer
base, pushes it to the local registry, a contract Job tests it, and the Deployment runs it by digest;
a prediction goes through the Service. v1.1.0 (retrained) is published and rolls out by itself, and the
answer changes. `kubectl get modelapps` tells the story.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / ".local"
KUBECONFIG = LOCAL / "kubeconfig"
BIN = Path(sys.executable).parent
NAMESPACE = "modelapp-demo"
PROD = "modelapp-demo-prod"  # `make demo-stages`: production follows the demo namespace (QA)
CONTAINER = "demo-models"


def testbed_env() -> dict[str, str]:
    """What `make cluster-up` wrote to .local/testbed.env: the real node's addresses and images."""
    env: dict[str, str] = {}
    for line in (LOCAL / "testbed.env").read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
    return env


TESTBED = testbed_env()
# Azurite's documented development account (public, not a secret), at the address pods reach too.
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    f"BlobEndpoint={TESTBED['MODELAPP_TESTBED_BLOB_URL']};"
)
ENV = {
    **os.environ,
    "KUBECONFIG": str(KUBECONFIG),
    "MODELAPP_CONNECTION_STRING": AZURITE,
    # The operator's images on the test bed: the scorer, fetch and Kaniko images built here.
    "MODELAPP_OPERATOR_FETCH_IMAGE": TESTBED["MODELAPP_TESTBED_OPERATOR_IMAGE"],
    "MODELAPP_OPERATOR_SCORER_IMAGE": TESTBED["MODELAPP_TESTBED_BASE_IMAGE"],
    "MODELAPP_OPERATOR_BASE_IMAGE": TESTBED["MODELAPP_TESTBED_BASE_IMAGE"],
    "MODELAPP_OPERATOR_KANIKO_IMAGE": TESTBED["MODELAPP_TESTBED_KANIKO_IMAGE"],
    # Azurite is no Azure blob host: the operator sends it credentials only because it is allowed here.
    "MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS": urlsplit(TESTBED["MODELAPP_TESTBED_BLOB_URL"]).netloc,
}
ROW = [0.038, 0.050, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]


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


def status(namespace: str = NAMESPACE) -> dict[str, Any]:
    out = run("kubectl", "-n", namespace, "get", "modelapp", "diabetes", "-o", "json", quiet=True)
    result: dict[str, Any] = json.loads(out).get("status") or {}
    return result


def wait(
    what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120, namespace: str = NAMESPACE
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(namespace)
        if predicate(st):
            return st
        time.sleep(0.5)
    sys.exit(f"demo: timed out waiting for {what}; operator log: {LOCAL / 'logs' / 'demo-operator.log'}")


def serving(st: dict[str, Any]) -> str:
    return str((st.get("servingVersion") or {}).get("version", ""))


def through_the_service(version: str) -> None:
    """A prediction through the app's ClusterIP Service, from the host (routed into the node), once the
    pods of `version` answer it (kube-proxy drops the old pods from the Service a moment after they go)."""
    ip = kubectl("get", "service", "diabetes", "-o", "jsonpath={.spec.clusterIP}", quiet=True)
    base = f"http://{ip}"
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": [ROW]}]})
    print(f"$ curl -X POST {base}/v2/models/diabetes/infer -d '{body}'")
    for _ in range(120):  # kube-proxy programs a new Service a moment after its pods are Ready
        try:
            req = urllib.request.Request(  # noqa: S310 - the test bed's Service network
                f"{base}/v2/models/diabetes/infer",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - the test bed's Service network
                answer = json.loads(r.read())
            if answer.get("model_version") == version:
                break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        sys.exit(f"demo: {base} did not answer with {version}")
    print(json.dumps({k: answer[k] for k in ("model_name", "model_version", "outputs")}))


def show_build(version: str) -> None:
    """The Kaniko Job's log and the image it pushed, by digest."""
    jobs = json.loads(
        kubectl("get", "jobs", "-l", "app.kubernetes.io/component=build", "-o", "json", quiet=True)
    )
    job = next(
        j for j in jobs["items"] if j["metadata"]["annotations"].get("modelapp.dev/model-version") == version
    )
    name = job["metadata"]["name"]
    log = kubectl("logs", f"job/{name}", "-c", "kaniko", quiet=True).splitlines()
    print(f"$ kubectl logs job/{name} -c kaniko   # (last lines of {len(log)})")
    print("\n".join(log[-8:]))
    kubectl("logs", f"job/{name}", "-c", "fetch-model")


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


def fresh_container() -> None:
    """The demo starts from an empty blob container (a previous run's versions would be picked up)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    svc = BlobServiceClient.from_connection_string(AZURITE)
    try:
        svc.delete_container(CONTAINER)
    except ResourceNotFoundError:
        return
    for _ in range(60):  # Azurite deletes a container asynchronously; re-creating it waits for that
        if not any(c.name == CONTAINER for c in svc.list_containers(name_starts_with=CONTAINER)):
            return
        time.sleep(0.5)


def start_operator() -> subprocess.Popen[bytes]:
    log = (LOCAL / "logs" / "demo-operator.log").open("w")
    cmd = [
        str(BIN / "modelapp-operator"),
        "-n",
        NAMESPACE,
        "-n",
        PROD,
        "--liveness",
        "",
        "--log-format",
        "plain",
    ]
    return subprocess.Popen(
        [*cmd, "--metrics-port", "0"], env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def create_secrets() -> None:
    kubectl(
        "create", "secret", "generic", "blob-creds", f"--from-literal=connectionString={AZURITE}", quiet=True
    )
    registry = TESTBED["MODELAPP_TESTBED_REGISTRY"]
    config = json.dumps({"auths": {registry: {}}})  # the test bed's registry takes no credentials
    kubectl(
        "create", "secret", "generic", "registry-push", "--type=kubernetes.io/dockerconfigjson",
        f"--from-literal=.dockerconfigjson={config}", quiet=True,
    )  # fmt: skip
    print("(secret/blob-creds and secret/registry-push created; their values are never printed or logged)")


def roll_out(version: str) -> dict[str, Any]:
    seen: set[tuple[str, str]] = set()

    def rolled(st: dict[str, Any]) -> bool:
        pending = st.get("pending") or {}
        key = (pending.get("version", ""), pending.get("stage", ""))
        if pending and key not in seen:
            seen.add(key)
            print(f"   {key[0]}: {key[1]}", flush=True)
        return serving(st) == version

    st = wait(f"{version} to serve", rolled, timeout=900)
    for h in st.get("history", [])[-5:]:
        took = f" in {h['durationSeconds']}s" if "durationSeconds" in h else ""
        print(f"   {h['at']}  {h['event']:<15} {h['version']}{took}")
    return st


def stages(work: Path, train: list[str]) -> None:
    """QA (the demo namespace) → prod: a version soaks in QA, waits for approval, reaches prod by digest."""
    step(f"Production ({PROD}) follows QA: no store, no build; QA allows it with an annotation")
    kubectl("annotate", "modelapp", "diabetes", f"modelapp.dev/followers={PROD}", "--overwrite")
    manifest = (REPO / "examples" / "stages" / "prod.yaml").read_text()
    print(manifest)
    run("kubectl", "-n", PROD, "apply", "-f", "-", stdin=manifest)
    prod = wait("prod to serve what QA serves", lambda st: bool(serving(st)), 300, PROD)
    print(
        f"   prod serves {serving(prod)} from {prod['servingVersion'].get('source')}: {prod['servingVersion']['image']}"
    )

    step("Version 1.2.0 is published: QA builds, verifies and serves it; prod lets it soak in QA")
    run(*train, "--out", str(work / "v3"), "--version", "1.2.0", "--alpha", "0.02")
    publish(work / "v3", "1.2.0")
    qa = roll_out("1.2.0")
    for stage in ("Soaking", "AwaitingApproval"):
        st = wait(
            f"prod: 1.2.0 {stage}", lambda s, g=stage: (s.get("pending") or {}).get("stage") == g, 300, PROD
        )
        p = st["pending"]
        print(
            f"   prod: {p['version']} {p['stage']} since {p.get('since')} (soak until {p.get('soakUntil', '-')})"
        )

    step("A person approves 1.2.0 for production: it rolls there with QA's image, by digest")
    run(str(BIN / "modelapp"), "approve", "diabetes", "-n", PROD, "--version", "1.2.0")
    prod = wait("prod to serve 1.2.0", lambda st: serving(st) == "1.2.0", 300, PROD)
    print(f"   QA   image: {qa['servingVersion']['image']}")
    print(f"   prod image: {prod['servingVersion']['image']}")
    print(
        f"   build Jobs in {PROD}: {run('kubectl', '-n', PROD, 'get', 'jobs', '-o', 'name', quiet=True) or 'none'}"
    )
    run(str(BIN / "kubectl-modelapp"), "status", "diabetes", "-n", PROD)


def main() -> None:
    # SIGTERM (a time-out, a CI cancel) unwinds like Ctrl-C, so the operator process is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("demo: terminated"))
    work = Path(tempfile.mkdtemp(prefix="modelapp-demo-"))
    run("kubectl", "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"), quiet=True)
    run("kubectl", "wait", "--for=condition=Established", "crd/modelapps.modelapp.dev", quiet=True)
    # A previous demo's ModelApps keep kopf's finalizer and their operator is gone: release them first.
    for ns in (NAMESPACE, PROD):
        for app in run(
            "kubectl", "-n", ns, "get", "modelapps", "-o", "name", check=False, quiet=True
        ).split():
            patch = '{"metadata":{"finalizers":null}}'
            run("kubectl", "-n", ns, "patch", app, "--type", "merge", "-p", patch, quiet=True)
        run("kubectl", "delete", "namespace", ns, "--ignore-not-found", "--wait=true", quiet=True)
        run("kubectl", "create", "namespace", ns, quiet=True)
    run("kubectl", "get", "nodes", "-o", "wide")

    step("A data scientist trains the diabetes model and publishes version 1.0.0 to blob storage (Azurite)")
    train = [sys.executable, str(REPO / "examples" / "diabetes" / "train.py")]
    run(*train, "--out", str(work / "v1"), "--version", "1.0.0")
    fresh_container()
    publish(work / "v1", "1.0.0", "--create-container")

    step("The operator starts (watching the demo namespace) with the test bed's scorer and Kaniko images")
    operator = start_operator()
    try:
        step("The platform team stores the credentials in Secrets and applies a ModelApp (Image packaging)")
        create_secrets()
        manifest = (REPO / "examples" / "diabetes" / "modelapp.yaml").read_text()
        print(manifest)
        kubectl("apply", "-f", "-", stdin=manifest)
        st = roll_out("1.0.0")

        step(
            "Kaniko built the image in a pod on the real node and pushed it; the Deployment runs it by digest"
        )
        show_build("1.0.0")
        print(f"   serving image: {st['servingVersion']['image']}")
        kubectl("get", "deployment,pods,service", "-l", "modelapp.dev/name=diabetes", "-o", "wide")

        step("A prediction through the Service, answered by the pods")
        through_the_service("1.0.0")

        step("Version 1.1.0 (retrained, alpha 0.05) is published: rebuilt, verified and rolled out by itself")
        run(*train, "--out", str(work / "v2"), "--version", "1.1.0", "--alpha", "0.05")
        publish(work / "v2", "1.1.0")
        st = roll_out("1.1.0")
        print(f"   serving image: {st['servingVersion']['image']}")
        through_the_service("1.1.0")
        kubectl(
            "get", "events", "--field-selector", "involvedObject.kind=ModelApp", "--sort-by=.lastTimestamp"
        )

        step("kubectl get modelapps")
        kubectl("get", "modelapps", "-o", "wide")
        if "--stages" in sys.argv[1:]:
            stages(work, train)
            run("kubectl", "get", "modelapps", "-A", "-o", "wide")
    finally:
        os.killpg(operator.pid, signal.SIGTERM)
        operator.wait(timeout=30)
    print(
        f"\nThe test bed is still up: source {LOCAL / 'testbed.env'}\n"
        f"Operator log: {LOCAL / 'logs' / 'demo-operator.log'}. Stop everything with: make cluster-down"
    )


if __name__ == "__main__":
    main()
