"""gRPC vs REST on one scorer process: 1-row requests, and a 1x3x224x224 FP32 tensor sent binary.

    .venv/bin/python bench/grpc_rest.py [--duration 8] [--warmup 2] [--clients 8] [--channels 1] [--rounds 2]

Starts one scorer (pinned to core 0) serving a 10-feature linear model and a GlobalAveragePool over
[N, 3, 224, 224], and drives it from this process (core 1) with a fixed number of concurrent clients
for `--duration` seconds per arm, arms alternating `--rounds` times:

- `rest-json`: the 1-row OIP JSON request over raw keep-alive HTTP/1.1, one connection per client;
- `grpc-typed`, `grpc-raw`: the same row as `ModelInfer` with typed `fp32_contents` or with
  `raw_input_contents`, `--clients` calls in flight on `--channels` HTTP/2 connections (pre-serialised
  bytes);
- `rest-binary` vs `grpc-raw` for the 224x224 image, one client (latency, not queueing);
- `floor-aio`, `floor-pool`: the 1-row `grpc-raw` request to a server (core 0) whose ModelInfer
  returns constant bytes, what grpcio costs per call before any of our code: `grpc.aio` on uvloop, or
  the thread-pool server handing each call to a uvloop loop in the main thread (tried for the scorer).

The clients send pre-built bytes, so their own cost is small, but it is Python's: besides req/s the
figure to compare is the scorer's CPU per request (its utime + stime over the arm, from /proc), which
does not depend on how fast the client is; each arm also shows the scorer's context switches and
page faults per request and this process's CPU (near 100% of its core: the client is the limit).
Work files go to bench/.work/grpc/.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import orjson
from onnx import TensorProto, helper
from scoring_service.proto import grpc_predict_v2_pb2 as pb

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "grpc"
ROW = [0.038, 0.050, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
INFER = "/inference.GRPCInferenceService/ModelInfer"
IMAGE = (1, 3, 224, 224)
FLOORS = ("floor-aio", "floor-pool")


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_shadow = _load("shadow_bench", REPO / "bench" / "shadow.py")  # its HTTP/1.1 client, core pinning, ports
http_client, pinned, free_port, wait_ready = (
    _shadow.connection,
    _shadow.pinned,
    _shadow.free_port,
    _shadow.wait_ready,
)


@dataclass
class Arm:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the scorer's CPU per request
    errors: int
    switches: float = 0.0  # the scorer's context switches per request, all its threads
    faults: float = 0.0  # the scorer's minor page faults per request
    client_cpu: float = 0.0  # this process's CPU in % of a core (near 100: the client is the limit)


def log(msg: str) -> None:
    print(f"[grpc-bench] {msg}", flush=True)


# -- the scorer ------------------------------------------------------------------------------------


def write_models() -> Path:
    root = WORK / "models"
    opset = [helper.make_opsetid("", 17)]
    weights = np.linspace(-1, 1, 10, dtype=np.float32).reshape(10, 1)
    linear = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["y"])],
        "tabular",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor("W", TensorProto.FLOAT, [10, 1], weights.reshape(-1).tolist())],
    )
    pool = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["y"])],
        "image",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 1, 1])],
    )
    for name, graph in (("tabular", linear), ("image", pool)):
        (root / name).mkdir(parents=True, exist_ok=True)
        onnx.save(helper.make_model(graph, opset_imports=opset, ir_version=9), root / name / "model.onnx")
    return root


def start_scorer(model_dir: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "SCORING_METRICS_PORT": "0", "SCORING_LOG_LEVEL": "warning"}
    command = [*pinned(0), sys.executable, "-m", "scoring_service", "serve", "--model-dir", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port)]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=(WORK / "scorer.log").open("wb"), stderr=subprocess.STDOUT
    )
    wait_ready(process, port, WORK / "scorer.log")
    return process, port, grpc_port


def start_floor(kind: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [*pinned(0), sys.executable, __file__, "--serve-floor", f"{kind}:{port}"]
    process = subprocess.Popen(command, stdout=(WORK / f"{kind}.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the {kind} server did not start; see {WORK / f'{kind}.log'}")


def serve_floor(kind: str, port: int) -> None:
    """A ModelInfer that does nothing, on uvloop as the scorer: in grpc.aio, or in the thread-pool
    server with each call run on the loop."""
    import uvloop

    reply = b"\n\x07tabular"  # model_name: a valid ModelInferResponse

    async def model_infer(request: bytes, context: Any = None) -> bytes:
        return reply

    async def run() -> None:
        loop = asyncio.get_running_loop()
        if kind == "floor-aio":
            server: Any = grpc.aio.server()
            handler = grpc.unary_unary_rpc_method_handler(model_infer)
        else:
            server = grpc.server(ThreadPoolExecutor(8))

            def on_loop(request: bytes, context: Any) -> bytes:
                return asyncio.run_coroutine_threadsafe(model_infer(request), loop).result()

            handler = grpc.unary_unary_rpc_method_handler(on_loop)
        service = grpc.method_handlers_generic_handler(INFER.split("/")[1], {"ModelInfer": handler})
        server.add_generic_rpc_handlers((service,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        if kind == "floor-aio":
            await server.start()
        else:
            server.start()
        await asyncio.Event().wait()

    uvloop.run(run())


def counters(pid: int) -> tuple[float, int, int]:
    """A process's CPU seconds (utime + stime), context switches over its threads, minor page faults."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:  # the thread ended
            continue
        switches += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), switches, int(fields[7])


