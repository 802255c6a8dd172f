"""Operator scale benchmark: N ModelApps sharing one blob container, on the local test bed.

    .venv/bin/python bench/operator_scale.py --n 100 --n 1000

For each N it runs our operator and, side by side, a no-op kopf operator watching the same objects, and
prints: blob API calls per poll cycle, operator CPU seconds per cycle and RSS (ours and the no-op's), time
from apply to all Ready, and time from publishing a version to the Deployment being patched.
Targets: calls per cycle <= distinct containers (+1 read per changed version), RSS <= 2x the no-op
operator, detection within pollInterval + 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from modelapp_bundle import manifest_for_directory  # noqa: E402
from modelapp_operator.store import BlobCredentials, store_from_credentials  # noqa: E402
from operator_kit import on_kwok  # noqa: E402
from testbed import KUBECONFIG, Azurite, cluster, kubectl  # noqa: E402

BIN = Path(sys.executable).parent
POLL = 10.0
NOOP_OPERATOR = """
import kopf

@kopf.on.event("modelapp.dev", "v1alpha1", "modelapps")
def seen(**_):
    pass
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))  # type: ignore[union-attr]
    return cpu, rss_kb * 1024


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("modelapp_store_calls_total", "modelapp_store_polls_total")):
            name, value = line.rsplit(" ", 1)
            key = name.split("{")[0] + ("{error}" if 'result="error"' in name else "")
            out[key] = out.get(key, 0.0) + float(value)
    return out


async def publish_all(
    azurite: Azurite, container: str, bundle: Path, prefixes: list[str], version: str
) -> None:
    store = store_from_credentials(
        None, container, BlobCredentials(connection_string=azurite.connection_string)
    )
    manifest = manifest_for_directory(bundle, version=version, name="diabetes")
    sem = asyncio.Semaphore(32)

    async def one(prefix: str) -> None:
        async with sem:
            await store.upload_version(prefix, bundle, manifest, overwrite=True)

    async with store:
        await store.ensure_container()
        await asyncio.gather(*(one(p) for p in prefixes))


