"""The real process: `serve` with good and corrupt bundles, workers, `smoke`, the examples, the Dockerfile."""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from integration.scoring.conftest import REPO, Server, train_examples

pytestmark = pytest.mark.integration


def test_seed_api_over_http(server: Server, example_bundles: dict[str, Path]) -> None:
    contract = orjson.loads((example_bundles["diabetes"] / "contract.json").read_bytes())
    rows = contract["samples"][0]["request"]["inputs"][0]["data"]
    expected = contract["samples"][0]["expected"]["outputs"][0]["data"]
    # /score and /version use the default model: the first by name, diabetes.
    result = httpx.post(server.url + "/score", json={"data": rows}).json()["result"]
    assert result == pytest.approx(expected, rel=1e-4, abs=1e-3)
    version = httpx.get(server.url + "/version").json()
    assert (version["model_name"], version["model_version"]) == ("diabetes", "1.0.0")


def test_answers_do_not_name_the_server_software(server: Server) -> None:
    infer = httpx.post(server.url + "/v2/models/diabetes/infer", json={"inputs": []})
    ready = httpx.get(server.url + "/v2/health/ready")
    for response in (infer, ready):
        assert "server" not in response.headers, response.headers
        assert "date" in response.headers  # HTTP/1.1 origin servers with a clock send one


