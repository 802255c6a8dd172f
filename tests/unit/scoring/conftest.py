"""Fixtures for the scorer's unit tests: real bundles in tmp dirs, in-process app clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from modelapp_bundle import write_manifest
from scoring_service.app import create_app
from scoring_service.settings import Settings
from unit.scoring.scoring_models import (
    CLASSIFIER_LABELS,
    CLASSIFIER_PREPROCESS,
    classifier_model,
    identity_model,
    linear_model,
    save,
)


@pytest.fixture
def linear_bundle(tmp_path: Path) -> Path:
    path = save(linear_model(), tmp_path / "models" / "linear")
    write_manifest(path, "linear", "2", metrics={"r2": 0.5})
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder of bundles: linear v1 and v2, the all-datatypes identity model, the image classifier."""
    root = tmp_path / "models"
    for version in ("1", "2"):
        write_manifest(save(linear_model(), root / f"linear-v{version}"), "linear", version)
    save(identity_model(), root / "identity")  # bare model.onnx: name from folder, version 1
    write_manifest(
        save(classifier_model(), root / "classifier"),
        "classifier",
        "1.0.0",
        labels=CLASSIFIER_LABELS,
        preprocess=CLASSIFIER_PREPROCESS,
    )
    return root


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(model_dir: Path, **overrides: Any) -> TestClient:
        client = TestClient(
            create_app(Settings(model_dir=model_dir, **overrides)), raise_server_exceptions=False
        )
        client.__enter__()  # runs the lifespan, i.e. loads the models
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(model_dir: Path, make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(model_dir, default_model="linear")


def ops(client: TestClient) -> TestClient:
    """The same app reached on its operations port: /metrics, /docs, /openapi.json."""
    port = client.app.state.settings.metrics_port  # type: ignore[attr-defined]
    return TestClient(client.app, base_url=f"http://testserver:{port}", raise_server_exceptions=False)