# -- requests --------------------------------------------------------------------------------------


def rest_request(port: int, model: str, body: bytes, header_length: int | None = None) -> bytes:
    extra = f"Inference-Header-Content-Length: {header_length}\r\n" if header_length is not None else ""
    content_type = "application/octet-stream" if header_length is not None else "application/json"
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: {content_type}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def row_requests(port: int) -> dict[str, bytes]:
    json_body = orjson.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": ROW}]}
    )
    typed = pb.ModelInferRequest(model_name="tabular")
    typed.inputs.add(name="input", datatype="FP32", shape=[1, 10]).contents.fp32_contents.extend(ROW)
    raw = pb.ModelInferRequest(model_name="tabular", raw_input_contents=[np.array(ROW, np.float32).tobytes()])
    raw.inputs.add(name="input", datatype="FP32", shape=[1, 10])
    return {
        "rest-json": rest_request(port, "tabular", json_body),
        "grpc-typed": typed.SerializeToString(),
        "grpc-raw": raw.SerializeToString(),
    }


def image_requests(port: int) -> dict[str, bytes]:
    data = np.random.default_rng(0).standard_normal(IMAGE).astype(np.float32).tobytes()
    header = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(IMAGE), "parameters": {"binary_data_size": len(data)}}],
         "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    )  # fmt: skip
    raw = pb.ModelInferRequest(model_name="image", raw_input_contents=[data])
    raw.inputs.add(name="x", datatype="FP32", shape=list(IMAGE))
    return {
        "rest-binary": rest_request(port, "image", header + data, len(header)),
        "grpc-raw": raw.SerializeToString(),
    }


# -- load ------------------------------------------------------------------------------------------


async def grpc_client(call: Any, payload: bytes, until: float, record_from: float, out: list[float]) -> int:
    """Calls back to back on the shared channel; latencies after `record_from`."""
    errors = 0
    while (start := time.perf_counter()) < until:
        try:
            await call(payload)
        except grpc.aio.AioRpcError:
            errors += 1
        if start >= record_from:
            out.append(time.perf_counter() - start)
    return errors


async def drive(
    name: str, payload: bytes, port: int, grpc_port: int, clients: int, args: argparse.Namespace
) -> tuple[list[float], int]:
    now = time.perf_counter()
    until, record_from = now + args.warmup + args.duration, now + args.warmup
    latencies: list[float] = []
    if name.startswith("rest"):
        errors = await asyncio.gather(
            *(http_client(port, payload, until, record_from, latencies) for _ in range(clients))
        )
        return latencies, sum(errors)
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    # One HTTP/2 connection per channel (grpc.use_local_subchannel_pool: channels to one target
    # would otherwise share a connection); clients are spread over them.
    options.append(("grpc.use_local_subchannel_pool", 1))
    target = f"127.0.0.1:{grpc_port}"
    channels = [
        grpc.aio.insecure_channel(target, options=options) for _ in range(min(args.channels, clients))
    ]
    try:
        calls: list[Any] = [
            c.unary_unary(INFER) for c in channels
        ]  # bytes in, bytes out: no client-side protobuf
        errors = await asyncio.gather(
            *(
                grpc_client(calls[i % len(calls)], payload, until, record_from, latencies)
                for i in range(clients)
            )
        )
    finally:
        for channel in channels:
            await channel.close()
    return latencies, sum(errors)


