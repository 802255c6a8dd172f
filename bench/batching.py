"""What adaptive batching buys: one MLP scorer under 64 concurrent clients, batching off, then on.

    .venv/bin/python bench/batching.py [--duration 10] [--warmup 2] [--connections 64]
                                       [--max-batch-size 32] [--max-delay-ms 2] [--dims 256,512,512,10]

Builds an MLP (MatMul+Add layers, Relu between, random numpy weights) with onnx.helper into a bundle,
starts the scorer pinned to core 0 (`taskset`) with batching off, then with SCORING_BATCH_MAX_SIZE /
SCORING_BATCH_MAX_DELAY_MS, and drives each from this process (pinned to core 1) with `--connections`
keep-alive HTTP/1.1 connections sending 1-row OIP JSON requests back to back (asyncio, uvloop). After
the warm-up it measures req/s, p50 and p99, the server's CPU per request and how much of it is
onnxruntime, and the batch-size histogram. Work files go to bench/.work/batching/.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
from modelapp_operator import figures

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "batching"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_shadow = _load("shadow_bench", REPO / "bench" / "shadow.py")  # its keep-alive client connection
_run = _shadow._run  # bench/scorer/run.py: Running (taskset, readiness, log), free_port, cpu_seconds
# The tests' MLP builder (onnx.helper, random numpy weights).
_models = _load("scoring_models", REPO / "tests" / "unit" / "scoring" / "scoring_models.py")


@dataclass
class Arm:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float
    """Server CPU time (user + system) per answered request during the measured window."""
    ort_us_per_request: float
    """Of which inside onnxruntime (scoring_inference_duration_seconds_sum / requests)."""
    runs: float
    mean_rows: float
    max_rows_bucket: str
    wait_p99_ms: float | None
    """p99 of scoring_batch_wait_seconds: arrival in the batcher to its run's start (None: unbatched)."""


def log(msg: str) -> None:
    print(f"[batching-bench] {msg}", flush=True)


def write_bundle(dims: list[int]) -> Path:
    from modelapp_bundle import write_manifest

    bundle = WORK / "models" / "mlp"
    bundle.mkdir(parents=True, exist_ok=True)
    model = _models.mlp_model(tuple(dims))
    onnx.checker.check_model(model)
    onnx.save(model, bundle / "model.onnx")
    write_manifest(bundle, "mlp", "1")  # batching comes from the settings in the "on" arm
    weights = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    log(f"MLP {'→'.join(map(str, dims))}: {weights:,} weights")
    return bundle