def test_metrics_and_structured_logs(server: Server) -> None:
    httpx.post(server.url + "/v2/models/diabetes/infer", json={"inputs": []})
    text = httpx.get(server.metrics_url + "/metrics").text
    assert 'scoring_requests_total{code="400",endpoint="infer",model="diabetes",version="1.0.0"}' in text
    assert 'scoring_model_ready{model="digits",version="1.0.0"} 1.0' in text
    lines = [orjson.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    loaded = [entry for entry in lines if entry["message"] == "model loaded"]
    assert {(e["model"], e["version"]) for e in loaded} >= {("diabetes", "1.0.0"), ("digits", "1.0.0")}


def test_corrupt_bundle_makes_the_server_not_ready(
    start_server: Callable[..., Server], example_bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "diabetes"
    shutil.copytree(example_bundles["diabetes"], bundle)
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))

    server = start_server(bundle, wait_ready=False)
    ready = httpx.get(server.url + "/v2/health/ready")
    assert ready.status_code == 503
    assert "checksum mismatch for model.onnx: expected sha256" in ready.json()["reasons"][0]
    infer = httpx.post(server.url + "/v2/models/diabetes/infer", json={"inputs": []})
    assert infer.status_code == 503
    errors = [orjson.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert any(e["level"] == "error" and "sha256" in e["message"] for e in errors), server.log()


def test_workers_and_graceful_shutdown(
    start_server: Callable[..., Server], example_bundles: dict[str, Path]
) -> None:
    server = start_server(example_bundles["diabetes"], "--workers", "2")
    for _ in range(10):
        assert httpx.get(server.url + "/v2/models/diabetes/ready").status_code == 200
    # The workers share the operations socket as they share the serving one.
    assert "scoring_model_ready" in httpx.get(server.metrics_url + "/metrics").text
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("access_log", [False, True], ids=["access-log-off", "access-log-on"])
def test_access_log_follows_the_setting(
    start_server: Callable[..., Server], example_bundles: dict[str, Path], workers: str, access_log: bool
) -> None:
    """Workers configure logging for themselves; they must keep uvicorn's access log off unless asked."""
    env = {"SCORING_ACCESS_LOG": str(access_log).lower()}
    server = start_server(example_bundles["diabetes"], "--workers", workers, env=env)
    for _ in range(4):
        assert httpx.post(server.url + "/v2/models/diabetes/infer", json={"inputs": []}).status_code == 400
    server.stop()
    entries = [orjson.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [e["message"] for e in entries if e["logger"] == "uvicorn.access"]
    if access_log:
        assert sum("POST /v2/models/diabetes/infer" in message for message in access) == 4, server.log()
    else:
        assert access == [], server.log()
    assert any(e["message"] == "model loaded" for e in entries)  # the log itself is there


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scoring_service", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_smoke_command_on_the_examples(example_bundles: dict[str, Path], tmp_path: Path) -> None:
    for name, bundle in example_bundles.items():
        proc = run_cli("smoke", "--model-dir", str(bundle))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"PASS {name}:1.0.0" in proc.stdout

    broken = tmp_path / "digits"
    shutil.copytree(example_bundles["digits"], broken)
    contract = orjson.loads((broken / "contract.json").read_bytes())
    contract["samples"][0]["expected"]["outputs"][0]["data"][0] += 1  # expect the wrong digit
    other = tmp_path / "wrong-contract.json"
    other.write_bytes(orjson.dumps(contract))
    proc = run_cli("smoke", "--model-dir", str(broken), "--contract", str(other))
    assert proc.returncode == 1
    assert "FAIL digits:1.0.0" in proc.stdout
    assert "output 'label': 1 of 6 values differ" in proc.stdout


def test_examples_are_deterministic_and_complete(example_bundles: dict[str, Path], tmp_path: Path) -> None:
    again = train_examples(tmp_path, "diabetes", "digits")
    for name, bundle in example_bundles.items():
        first = orjson.loads((bundle / "modelapp.json").read_bytes())
        second = orjson.loads((again[name] / "modelapp.json").read_bytes())
        assert first == second  # same files, same hashes (SOURCE_DATE_EPOCH pins `created`)
        assert sorted(first["files"]) == ["contract.json", "model.onnx"]
        assert first["contract"] == "contract.json"
        digest = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
        assert first["files"]["model.onnx"]["sha256"] == digest
    diabetes = orjson.loads((example_bundles["diabetes"] / "modelapp.json").read_bytes())
    assert 0.3 < diabetes["metrics"]["r2"] < 0.6
    digits = orjson.loads((example_bundles["digits"] / "modelapp.json").read_bytes())
    assert digits["labels"] == [str(d) for d in range(10)]
    assert digits["preprocess"]["size"] == [8, 8]
    assert digits["metrics"]["accuracy"] > 0.9


def test_dockerfile_matches_the_cli_and_the_repo() -> None:
    """No Docker engine here: check what the image relies on instead."""
    dockerfile = (REPO / "Dockerfile.scoring").read_text()
    lines = [line.strip() for line in dockerfile.replace("\\\n", " ").splitlines()]  # join continuations
    assert sum(line.startswith("FROM ") for line in lines) >= 2, "multi-stage"
    user = [line for line in lines if line.startswith("USER ")]
    assert user, "runs as non-root"
    assert user[-1].split()[1] not in ("root", "0", "0:0")
    assert any(line.startswith("HEALTHCHECK") and "/v2/health/ready" in line for line in lines)
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    cmd = next(line for line in lines if line.startswith("CMD"))
    argv = orjson.loads(entry.removeprefix("ENTRYPOINT")) + orjson.loads(cmd.removeprefix("CMD"))
    assert shutil.which("scoring-service", path=str(Path(sys.executable).parent)), "console script installed"
    assert argv[:2] == ["scoring-service", "serve"]
    assert "/models" in argv
    # The entrypoint's arguments parse with the real CLI.
    from scoring_service.cli import _parser

    args = _parser().parse_args(argv[1:])
    assert (args.command, str(args.model_dir)) == ("serve", "/models")
    # Every COPY source in the build context exists, and .dockerignore keeps the context small.
    ignore = [rule for rule in (REPO / ".dockerignore").read_text().splitlines() if rule and rule[0] != "#"]
    for line in lines:
        if line.startswith("COPY") and "--from=" not in line:
            for src in line.split()[1:-1]:
                if "[" in src:
                    continue  # `COPY wheel[s] ...`: Docker's idiom for a source that may be absent
                assert (REPO / src).exists(), src
                assert not any(fnmatch.fnmatch(src, rule) for rule in ignore), (
                    f"{src} excluded by .dockerignore"
                )
    assert {".venv", ".git", "bench/.work"} <= set(ignore)  # never ship the venv, history or bench work