def measure(
    name: str,
    payload: bytes,
    scorer: subprocess.Popen[bytes],
    ports: tuple[int, int],
    clients: int,
    args: argparse.Namespace,
) -> Arm:
    before, client_before, wall_before = counters(scorer.pid), os.times(), time.perf_counter()
    latencies, errors = asyncio.run(drive(name, payload, *ports, clients, args))
    # These include the warm-up: divided by the requests it served too.
    cpu, switches, faults = (b - a for a, b in zip(before, counters(scorer.pid), strict=True))
    client_after, wall = os.times(), time.perf_counter() - wall_before
    client_cpu = client_after.user + client_after.system - client_before.user - client_before.system
    latencies.sort()
    served = len(latencies) * (args.warmup + args.duration) / args.duration
    arm = Arm(
        name,
        rps=len(latencies) / args.duration,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        cpu_us=cpu / served * 1e6,
        errors=errors,
        switches=switches / served,
        faults=faults / served,
        client_cpu=client_cpu / wall * 100,
    )
    log(f"  {name:11} {arm.rps:8.0f} req/s   p50 {arm.p50_ms:7.3f} ms   p99 {arm.p99_ms:7.3f} ms   "
        f"scorer CPU {arm.cpu_us:6.0f} us/req   errors {errors}")  # fmt: skip
    log(f"  {'':11} scorer: {arm.switches:5.1f} context switches/req, {arm.faults:6.1f} page faults/req;"
        f"   client CPU {arm.client_cpu:3.0f}% of a core")  # fmt: skip
    return arm


def median(arms: list[Arm]) -> Arm:
    def med(key: str) -> float:
        return statistics.median(getattr(a, key) for a in arms)

    return Arm(
        arms[0].name,
        med("rps"),
        med("p50_ms"),
        med("p99_ms"),
        med("cpu_us"),
        sum(a.errors for a in arms),
        med("switches"),
        med("faults"),
        med("client_cpu"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per arm")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per arm before measuring")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the 1-row arms")
    parser.add_argument("--channels", type=int, default=1, help="gRPC channels (connections) they share")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve-floor", metavar="KIND:PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        kind, port = args.serve_floor.split(":")
        serve_floor(kind, int(port))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    scorer, port, grpc_port = start_scorer(write_models())
    floors = {kind: start_floor(kind) for kind in FLOORS}
    os.sched_setaffinity(0, {1} if (os.cpu_count() or 1) > 1 else {0})
    rows = row_requests(port)
    rows.update(dict.fromkeys(FLOORS, rows["grpc-raw"]))
    suites = {"1 row": (rows, args.clients), "1x3x224x224 FP32": (image_requests(port), 1)}
    results: dict[str, dict[str, list[Arm]]] = {suite: {} for suite in suites}
    try:
        for round_ in range(args.rounds):
            for suite, (requests, clients) in suites.items():
                log(f"round {round_ + 1}, {suite}, {clients} client(s)")
                for name, payload in requests.items():
                    server, ports = scorer, (port, grpc_port)
                    if name in floors:
                        server, ports = floors[name][0], (0, floors[name][1])
                    arm = measure(name, payload, server, ports, clients, args)
                    results[suite].setdefault(name, []).append(arm)
    finally:
        for process in (scorer, *(process for process, _ in floors.values())):
            process.terminate()
            process.wait(timeout=20)
    report(
        {suite: {name: median(arms) for name, arms in by_name.items()} for suite, by_name in results.items()}
    )


def report(results: dict[str, dict[str, Arm]]) -> None:
    log("medians")
    out: dict[str, Any] = {}
    for suite, arms in results.items():
        rest = next(a for name, a in arms.items() if name.startswith("rest"))
        log(f"{suite}:")
        for arm in arms.values():
            ratio = "" if arm is rest else (
                f"   vs {rest.name}: req/s x{arm.rps / rest.rps:.2f}, p50 x{arm.p50_ms / rest.p50_ms:.2f}, "
                f"CPU/req x{arm.cpu_us / rest.cpu_us:.2f}"
            )  # fmt: skip
            log(f"  {arm.name:11} {arm.rps:8.0f} req/s   p50 {arm.p50_ms:7.3f} ms   p99 {arm.p99_ms:7.3f} ms   "
                f"{arm.cpu_us:6.0f} us/req   {arm.switches:4.1f} cs/req   {arm.faults:5.1f} pf/req   "
                f"client {arm.client_cpu:3.0f}%{ratio}")  # fmt: skip
        out[suite] = {name: vars(arm) for name, arm in arms.items()}
    (WORK / "results.json").write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
