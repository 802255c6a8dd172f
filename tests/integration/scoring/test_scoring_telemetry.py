"""The scorer looks no name up: a model load and an inference make no DNS query (strace watches).

onnxruntime's official Linux wheels (1.29 and later) carry Microsoft's 1DS telemetry: on the first
session it writes a device id and an event store under ~/.cache/Microsoft/DeveloperTools/.onnxruntime,
and some 10 s later its uploader resolves mobile.events.data.microsoft.com (then again every few
seconds). `scoring_service/__init__.py` sets ORT_DISABLE_TELEMETRY=1, the opt-out the wheel documents
(its Privacy.md), before onnxruntime is imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from integration.scoring.conftest import Server
from unit.scoring.scoring_models import linear_model, save

pytestmark = pytest.mark.integration

STRACE = shutil.which("strace")
# onnxruntime 1.31.1's uploader first resolved its host 9-10 s after the first session.
TELEMETRY_WAIT = 15.0
# Variables that keep onnxruntime's telemetry quiet on their own (the opt-out, its unit-test and CI
# switches): the child must not inherit them from the host, or the test would prove nothing.
QUIETING = ("ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS", "CI", "TF_BUILD", "GITHUB_ACTIONS")


def name_service_activity(trace: str) -> list[str]:
    """strace lines of a DNS query (a datagram to port 53) or of reading the resolver's configuration."""
    return [line for line in trace.splitlines() if "htons(53)" in line or "/etc/resolv.conf" in line]


def test_a_model_load_and_an_inference_make_no_dns_query(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    if STRACE is None:
        pytest.skip("strace is not installed")
    if subprocess.run([STRACE, "-o", os.devnull, "true"], capture_output=True, check=False).returncode:
        pytest.skip("strace cannot trace here (no ptrace)")
    bundle = save(linear_model(), tmp_path / "models" / "linear")
    home, trace = tmp_path / "home", tmp_path / "strace.txt"
    home.mkdir()
    env: dict[str, str | None] = dict.fromkeys(QUIETING)
    # gRPC off: its resolver (c-ares) reads /etc/resolv.conf when its server starts, without a query.
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "SCORING_GRPC_PORT": "0"}
    wrap = [STRACE, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,open,openat", "-o", str(trace)]
    server = start_server(bundle, env=env, wrap=wrap)

    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]}
    response = httpx.post(server.url + "/v2/models/linear/infer", json=body)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + TELEMETRY_WAIT
    while time.monotonic() < deadline and not name_service_activity(trace.read_text(errors="replace")):
        time.sleep(0.5)
    server.stop()  # the trace is complete once strace has exited

    assert "model.onnx" in trace.read_text(errors="replace")  # the trace did see the scorer at work
    assert name_service_activity(trace.read_text(errors="replace")) == []
    assert not (home / ".cache" / "Microsoft").exists()  # no telemetry device id, no event store
