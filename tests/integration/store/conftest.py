"""Fixtures for model store tests against a real Azurite: a fresh container per test, raw blob access."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from modelapp_operator.store import AzureBlobStore, BlobCredentials, StoreOptions, store_from_credentials
from testbed import Azurite

FAST = StoreOptions(connection_timeout=2, read_timeout=10, retry_total=1, retry_initial_backoff=0.1)


@pytest.fixture
def raw_container(azurite: Azurite) -> Iterator[ContainerClient]:
    """A fresh container through the plain (sync) SDK: the tests' independent view of what is stored."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(f"t-{uuid.uuid4().hex[:16]}")
    client.create_container()
    yield client
    client.delete_container()
    service.close()


@pytest.fixture
async def store(azurite: Azurite, raw_container: ContainerClient) -> AsyncIterator[AzureBlobStore]:
    creds = BlobCredentials(connection_string=azurite.connection_string)
    async with store_from_credentials(None, raw_container.container_name, creds, options=FAST) as s:
        yield s


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    root = tmp_path / "diabetes"
    (root / "extra").mkdir(parents=True)
    # Larger than one download chunk so streaming verification is exercised.
    (root / "model.onnx").write_bytes(uuid.uuid4().bytes * 300_000)
    (root / "contract.json").write_text('{"samples": []}')
    (root / "extra" / "labels.txt").write_text("no\nyes\n")
    return root
