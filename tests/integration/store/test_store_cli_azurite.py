"""The real `modelapp` executable against Azurite: publish → versions → fetch, as users and init containers run it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from azure.storage.blob import ContainerClient
from fastapi.testclient import TestClient
from modelapp_bundle import Manifest, Preprocess, write_manifest
from scoring_service.app import create_app
from scoring_service.metrics import Metrics
from scoring_service.repository import ModelRepository
from scoring_service.settings import Settings
from testbed import Azurite
from unit.scoring.scoring_models import (
    CLASSIFIER_LABELS,
    CLASSIFIER_PREPROCESS,
    b64,
    classifier_model,
    png,
    save,
)

pytestmark = pytest.mark.integration

MODELAPP = Path(sys.executable).parent / "modelapp"


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELAPP_")}
    return subprocess.run(
        [str(MODELAPP), *argv], env={**base, **(env or {})}, text=True, capture_output=True, timeout=120
    )


@pytest.fixture
def env(azurite: Azurite, raw_container: ContainerClient) -> dict[str, str]:
    """Credentials the way an init container gets them: environment from a Secret, not arguments."""
    return {
        "MODELAPP_CONNECTION_STRING": azurite.connection_string,
        "MODELAPP_CONTAINER": raw_container.container_name,
        "MODELAPP_PREFIX": "diabetes/",
        "MODELAPP_RETRY_TOTAL": "1",
    }


def by_key(azurite: Azurite, container: str) -> list[str]:
    return [
        "--account-url",
        azurite.account_url,
        "--account-key",
        azurite.account_key,
        "--container",
        container,
    ]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_publish_versions_fetch_round_trip(
    azurite: Azurite, raw_container: ContainerClient, env: dict[str, str], bundle_dir: Path, tmp_path: Path
) -> None:
    (bundle_dir / "modelapp.json").write_text(json.dumps({"labels": ["no", "yes"], "metrics": {"mae": 40}}))
    published = run("publish", str(bundle_dir), "--version", "1.0.0", "--metric", "r2=0.46", env=env)
    assert published.returncode == 0, published.stderr
    assert "published diabetes 1.0.0" in published.stdout
    assert azurite.account_key not in published.stdout + published.stderr

    listed = run("versions", "--json", "--prefix", "diabetes", *by_key(azurite, raw_container.container_name))
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["version"] == "1.0.0"
    assert row["metrics"] == {"mae": 40.0, "r2": 0.46}
    table = run("versions", env=env)
    assert table.stdout.splitlines()[1].split()[0] == "1.0.0"
    assert row["sha256"][:12] in table.stdout

    out = tmp_path / "models" / "diabetes"
    fetched = run("fetch", "--version", "1.0.0", "--out", str(out), env=env)
    assert fetched.returncode == 0, fetched.stderr
    for rel in ("model.onnx", "contract.json", "extra/labels.txt"):
        assert sha(out / rel) == sha(bundle_dir / rel)
    manifest = Manifest.parse((out / "modelapp.json").read_bytes())
    assert manifest.sha256 == row["sha256"]
    assert manifest.labels == ["no", "yes"]
    assert manifest.contract == "contract.json"
    assert sorted(p.name for p in out.parent.iterdir()) == ["diabetes"]


def test_published_then_fetched_bundle_is_served_by_the_scorer(env: dict[str, str], tmp_path: Path) -> None:
    source = save(classifier_model(), tmp_path / "src")
    template = {"labels": CLASSIFIER_LABELS, "preprocess": CLASSIFIER_PREPROCESS, "metrics": {"accuracy": 1}}
    (source / "modelapp.json").write_bytes(orjson.dumps(template))
    published = run("publish", str(source), "--name", "classifier", "--version", "1.0.0", env=env)
    assert published.returncode == 0, published.stderr
    out = tmp_path / "models" / "classifier"
    fetched = run("fetch", "--version", "1.0.0", "--out", str(out), env=env)
    assert fetched.returncode == 0, fetched.stderr

    with TestClient(create_app(Settings(model_dir=tmp_path / "models"))) as scorer:
        assert scorer.get("/v2/health/ready").status_code == 200
        version = scorer.get("/version").json()
        assert (version["model_name"], version["model_version"]) == ("classifier", "1.0.0")
        top_right = png([[0, 255], [0, 0]])
        answer = scorer.post("/score", json={"input": b64(top_right), "top_k": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"][0][0]["label"] == "top-right"
    manifest = Manifest.parse((out / "modelapp.json").read_bytes())
    assert manifest.preprocess == Preprocess.model_validate(CLASSIFIER_PREPROCESS)
    assert manifest.labels == CLASSIFIER_LABELS


def test_publish_refuses_a_manifest_the_scorer_refuses_with_its_message(
    env: dict[str, str], tmp_path: Path
) -> None:
    source = save(classifier_model(), tmp_path / "classifier")
    write_manifest(source, "classifier", "1.0.0", labels=CLASSIFIER_LABELS, preprocess=CLASSIFIER_PREPROCESS)
    raw = orjson.loads((source / "modelapp.json").read_bytes())
    raw["preprocess"]["layout"] = "CHW"  # the digest covers the files only: still a consistent manifest
    (source / "modelapp.json").write_bytes(orjson.dumps(raw))
    repository = ModelRepository(Settings(model_dir=source), Metrics())
    repository.load_all()
    [refusal] = repository.errors
    # The scorer names the model and the file (never its path): "classifier unknown: modelapp.json: ...".
    said = refusal.partition("modelapp.json: ")[2]
    assert said.startswith("invalid manifest: preprocess.layout")

    refused = run("publish", str(source), "--version", "1.0.0", env=env)
    assert refused.returncode == 1
    assert refused.stderr == f"error: {said}\n"
    assert json.loads(run("versions", "--json", env=env).stdout) == []


def test_fetch_writes_a_build_context(env: dict[str, str], bundle_dir: Path, tmp_path: Path) -> None:
    assert run("publish", str(bundle_dir), "--version", "2", env=env).returncode == 0
    out = tmp_path / "ctx"
    fetched = run(
        "fetch", "--version", "2", "--out", str(out), "--dockerfile", "--base-image", "reg/scorer:1", env=env
    )
    assert fetched.returncode == 0, fetched.stderr
    dockerfile = (out / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM reg/scorer:1\nCOPY . /models/diabetes\n")
    manifest = Manifest.parse((out / "modelapp.json").read_bytes())
    assert f'dev.modelapp.model.sha256="{manifest.sha256}"' in dockerfile
    assert f"/{env['MODELAPP_CONTAINER']}/diabetes/2/" in dockerfile
    assert "AccountKey" not in dockerfile
    assert (out / ".dockerignore").is_file()


def test_existing_version_is_refused_without_force(env: dict[str, str], bundle_dir: Path) -> None:
    assert run("publish", str(bundle_dir), "--version", "1", env=env).returncode == 0
    before = json.loads(run("versions", "--json", env=env).stdout)[0]["sha256"]
    (bundle_dir / "model.onnx").write_bytes(b"retrained")
    refused = run("publish", str(bundle_dir), "--version", "1", env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: version '1' already exists")
    assert "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert json.loads(run("versions", "--json", env=env).stdout)[0]["sha256"] == before
    forced = run("publish", str(bundle_dir), "--version", "1", "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(run("versions", "--json", env=env).stdout)[0]["sha256"] != before


def test_half_uploaded_version_is_not_listed(
    raw_container: ContainerClient, env: dict[str, str], bundle_dir: Path, tmp_path: Path
) -> None:
    assert run("publish", str(bundle_dir), "--version", "1", env=env).returncode == 0
    raw_container.upload_blob("diabetes/2/model.onnx", b"still uploading")
    assert [r["version"] for r in json.loads(run("versions", "--json", env=env).stdout)] == ["1"]
    missing = run("fetch", "--version", "2", "--out", str(tmp_path / "o"), env=env)
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    assert not (tmp_path / "o").exists()


def test_tampered_model_is_rejected_and_not_left_behind(
    raw_container: ContainerClient, env: dict[str, str], bundle_dir: Path, tmp_path: Path
) -> None:
    assert run("publish", str(bundle_dir), "--version", "1", env=env).returncode == 0
    expected = sha(bundle_dir / "model.onnx")
    raw_container.upload_blob("diabetes/1/model.onnx", b"evil weights", overwrite=True)
    out = tmp_path / "models"
    out.mkdir()
    fetched = run("fetch", "--version", "1", "--out", str(out), env=env)
    assert fetched.returncode == 1
    assert "model.onnx" in fetched.stderr
    assert expected in fetched.stderr
    assert hashlib.sha256(b"evil weights").hexdigest() in fetched.stderr
    assert "Traceback" not in fetched.stderr
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diabetes", "models"]


def test_unreachable_store_is_a_clean_error(azurite: Azurite, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    result = run(
        "versions",
        "--account-url",
        f"http://127.0.0.1:{port}/{azurite.account_name}",
        "--container",
        "models",
        env={"MODELAPP_ACCOUNT_KEY": azurite.account_key, "MODELAPP_RETRY_TOTAL": "0"},
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "unreachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert azurite.account_key not in result.stderr


def test_wrong_key_is_a_clean_error(azurite: Azurite, raw_container: ContainerClient) -> None:
    wrong = "d3Jvbmcta2V5LWJ1dC1iYXNlNjQtZW5jb2RlZC1hbmQtbG9uZy1lbm91Z2g="
    result = run(
        "versions",
        "--account-url",
        azurite.account_url,
        "--account-key",
        wrong,
        "--container",
        raw_container.container_name,
    )
    assert result.returncode == 1
    assert "access denied" in result.stderr
    assert wrong not in result.stderr


def test_fetch_of_a_version_republished_since_it_was_resolved_fails_and_leaves_nothing(
    env: dict[str, str], bundle_dir: Path, tmp_path: Path
) -> None:
    """The operator passes the sha256 it resolved: a `publish --force` in between must not reach a pod."""
    assert run("publish", str(bundle_dir), "--version", "1", env=env).returncode == 0
    [row] = json.loads(run("versions", "--json", env=env).stdout)
    (bundle_dir / "model.onnx").write_bytes(b"retrained weights")
    assert run("publish", str(bundle_dir), "--version", "1", "--force", env=env).returncode == 0

    out = tmp_path / "models"
    out.mkdir()
    fetched = run("fetch", "--version", "1", "--expect-sha256", row["sha256"], "--out", str(out), env=env)
    assert fetched.returncode == 1, fetched.stdout
    assert f"expected {row['sha256']}" in fetched.stderr
    assert "changed since it was resolved" in fetched.stderr
    assert "Traceback" not in fetched.stderr
    assert list(out.iterdir()) == []

    [now] = json.loads(run("versions", "--json", env=env).stdout)
    again = run("fetch", "--version", "1", "--expect-sha256", now["sha256"], "--out", str(out), env=env)
    assert again.returncode == 0, again.stderr


def test_fetch_reads_a_mounted_secret_with_the_operators_key_mapping(
    azurite: Azurite, raw_container: ContainerClient, env: dict[str, str], bundle_dir: Path, tmp_path: Path
) -> None:
    """A Secret whose key the operator accepts (here AZURE_STORAGE_CONNECTION_STRING) works in the fetch too."""
    assert run("publish", str(bundle_dir), "--version", "1", env=env).returncode == 0
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "AZURE_STORAGE_CONNECTION_STRING").write_text(azurite.connection_string)
    (secret / "..data").mkdir()  # what a projected Secret volume also holds: ignored
    mounted = {
        "MODELAPP_CREDENTIALS_DIR": str(secret),
        "MODELAPP_CONTAINER": raw_container.container_name,
        "MODELAPP_PREFIX": "diabetes/",
        "MODELAPP_CREDENTIAL": "workload-identity",  # a Secret wins: no token is asked for
    }
    out = tmp_path / "models"
    fetched = run("fetch", "--version", "1", "--out", str(out), env=mounted)
    assert fetched.returncode == 0, fetched.stderr
    assert (out / "model.onnx").exists()