def modelapps(n: int, container: str) -> str:
    items = []
    for i in range(n):
        items.append(
            {
                "apiVersion": "modelapp.dev/v1alpha1",
                "kind": "ModelApp",
                "metadata": {"name": f"app-{i}"},
                "spec": {
                    "model": {
                        "source": {
                            "azureBlob": {
                                "accountUrl": "http://127.0.0.1:10000/devstoreaccount1",
                                "container": container,
                                "prefix": f"m{i}/",
                                "auth": {"secretRef": {"name": "blob-creds"}},
                            }
                        },
                        "pollInterval": f"{int(POLL)}s",
                    },
                    "packaging": "InitContainer",
                    "serve": on_kwok({"replicas": 1, "image": "registry.example/scoring-service:bench"}),
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def count_ready(ns: str) -> int:
    out = kubectl("-n", ns, "get", "modelapps", "-o", "json").stdout
    n = 0
    for item in json.loads(out)["items"]:
        for c in (item.get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True" and c["reason"] == "Serving":
                n += 1
    return n


def deployment_version(ns: str, name: str) -> str:
    out = kubectl(
        "-n",
        ns,
        "get",
        "deployment",
        name,
        "-o",
        "jsonpath={.spec.template.metadata.annotations.modelapp\\.dev/model-version}",
        check=False,
    ).stdout
    return out.strip()


@dataclass
class Result:
    n: int
    calls_per_cycle: float
    cpu_per_cycle: float
    rss: int
    noop_rss: int
    apply_to_ready: float
    detection: list[float]


def run_one(n: int, azurite: Azurite, bundle: Path, workdir: Path) -> Result:
    ns = f"bench-{n}-{int(time.time()) % 100000}"
    container = f"bench-{n}-{int(time.time()) % 100000}"
    prefixes = [f"m{i}/" for i in range(n)]
    print(f"\n== N = {n}: publishing 1.0.0 under {n} prefixes of container {container}", flush=True)
    asyncio.run(publish_all(azurite, container, bundle, prefixes, "1.0.0"))
    kubectl("create", "namespace", ns)
    kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "blob-creds",
        f"--from-literal=connectionString={azurite.connection_string}",
    )
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    port = free_port()
    ours = subprocess.Popen(
        [
            str(BIN / "modelapp-operator"),
            "-n",
            ns,
            "--liveness",
            "",
            "--metrics-port",
            str(port),
            "--log-format",
            "plain",
        ],
        env={
            **env,
            "MODELAPP_OPERATOR_RESYNC_SECONDS": "3600",
            # Azurite is no Azure blob host: allowed explicitly to receive the Secret's key.
            "MODELAPP_OPERATOR_ALLOWED_ACCOUNT_HOSTS": "127.0.0.1:10000",
        },
        stdout=(workdir / f"operator-{n}.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    noop_file = workdir / "noop.py"
    noop_file.write_text(NOOP_OPERATOR)
    noop = subprocess.Popen(
        [str(BIN / "kopf"), "run", "--standalone", "-n", ns, "--log-format", "plain", "-q", str(noop_file)],
        env=env,
        stdout=(workdir / f"noop-{n}.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(3)
        start = time.monotonic()
        for chunk in range(0, n, 200):
            doc = json.loads(modelapps(n, container))
            doc["items"] = doc["items"][chunk : chunk + 200]
            kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(doc))
        while (ready := count_ready(ns)) < n:
            if time.monotonic() - start > 1800:
                raise SystemExit(f"only {ready}/{n} Ready after 30 minutes")
            time.sleep(2)
        apply_to_ready = time.monotonic() - start
        print(f"   all {n} Ready after {apply_to_ready:.1f}s", flush=True)

        # Steady state: count blob calls and CPU over several poll cycles with nothing changing.
        time.sleep(POLL)
        m0, (cpu0, _) = scrape(port), proc_stats(ours.pid)
        time.sleep(POLL * 3 + 1)
        m1, (cpu1, rss) = scrape(port), proc_stats(ours.pid)
        polls = m1["modelapp_store_polls_total"] - m0["modelapp_store_polls_total"]
        calls = m1["modelapp_store_calls_total"] - m0["modelapp_store_calls_total"]
        _, noop_rss = proc_stats(noop.pid)

        # Detection: publish 2.0.0 for a few apps, time until their Deployments carry it.
        detection = []
        for i in (0, n // 2, n - 1):
            asyncio.run(publish_all(azurite, container, bundle, [f"m{i}/"], "2.0.0"))
            t0 = time.monotonic()
            while deployment_version(ns, f"app-{i}") != "2.0.0":
                if time.monotonic() - t0 > POLL * 6:
                    raise SystemExit(f"app-{i} not patched within {POLL * 6}s")
                time.sleep(0.1)
            detection.append(time.monotonic() - t0)
        return Result(
            n, calls / max(polls, 1), (cpu1 - cpu0) / max(polls, 1), rss, noop_rss, apply_to_ready, detection
        )
    finally:
        # Delete while our operator still runs: it removes its finalizer from each ModelApp.
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and kubectl("get", "namespace", ns, check=False).returncode == 0:
            time.sleep(2)
        for p in (ours, noop):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, action="append", help="number of ModelApps (repeatable); default 100 and 1000"
    )
    args = parser.parse_args()
    sizes = args.n or [100, 1000]
    cluster("up")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    workdir = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    bundle = workdir / "diabetes"
    subprocess.run(
        [sys.executable, str(REPO / "examples/diabetes/train.py"), "--out", str(bundle)],
        check=True,
        capture_output=True,
    )
    azurite = Azurite()
    results = [run_one(n, azurite, bundle, workdir) for n in sizes]

    print("\nModelApps sharing one container (pollInterval 10s), our operator vs a no-op kopf operator")
    print(
        f"{'N':>6} {'calls/cycle':>12} {'CPU s/cycle':>12} {'RSS MiB':>8} {'no-op MiB':>10} {'RSS ratio':>10} "
        f"{'apply→Ready s':>14} {'publish→patched s (max)':>24}"
    )
    for r in results:
        print(
            f"{r.n:>6} {r.calls_per_cycle:>12.2f} {r.cpu_per_cycle:>12.3f} {r.rss / 2**20:>8.1f} "
            f"{r.noop_rss / 2**20:>10.1f} {r.rss / r.noop_rss:>10.2f} {r.apply_to_ready:>14.1f} "
            f"{max(r.detection):>24.2f}"
        )
    print(f"targets: calls/cycle <= 1 (one container), RSS ratio <= 2, publish→patched <= {POLL + 2:.0f}s")
    print(f"logs: {workdir}")


if __name__ == "__main__":
    main()