def request(port: int, width: int) -> bytes:
    row = np.random.default_rng(1).standard_normal(width).astype(np.float32)
    body = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, width], "data": row.tolist()}]}
    )
    head = (
        f"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def metric(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def grown(before: str, after: str) -> list[figures.Sample]:
    """What every counter and histogram bucket counted between two scrapes."""
    was = {(n, tuple(sorted(labels.items()))): v for n, labels, v in figures.samples([before])}
    return [
        (n, labels, v - was.get((n, tuple(sorted(labels.items()))), 0.0))
        for n, labels, v in figures.samples([after])
    ]


def scrape(metrics_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def drive(
    port: int, body: bytes, connections: int, warmup: float, duration: float
) -> tuple[list[float], int]:
    now = time.perf_counter()
    latencies: list[float] = []
    errors = await asyncio.gather(
        *(
            _shadow.connection(port, body, now + warmup + duration, now + warmup, latencies)
            for _ in range(connections)
        )
    )
    return latencies, sum(errors)


def measure(name: str, env: dict[str, str], bundle: Path, args: argparse.Namespace) -> Arm:
    port, metrics_port = _run.free_port(), _run.free_port()
    server = _run.Running(
        [sys.executable, "-m", "scoring_service", "serve", "--model-dir", str(bundle), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        {"SCORING_LOG_LEVEL": "warning", "SCORING_METRICS_PORT": str(metrics_port),
         "SCORING_MAX_CONCURRENT_REQUESTS": str(2 * args.connections), **env},
        f"http://127.0.0.1:{port}/v2/health/ready", args.server_core, f"batching-{name}",
    )  # fmt: skip
    try:
        body = request(port, args.dims[0])
        asyncio.run(drive(port, body, args.connections, args.warmup, 0))  # warm-up, not recorded
        before, cpu_before = scrape(metrics_port), _run.cpu_seconds(server.proc.pid)
        latencies, errors = asyncio.run(drive(port, body, args.connections, 0, args.duration))
        after, cpu_after = scrape(metrics_port), _run.cpu_seconds(server.proc.pid)
    finally:
        server.stop()
    return summarise(name, latencies, errors, args.duration, before, after, cpu_after - cpu_before)


def summarise(
    name: str, latencies: list[float], errors: int, duration: float, before: str, after: str, cpu: float
) -> Arm:
    latencies.sort()
    n = len(latencies)

    def delta(series: str) -> float:
        return metric(after, series) - metric(before, series)

    labels = '{model="mlp",version="1"}'
    runs, rows = delta(f"scoring_batch_rows_count{labels}"), delta(f"scoring_batch_rows_sum{labels}")
    buckets = re.findall(
        r'^scoring_batch_rows_bucket\{le="([^"]+)",model="mlp",version="1"\} (\S+)$', after, re.MULTILINE
    )
    top = next(
        (le for le, count in buckets if float(count) >= metric(after, f"scoring_batch_rows_count{labels}")),
        "-",
    )
    wait = figures.quantile(0.99, grown(before, after), "scoring_batch_wait_seconds", lambda _: True)
    arm = Arm(
        name, rps=n / duration, p50_ms=latencies[n // 2] * 1000, p99_ms=latencies[int(n * 0.99)] * 1000,
        errors=errors, cpu_us_per_request=cpu / n * 1e6,
        ort_us_per_request=delta(f"scoring_inference_duration_seconds_sum{labels}") / n * 1e6,
        runs=runs, mean_rows=rows / runs if runs else 1.0, max_rows_bucket=top if runs else "-",
        wait_p99_ms=None if wait is None else wait * 1000,
    )  # fmt: skip
    log(f"{name:3} {arm.rps:8.0f} req/s  p50 {arm.p50_ms:6.2f} ms  p99 {arm.p99_ms:6.2f} ms  errors {errors}  "
        f"server CPU {arm.cpu_us_per_request:5.0f} us/req (onnxruntime {arm.ort_us_per_request:4.0f})  "
        f"rows/run {arm.mean_rows:5.1f} (all <= {arm.max_rows_bucket})")  # fmt: skip
    return arm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per arm")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per arm before measuring")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    parser.add_argument("--dims", type=lambda s: [int(d) for d in s.split(",")], default=[256, 512, 512, 10])
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", type=int, default=1)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    bundle = write_bundle(args.dims)
    if (os.cpu_count() or 1) > args.client_core:
        os.sched_setaffinity(0, {args.client_core})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.connections} connections")
    off = measure("off", {"SCORING_BATCH_MAX_SIZE": "0"}, bundle, args)
    on = measure(
        "on",
        {
            "SCORING_BATCH_MAX_SIZE": str(args.max_batch_size),
            "SCORING_BATCH_MAX_DELAY_MS": str(args.max_delay_ms),
        },
        bundle,
        args,
    )
    report(off, on, args)


def report(off: Arm, on: Arm, args: argparse.Namespace) -> None:
    ratio = on.rps / off.rps
    run_ms = on.ort_us_per_request * on.mean_rows / 1000  # one batch's onnxruntime time
    bound = args.max_delay_ms + run_ms
    log(f"on/off: {ratio:.2f}x req/s, p50 {on.p50_ms / off.p50_ms:.2f}x, p99 {on.p99_ms / off.p99_ms:.2f}x")
    # On a core other processes share, CFS gives a process more of it per runnable thread (the batcher
    # thread is one more): server CPU per request is the figure that does not depend on that share.
    for arm in (off, on):
        log(f"{arm.name:3} used {arm.rps * arm.cpu_us_per_request / 1e4:.0f}% of its core")
    log(f"off/on server CPU per request: {off.cpu_us_per_request / on.cpu_us_per_request:.2f}x")
    log(f"{'PASS' if ratio >= 3 else 'MISS'}  req/s >= 3x with batching ({ratio:.2f}x)")
    log(f"{'PASS' if on.p99_ms <= bound else 'MISS'}  p99 <= max delay + one batch's run "
        f"({on.p99_ms:.2f} ms vs {args.max_delay_ms:g} + {run_ms:.2f} ms)")  # fmt: skip
    # The same bound on what batching adds: the wait in the batcher (HTTP queueing of 64 closed-loop
    # clients on one core is in the end-to-end p99 with or without batching).
    if on.wait_p99_ms is not None:
        ok = on.wait_p99_ms <= bound
        log(f"{'PASS' if ok else 'MISS'}  p99 wait in the batcher <= max delay + one batch's run "
            f"({on.wait_p99_ms:.2f} ms vs {bound:.2f} ms)")  # fmt: skip
    results = {
        "off": off.__dict__,
        "on": on.__dict__,
        "ratio": ratio,
        "args": vars(args),
    }
    (WORK / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
