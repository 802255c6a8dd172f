"""Scorer benchmark: our scorer vs Seldon MLServer vs KServe vs a bare ASGI ceiling, same model, same load.

    .venv/bin/python bench/scorer/run.py [--duration 8] [--connections 8] [--skip-mlserver] [--skip-kserve]

Each server is measured alone (the others are stopped with SIGSTOP meanwhile), pinned to one core
(taskset); wrk runs pinned to another core and sends the same 1-row OIP JSON request over 8
connections. A second part compares JSON and binary tensor encodings for a 1x3x224x224 FP32
input on our scorer. Work files go to bench/.work/.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "bench" / ".work"
# Every server here (ours sets it itself) and the benchmarks that load this module start with
# onnxruntime's telemetry off: its uploader thread would cost the peers CPU that ours does not spend.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
VENV_BIN = Path(sys.executable).parent
MLSERVER_VENV = WORK / "mlserver-venv"
KSERVE_VENV = WORK / "kserve-venv"
# The peers, pinned: the figures in README.md are for these versions.
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1"]
KSERVE_PACKAGES = ["kserve==0.21.0"]
MLSERVER = "MLServer (mlserver-sklearn)"
KSERVE = "KServe (ModelServer, onnxruntime Model)"
CEILING = "bare ASGI ceiling"
DIABETES_ROW = [0.038, 0.050, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]

# wrk reports exact percentiles from its histogram in done(); print them as one JSON line.
REPORT_LUA = """
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = 0.0
    """The server process's CPU time (user + system) per request: what other load on the host
    changes least (it still slows a process sharing a core's caches), unlike req/s and latency."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk not found: installing it from Debian (apt-get install wrk)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def load_example(name: str) -> Any:
    path = REPO / "examples" / name / "train.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_models() -> tuple[Path, Path, Path]:
    """diabetes bundle (ONNX) + the same trained model as joblib for MLServer + a 224x224 image model."""
    import joblib
    from modelapp_bundle import write_manifest

    diabetes = load_example("diabetes")
    model, _, _, metrics = diabetes.train(0.5)  # alpha 0.5, the example's default
    bundle = WORK / "models" / "diabetes"
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir(parents=True)
    (bundle / "model.onnx").write_bytes(diabetes.to_onnx(model))
    write_manifest(bundle, "diabetes", "1.0.0", metrics=metrics)

    mlserver_dir = WORK / "mlserver-models" / "diabetes"
    mlserver_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, mlserver_dir / "model.joblib")

    image = WORK / "models-image" / "image"
    image.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["output"])],
        "image",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, 1, 1])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9),
        image / "model.onnx",
    )
    write_manifest(image, "image", "1")
    return bundle, mlserver_dir, image


def uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path.home() / ".local" / "bin"))
    if found is None:
        raise SystemExit("uv is needed to create the peers' venvs (https://docs.astral.sh/uv/)")
    return found


def ensure_venv(venv: Path, packages: list[str]) -> Path:
    """`venv` with `packages`, created once (again when the list changes); its python."""
    python = venv / "bin" / "python"
    stamp = venv / "bench-packages.txt"
    wanted = "\n".join(packages)
    if not stamp.exists() or stamp.read_text() != wanted:
        log(f"creating {venv.name} (uv venv + uv pip install {' '.join(packages)})")
        subprocess.run([uv(), "venv", "--allow-existing", "--python", "3.11", str(venv)], check=True)
        subprocess.run([uv(), "pip", "install", "--python", str(python), *packages], check=True)
        stamp.write_text(wanted)
    return python


def ensure_mlserver() -> Path:
    import sklearn

    # Same scikit-learn as the one that pickled the model, or joblib may refuse to load it.
    ensure_venv(MLSERVER_VENV, [*MLSERVER_PACKAGES, f"scikit-learn=={sklearn.__version__}"])
    return MLSERVER_VENV / "bin" / "mlserver"


def ensure_kserve() -> Path:
    import onnxruntime

    # Same onnxruntime as ours: the model runs the same kernels in both.
    return ensure_venv(KSERVE_VENV, [*KSERVE_PACKAGES, f"onnxruntime=={onnxruntime.__version__}"])


def write_mlserver_config(model_dir: Path, port: int) -> Path:
    root = model_dir.parent
    # Best settings for a tiny model on one core: inference in the server process (no worker-pool
    # IPC), no metrics server or middleware, quiet logs.
    settings = {
        "debug": False,
        "parallel_workers": 0,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "metrics_endpoint": None,
        "logging_settings": None,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "diabetes",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1.0.0"},
            }
        )
    )
    return root


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, url: str, body_file: Path, headers: dict[str, str], connections: int, duration: int,
            core: str, server_pid: int | None = None) -> dict[str, Any]:  # fmt: skip
    """wrk's figures; with `server_pid`, also the server's CPU seconds during the measured run."""
    script = WORK / f"wrk-{body_file.stem}.lua"
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write_text(
        f'wrk.method = "POST"\n{header_lines}'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n' + REPORT_LUA
    )
    threads = "1"
    # Warm-up run (JIT-free Python, but allocators, caches and connection setup still settle).
    subprocess.run(["taskset", "-c", core, wrk, "-t", threads, "-c", str(connections), "-d", "2s", "-s", str(script),
                    url], check=True, capture_output=True)  # fmt: skip
    cpu = cpu_seconds(server_pid)
    proc = subprocess.run(
        ["taskset", "-c", core, wrk, "-t", threads, "-c", str(connections), "-d", f"{duration}s", "-s", str(script),
         url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["cpu_s"] = cpu_seconds(server_pid) - cpu
    return result


def median_result(name: str, runs: list[Result]) -> Result:
    def med(values: list[float]) -> float:
        return float(np.median(values))

    return Result(
        name=name,
        rps=med([r.rps for r in runs]),
        p50_ms=med([r.p50_ms for r in runs]),
        p99_ms=med([r.p99_ms for r in runs]),
        errors=sum(r.errors for r in runs),
        cpu_us=med([r.cpu_us for r in runs]),
    )


def to_result(name: str, raw: dict[str, Any]) -> Result:
    return Result(
        name=name,
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=raw["errors"] + raw["non2xx"],
        cpu_us=raw.get("cpu_s", 0.0) / max(raw["requests"], 1) * 1e6,
    )


class Running:
    def __init__(
        self, argv: list[str], env: dict[str, str], ready_url: str, server_core: str, log_name: str
    ) -> None:
        self.log_path = WORK / f"{log_name}.log"
        self.proc = subprocess.Popen(
            ["taskset", "-c", server_core, *argv],
            env={**os.environ, **env},
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=WORK,
            start_new_session=True,  # its own process group: `pause` and `resume` reach its workers too
        )
        try:
            wait_ready(ready_url, self.proc)
        except Exception:
            self.stop()
            print(self.log_path.read_text(errors="replace")[-3000:])
            raise

    def pause(self) -> None:
        """Stop the server's processes (SIGSTOP) while another is measured: an idle server's timers
        and threads would still take turns on the shared core and its caches."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        self.resume()  # a stopped process would not act on SIGTERM
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per server (median reported)"
    )
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", default="1")
    parser.add_argument("--skip-mlserver", action="store_true", help="skip MLServer (no PyPI access)")
    parser.add_argument("--skip-kserve", action="store_true", help="skip KServe (no PyPI access)")
    parser.add_argument("--skip-encodings", action="store_true", help="skip the JSON vs binary part")
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    busy = subprocess.run(["pgrep", "-f", "go build"], capture_output=True, text=True).stdout.split()
    if busy:
        log(f"WARNING: 'go build' is running (pids {' '.join(busy)}): figures will be distorted")
    log(f"load average before the run: {os.getloadavg()[0]:.2f} (2 idle cores read ~0)")
    wrk = ensure_wrk()
    bundle, mlserver_model, image_bundle = prepare_models()

    payload = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": DIABETES_ROW}]}
    body = WORK / "diabetes-1row.json"
    body.write_bytes(json.dumps(payload).encode())

    # All servers start up front (idle, they cost nothing) and are measured in alternating rounds,
    # so background load drifting during the run hits every server alike; medians are reported.
    servers: list[tuple[str, Running, str]] = []
    try:
        start_servers(servers, args, bundle, mlserver_model)
        runs = measure(servers, wrk, body, args)
    finally:
        for _, server, _ in servers:
            server.stop()
    results = [median_result(name, rs) for name, rs in runs.items()]

    # JSON vs binary tensors, 1x3x224x224 FP32, on our scorer (1 connection: latency, not queueing).
    encoding = {} if args.skip_encodings else compare_encodings(wrk, image_bundle, args)

    report(results, encoding)
    return 0


