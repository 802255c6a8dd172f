"""Fixtures for the stories that run containers: the test bed's real node."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from realnode import RealNode, create_user_secrets, delete_namespace
from testbed import AZURITE_ACCOUNT, AZURITE_KEY, kubectl


@pytest.fixture(scope="module")
def story_namespace(real_node: RealNode, crds: None) -> Iterator[str]:
    """A namespace for a module whose tests are the steps of one story (they run in file order), with
    the Secrets a user would create: Azurite's connection string as pods reach it, and a push config
    for the local registry (which takes no credentials)."""
    name = f"s-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    create_user_secrets(real_node, name, AZURITE_ACCOUNT, AZURITE_KEY)
    yield name
    delete_namespace(name)


def operator_env(node: RealNode) -> dict[str, str]:
    """The operator configured with the test bed's real images (what the chart's values would set)."""
    return {
        "MODELAPP_OPERATOR_FETCH_IMAGE": node.operator_image,
        "MODELAPP_OPERATOR_SCORER_IMAGE": node.scorer_image,
        "MODELAPP_OPERATOR_BASE_IMAGE": node.scorer_image,
        "MODELAPP_OPERATOR_KANIKO_IMAGE": node.kaniko_image,
    }
