"""What shadow mirroring costs the serving scorer: the same load with mirroring off, then on.

    .venv/bin/python bench/shadow.py [--duration 10] [--connections 8] [--sample 0.2] [--rounds 2]

Starts a serving scorer (pinned to core 0) and a candidate scorer (core 1) on loopback, both serving
the diabetes example, and drives the serving one with a fixed number of keep-alive connections from
a small asyncio client (core 1) sending the same 1-row OIP request. Arms alternate, off then on,
`--rounds` times; mirroring is toggled through the configuration file, as the operator does.
Work files go to bench/.work/shadow/.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "shadow"
ROW = [0.038, 0.050, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
RELOAD = 0.2


def _scorer_bench() -> Any:
    """bench/scorer/run.py, for its Result and free_port."""
    spec = importlib.util.spec_from_file_location("scorer_bench", REPO / "bench" / "scorer" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_run = _scorer_bench()
Arm, free_port, cpu_seconds = _run.Result, _run.free_port, _run.cpu_seconds


def log(msg: str) -> None:
    print(f"[shadow-bench] {msg}", flush=True)


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > core else []


def start_scorer(
    model_dir: Path, core: int, shadow_file: Path, name: str
) -> tuple[subprocess.Popen[bytes], int, int]:
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "SCORING_METRICS_PORT": str(metrics_port),
        "SCORING_GRPC_PORT": "0",  # two scorers on one host: off rather than both on 8081
        "SCORING_SHADOW_CONFIG": str(shadow_file),
        "SCORING_SHADOW_RELOAD_SECONDS": str(RELOAD),
        "SCORING_LOG_FORMAT": "text",
    }
    command = [*pinned(core), sys.executable, "-m", "scoring_service", "serve", "--model-dir", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=(WORK / f"{name}.log").open("wb"), stderr=subprocess.STDOUT
    )
    wait_ready(process, port, WORK / f"{name}.log")
    return process, port, metrics_port


def wait_ready(process: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the scorer did not start: see {log_path}") from None
            time.sleep(0.1)


def request_bytes(port: int) -> bytes:
    body = orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": ROW}]})
    head = (
        f"POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def connection(port: int, request: bytes, until: float, record_from: float, out: list[float]) -> int:
    """One keep-alive connection sending `request` back to back; latencies after `record_from`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    while (start := time.perf_counter()) < until:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        if start >= record_from:
            out.append(time.perf_counter() - start)
            errors += head[9:12] != b"200"
    writer.close()
    return errors


async def drive(
    port: int, connections: int, warmup: float, duration: float, on_window: Callable[[], None]
) -> tuple[list[float], int]:
    request = request_bytes(port)
    now = time.perf_counter()
    asyncio.get_running_loop().call_later(warmup, on_window)  # the measured window begins
    latencies: list[float] = []
    errors = await asyncio.gather(
        *(
            connection(port, request, now + warmup + duration, now + warmup, latencies)
            for _ in range(connections)
        )
    )
    return latencies, sum(errors)


def measure(name: str, port: int, pid: int, args: argparse.Namespace) -> Any:
    """One arm; besides the client's figures, the serving scorer's CPU time per request and its share
    of its core over the measured window (the candidate shares core 1 with this client: a slower
    client shows in req/s but not in the server's CPU per request)."""
    cpu_at_start: list[float] = []
    latencies, errors = asyncio.run(
        drive(
            port, args.connections, args.warmup, args.duration, lambda: cpu_at_start.append(cpu_seconds(pid))
        )
    )
    cpu = cpu_seconds(pid) - cpu_at_start[0]
    latencies.sort()
    arm = Arm(
        name,
        rps=len(latencies) / args.duration,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        errors=errors,
        cpu_us=cpu / max(len(latencies), 1) * 1e6,
    )
    log(
        f"{name:4} {arm.rps:8.0f} req/s   p50 {arm.p50_ms:6.3f} ms   p99 {arm.p99_ms:6.3f} ms   "
        f"serving CPU {arm.cpu_us:5.0f} us/request, {cpu / args.duration:4.0%} of its core   errors {errors}"
    )
    return arm


def shadow_counters(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("scoring_shadow_") and "_total" in line.split("{")[0]:
            name = line.split("{")[0] + (
                "{" + line.split("reason=")[1].split(",")[0] + "}" if "reason=" in line else ""
            )
            counters[name] = counters.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return counters


def train() -> Path:
    out = WORK / "models" / "diabetes"
    if not (out / "modelapp.json").exists():
        log("training the diabetes example")
        subprocess.run(
            [sys.executable, str(REPO / "examples" / "diabetes" / "train.py"), "--out", str(out)], check=True
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per arm")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per arm before measuring")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--sample", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model = train()
    shadow_file = WORK / "shadow.json"
    shadow_file.write_text("{}")
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    candidate, candidate_port, _ = start_scorer(model, 1, WORK / "none.json", "candidate")
    serving, port, metrics_port = start_scorer(model, 0, shadow_file, "serving")
    config = {"url": f"http://127.0.0.1:{candidate_port}", "candidate": "candidate", "sample": args.sample}
    arms: dict[str, list[Any]] = {"off": [], "on": []}
    try:
        for _ in range(args.rounds):
            for name, content in (("off", b"{}"), ("on", orjson.dumps(config))):
                shadow_file.write_bytes(content)
                time.sleep(RELOAD * 3)
                arms[name].append(measure(name, port, serving.pid, args))
        log(f"serving's shadow counters: {shadow_counters(metrics_port)}")
    finally:
        for process in (serving, candidate):
            process.terminate()
            process.wait(timeout=20)
    report(arms, args.sample)


def report(arms: dict[str, list[Any]], sample: float) -> None:
    off, on = (
        {k: statistics.median(getattr(a, k) for a in arms[n]) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
        for n in ("off", "on")
    )
    log(f"median over {len(arms['off'])} rounds:")
    for label, arm in (("off", off), (f"on ({sample:g} sampled)", on)):
        log(
            f"  {label:15}{arm['rps']:8.0f} req/s   p50 {arm['p50_ms']:6.3f} ms   p99 {arm['p99_ms']:6.3f} ms"
            f"   serving CPU {arm['cpu_us']:5.0f} us/request"
        )
    log(
        f"  on/off         {on['rps'] / off['rps']:8.2f}         p50 {on['p50_ms'] / off['p50_ms']:6.2f}      "
        f"p99 {on['p99_ms'] / off['p99_ms']:6.2f}      CPU/request {on['cpu_us'] / off['cpu_us']:5.2f}"
    )
    (WORK / "results.json").write_bytes(
        orjson.dumps({"off": off, "on": on, "sample": sample}, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    main()