def start_servers(
    servers: list[tuple[str, Running, str]], args: argparse.Namespace, bundle: Path, mlserver_model: Path
) -> None:
    """Ours, the ceiling and the peers, each appended to `servers` as (name, process, infer URL)."""
    core = args.server_core

    def infer_url(port: int) -> str:
        return f"http://127.0.0.1:{port}/v2/models/diabetes/infer"

    port = free_port()
    ours = Running(
        [str(VENV_BIN / "scoring-service"), "serve", "--model-dir", str(bundle), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--grpc-port", "0", "--metrics-port", "0"],
        {"SCORING_LOG_LEVEL": "warning"}, f"http://127.0.0.1:{port}/v2/health/ready", core, "scorer",
    )  # fmt: skip
    servers.append(("scoring-service", ours, infer_url(port)))
    # The bare ASGI ceiling: same model file, same uvicorn loop and parser, nothing else.
    port = free_port()
    servers.append((CEILING, _start_bare(bundle, port, core), infer_url(port)))
    # MLServer + mlserver-sklearn, the same trained model (joblib), its best settings.
    if not args.skip_mlserver:
        mlserver = ensure_mlserver()
        port = free_port()
        root = write_mlserver_config(mlserver_model, port)
        ml = Running(
            [str(mlserver), "start", str(root)], {"MLSERVER_PARALLEL_WORKERS": "0"},
            f"http://127.0.0.1:{port}/v2/models/diabetes/ready", core, "mlserver",
        )  # fmt: skip
        servers.append((MLSERVER, ml, infer_url(port)))
    # KServe's ModelServer, a custom Model on onnxruntime (kserve_model.py), the same ONNX file.
    if not args.skip_kserve:
        python = ensure_kserve()
        port = free_port()
        ks = Running(
            [str(python), str(REPO / "bench" / "scorer" / "kserve_model.py"), "--model_name", "diabetes",
             "--model_path", str(bundle / "model.onnx"), "--http_port", str(port)],
            {"KSERVE_LOGLEVEL": "WARNING"}, f"http://127.0.0.1:{port}/v2/models/diabetes/ready", core, "kserve",
        )  # fmt: skip
        servers.append((KSERVE, ks, infer_url(port)))


def measure(
    servers: list[tuple[str, Running, str]], wrk: str, body: Path, args: argparse.Namespace
) -> dict[str, list[Result]]:
    """`args.rounds` wrk runs of each server, in alternating rounds; only the measured server runs."""
    json_headers = {"Content-Type": "application/json"}
    runs: dict[str, list[Result]] = {name: [] for name, _, _ in servers}
    for _name, _, url in servers:
        post(url, body.read_bytes(), json_headers)  # one correct answer before any load
    for round_no in range(1, args.rounds + 1):
        for name, server, url in servers:
            for _, other, _ in servers:
                (other.resume if other is server else other.pause)()
            raw = run_wrk(wrk, url, body, json_headers, args.connections, args.duration, args.client_core,
                          server.proc.pid)  # fmt: skip
            result = to_result(name, raw)
            runs[name].append(result)
            log(f"round {round_no} {name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                f"p99 {result.p99_ms:.2f} ms, CPU {result.cpu_us:.0f} us/request, errors {result.errors}")  # fmt: skip
    return runs


def _start_bare(bundle: Path, port: int, core: str) -> Running:
    return Running(
        [str(VENV_BIN / "uvicorn"), "bench.scorer.bare_asgi:app", "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        {"MODEL": str(bundle / "model.onnx"), "PYTHONPATH": str(REPO)},
        f"http://127.0.0.1:{port}/health", core, "bare",
    )  # fmt: skip


def compare_encodings(wrk: str, image_bundle: Path, args: argparse.Namespace) -> dict[str, Result]:
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    json_file = WORK / "image-json.json"
    json_file.write_bytes(
        json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                "data": x.reshape(-1).tolist()}]}).encode()
    )  # fmt: skip
    header = json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                     "parameters": {"binary_data_size": x.nbytes}}],
         "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}
    ).encode()  # fmt: skip
    binary_file = WORK / "image-binary.bin"
    binary_file.write_bytes(header + x.tobytes())
    binary_headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }

    port = free_port()
    server = Running(
        [str(VENV_BIN / "scoring-service"), "serve", "--model-dir", str(image_bundle), "--host", "127.0.0.1",
         "--port", str(port), "--grpc-port", "0"],
        {"SCORING_LOG_LEVEL": "warning"}, f"http://127.0.0.1:{port}/v2/health/ready", args.server_core, "image",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v2/models/image/infer"
    out: dict[str, Result] = {}
    try:
        for name, file, headers in (
            ("JSON", json_file, {"Content-Type": "application/json"}),
            ("binary", binary_file, binary_headers),
        ):
            post(url, file.read_bytes(), headers)
            raw = run_wrk(wrk, url, file, headers, 1, max(5, args.duration // 2), args.client_core)
            out[name] = to_result(f"224x224 {name}", raw)
            log(f"224x224 {name}: p50 {out[name].p50_ms:.2f} ms, {out[name].rps:,.0f} req/s")
    finally:
        server.stop()
    return out


def report(results: list[Result], encoding: dict[str, Result]) -> None:
    by_name = {r.name: r for r in results}
    ours = by_name["scoring-service"]
    print()
    print(f"{'server':40} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'errors':>7} {'ours/x':>8}"
          f" {'x/ours CPU':>10}")  # fmt: skip
    for r in results:
        ratio = ours.rps / r.rps if r.rps else float("nan")
        cpu = r.cpu_us / ours.cpu_us if ours.cpu_us else float("nan")
        print(f"{r.name:40} {r.rps:>10,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.cpu_us:>10.0f} {r.errors:>7}"
              f" {ratio:>8.2f} {cpu:>10.2f}")  # fmt: skip
    ceiling = by_name[CEILING]
    ratio = ours.rps / ceiling.rps
    cpu_ratio = ceiling.cpu_us / ours.cpu_us if ours.cpu_us else float("nan")
    print(f"\nCPU per request, ceiling/ours: {cpu_ratio:.2f} (req/s ratio {ratio:.2f})")
    checks = [(f"1-row JSON req/s >= 0.85x the bare ASGI ceiling ({ratio:.2f}x)", ratio >= 0.85)]
    for peer in (MLSERVER, KSERVE):
        if peer in by_name:
            ratio = ours.rps / by_name[peer].rps
            checks.append((f"1-row JSON req/s >= 8x {peer} ({ratio:.1f}x)", ratio >= 8))
    limit = ceiling.p99_ms * 1.3
    checks.append(
        (f"p99 <= 1.3x the ceiling's ({ours.p99_ms:.2f} ms; limit {limit:.2f} ms)", ours.p99_ms <= limit)
    )
    if encoding:
        ratio = encoding["binary"].p50_ms / encoding["JSON"].p50_ms
        print(f"\n1x3x224x224 FP32: JSON p50 {encoding['JSON'].p50_ms:.2f} ms, binary p50 "
              f"{encoding['binary'].p50_ms:.2f} ms, binary/JSON {ratio:.3f}")  # fmt: skip
        checks.append((f"binary p50 <= 0.2x JSON p50 ({ratio:.3f}x)", ratio <= 0.2))
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    (WORK / "results.json").write_text(
        json.dumps(
            {
                "servers": [asdict(r) for r in results],
                "encoding": {k: asdict(v) for k, v in encoding.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
