"""Whose identity reads the store, against the real API server: a ModelApp's own ServiceAccount (TokenRequest),
never the operator's when the operator requires per-object identity; and no two namespaces share a poller."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as sync_client
from kubernetes_asyncio import client, config
from modelapp_operator.gather import Gatherer
from modelapp_operator.identity import ANN_CLIENT_ID, AUDIENCE
from modelapp_operator.names import Reason
from modelapp_operator.poller import AppKey, PollerRegistry
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.snapshot import Stalled
from modelapp_operator.spec import parse_spec

pytestmark = pytest.mark.integration

CLIENT_ID = "00000000-0000-0000-0000-0000000000aa"
TENANT_ID = "00000000-0000-0000-0000-0000000000bb"


def spec_with(auth: dict[str, Any]) -> Any:
    return parse_spec(
        "app",
        {
            "model": {
                "source": {
                    "azureBlob": {
                        "accountUrl": "https://acct.blob.core.windows.net",
                        "container": "models",
                        "prefix": "app/",
                        "auth": auth,
                    }
                }
            }
        },
    )


@pytest.fixture
async def api(testbed: Path) -> AsyncIterator[client.ApiClient]:
    await config.load_kube_config(config_file=str(testbed))
    async with client.ApiClient() as api:
        yield api


def gatherer(api: client.ApiClient, **settings: Any) -> Gatherer:
    ours = OperatorSettings(**{"tenant_id": TENANT_ID, **settings})
    registry = PollerRegistry(lambda ep: None, lambda key: None)  # type: ignore[arg-type,return-value]
    return Gatherer(api, ours, registry, {})


def make_sa(k8s: object, namespace: str, annotations: dict[str, str] | None = None) -> str:
    name = f"reader-{uuid.uuid4().hex[:6]}"
    sync_client.CoreV1Api(k8s).create_namespaced_service_account(
        namespace, {"metadata": {"name": name, "annotations": annotations or {}}}
    )
    return name


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    parsed: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return parsed


async def test_the_store_is_read_as_the_modelapps_own_service_account(
    api: client.ApiClient, k8s: object, namespace: str
) -> None:
    sa = make_sa(k8s, namespace, {ANN_CLIENT_ID: CLIENT_ID})
    g = gatherer(api, require_object_identity=True)
    endpoint, stalled = await g._endpoint(
        AppKey(namespace, "app"), spec_with({"workloadIdentity": {"serviceAccountName": sa}})
    )
    assert stalled is None
    assert endpoint is not None
    assert endpoint.credential == f"identity:{namespace}/{sa}:{CLIENT_ID}"
    fed = g.credentials[endpoint].federated
    assert fed is not None
    assert (fed.tenant_id, fed.client_id) == (TENANT_ID, CLIENT_ID)
    token = claims(fed.assertion())
    assert token["aud"] == [AUDIENCE]
    assert token["sub"] == f"system:serviceaccount:{namespace}:{sa}"
    assert token["exp"] - token["iat"] <= 3600


@pytest.mark.parametrize(
    ("auth", "annotations", "reason"),
    [
        ({"workloadIdentity": {}}, None, Reason.IDENTITY_REQUIRED),
        ({}, None, Reason.IDENTITY_REQUIRED),
        ({"workloadIdentity": {"serviceAccountName": "missing"}}, None, Reason.SERVICE_ACCOUNT_NOT_FOUND),
        ({"workloadIdentity": {"serviceAccountName": "SA"}}, {}, Reason.IDENTITY_MISCONFIGURED),
    ],
)
async def test_without_an_identity_of_its_own_a_modelapp_is_stalled(
    api: client.ApiClient,
    k8s: object,
    namespace: str,
    auth: dict[str, Any],
    annotations: dict[str, str] | None,
    reason: str,
) -> None:
    if annotations is not None:
        auth = {"workloadIdentity": {"serviceAccountName": make_sa(k8s, namespace, annotations)}}
    g = gatherer(api, require_object_identity=True, tenant_id=None)
    endpoint, stalled = await g._endpoint(AppKey(namespace, "app"), spec_with(auth))
    assert endpoint is None
    assert isinstance(stalled, Stalled)
    assert stalled.reason == reason
    assert g.credentials == {}


async def test_no_two_namespaces_share_a_poller_even_with_the_operators_identity(
    api: client.ApiClient, k8s: object, namespace: str
) -> None:
    other = f"{namespace}-b"
    g = gatherer(api)
    a, _ = await g._endpoint(AppKey(namespace, "app"), spec_with({"workloadIdentity": {}}))
    b, _ = await g._endpoint(AppKey(other, "app"), spec_with({"workloadIdentity": {}}))
    assert a is not None
    assert b is not None
    assert (a.account_url, a.container) == (b.account_url, b.container)
    assert a != b
