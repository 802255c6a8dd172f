"""Fixtures for the scorer's integration tests: real bundles and a real uvicorn process on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from unit.scoring.scoring_models import identity_model, save

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port: any (the kernel's pick), or one of SCORING_TEST_PORTS ("18600-18699") if set,
    for hosts where test servers must keep to a range. A port is handed out once per session."""
    span = os.environ.get("SCORING_TEST_PORTS", "")
    low, _, high = span.partition("-")
    candidates = range(int(low), int(high or low) + 1) if span else [0] * 100
    for candidate in candidates:
        if candidate in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise AssertionError(f"no free port in {span or 'the ephemeral range'}")


def train_examples(out: Path, *names: str) -> dict[str, Path]:
    """Run the example train.py scripts in parallel (they are the bundles users get)."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / name / "train.py"), "--out", str(out / name)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in names
    }
    for proc in procs.values():
        output, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, output.decode()
    return {name: out / name for name in names}


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str
    """The operations port: /metrics, /docs, /openapi.json."""
    grpc_port: int = 0
    """The gRPC API (`inference.GRPCInferenceService`) and grpc.health.v1."""

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    wrapped: bool = False
    """`process` is a wrapper (strace) whose child is the scorer."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        """The scorer's own process (not the wrapper's); what signals go to."""
        if not self.wrapped:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return int(children[0]) if children else self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the scorer and wait for it (and its wrapper); the exit code, after a SIGKILL if need be."""
        if self.process.poll() is None:
            os.kill(self.pid, sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
        return self.process.wait(timeout=timeout)


@pytest.fixture(scope="session")
def example_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_examples(tmp_path_factory.mktemp("examples"), "diabetes", "digits")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, example_bundles: dict[str, Path]) -> Path:
    """diabetes + digits (trained by the examples) and an all-datatypes identity model."""
    root = tmp_path_factory.mktemp("models")
    for name, path in example_bundles.items():
        (root / name).symlink_to(path, target_is_directory=True)
    save(identity_model(), root / "identity")
    return root


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(
        model_dir: Path,
        *extra: str,
        wait_ready: bool = True,
        env: dict[str, str | None] | None = None,
        wrap: Sequence[str] = (),
    ) -> Server:
        """`serve` on free ports; `env` is added to (a key whose value is None: removed from) the test's
        environment; `wrap` runs it under a command (strace ...)."""
        port, metrics_port, grpc_port = free_port(), free_port(), free_port()
        log_path = tmp_path_factory.mktemp("server") / "server.log"
        variables: dict[str, str | None] = {**os.environ, "SCORING_LOG_FORMAT": "json", "SCORING_METRICS_PORT": str(metrics_port),
                     "SCORING_GRPC_PORT": str(grpc_port), **(env or {})}  # fmt: skip
        process = subprocess.Popen(
            [*wrap, sys.executable, "-m", "scoring_service", "serve", "--model-dir", str(model_dir),
             "--host", "127.0.0.1", "--port", str(port), *extra],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env={name: value for name, value in variables.items() if value is not None},
        )  # fmt: skip
        server = Server(
            f"http://127.0.0.1:{port}", port, process, log_path, f"http://127.0.0.1:{metrics_port}", grpc_port,
            wrapped=bool(wrap),
        )  # fmt: skip
        servers.append(server)
        wait_until_up(server, need_ready=wait_ready)
        return server

    yield start
    for server in servers:
        server.stop(timeout=15)


def wait_until_up(server: Server, need_ready: bool, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    path = "/v2/health/ready" if need_ready else "/v2/health/live"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not up after {timeout}s:\n{server.log()}")


@pytest.fixture(scope="session")
def server(start_server: Callable[..., Server], models_dir: Path) -> Server:
    return start_server(models_dir)
