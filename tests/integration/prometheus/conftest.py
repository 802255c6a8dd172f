"""A real Prometheus (hack/build-tools.sh builds it from source) scraping real scorer processes on loopback."""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from integration.scoring.conftest import Server, free_port, start_server  # noqa: F401 (a fixture)
from testbed import LOCAL, REPO


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """.local/bin/prometheus, built (with the test bed's other tools) when it is not there yet."""
    path = LOCAL / "bin" / "prometheus"
    if not path.exists():
        built = subprocess.run(
            ["bash", str(REPO / "hack" / "build-tools.sh")], capture_output=True, text=True, timeout=3600
        )
        if built.returncode != 0 or not path.exists():
            pytest.fail(f"hack/build-tools.sh did not build Prometheus:\n{built.stderr[-4000:]}")
    return path


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def scrape_config(targets: dict[str, str]) -> str:
    """Every second, each target (host:port) with its ``namespace`` label, as kubernetes_sd relabelling
    would set it for a pod."""
    jobs = "".join(
        textwrap.dedent(f"""\
          - job_name: scorer-{namespace}
            static_configs:
              - targets: ["{target}"]
                labels: {{namespace: "{namespace}"}}
        """)
        for target, namespace in targets.items()
    )
    head = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
    return head + textwrap.indent(jobs, "  ")


@pytest.fixture(scope="module")
def start_prometheus(
    prometheus_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[dict[str, str]], Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: dict[str, str]) -> Prometheus:
        root = tmp_path_factory.mktemp("prometheus")
        (root / "prometheus.yml").write_text(scrape_config(targets))
        port = free_port()
        log_path = root / "prometheus.log"
        process = subprocess.Popen(
            [str(prometheus_binary), f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        prom = Prometheus(f"http://127.0.0.1:{port}", process, log_path)
        started.append(prom)
        wait_ready(prom)
        return prom

    yield start
    for prom in started:
        prom.process.terminate()
        try:
            prom.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            prom.process.kill()


def wait_ready(prom: Prometheus, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prom.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {prom.process.returncode}:\n{prom.log()}")
        try:
            if httpx.get(prom.url + "/-/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"prometheus not ready after {timeout}s:\n{prom.log()}")
