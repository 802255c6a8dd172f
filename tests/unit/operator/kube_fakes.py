"""The few Kubernetes reads one reconcile makes, answered from memory, and an applier that only records.

For unit tests of the wake loop and the store path around it (the reconcile slot, store problems
becoming conditions), where the API server is not what is under test; the integration tests run the
real one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from modelapp_operator.loop import Reconciler
from modelapp_operator.snapshot import Plan


def _not_found() -> ApiException:
    return ApiException(status=404, reason="Not Found")


@dataclass
class FakeKube:
    """ModelApps by (namespace, name); every other object is absent."""

    apps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    async def get_namespaced_custom_object(
        self, _group: str, _version: str, namespace: str, _plural: str, name: str, **_: Any
    ) -> dict[str, Any]:
        app = self.apps.get((namespace, name))
        if app is None:
            raise _not_found()
        return copy.deepcopy(app)

    async def read_namespaced_deployment(self, _name: str, _namespace: str, **_: Any) -> Any:
        raise _not_found()

    async def read_namespaced_service(self, _name: str, _namespace: str, **_: Any) -> Any:
        raise _not_found()

    async def read_namespaced_secret(self, _name: str, _namespace: str, **_: Any) -> Any:
        raise _not_found()


@dataclass
class RecordingApplier:
    plans: dict[str, Plan] = field(default_factory=dict)

    async def apply(self, app: dict[str, Any], decided: Plan) -> None:
        self.plans[app["metadata"]["name"]] = decided


async def no_events(*_: Any, **__: Any) -> None:
    return None


def wire(reconciler: Reconciler, kube: FakeKube) -> RecordingApplier:
    """Point the reconciler's reads at ``kube`` and its writes at a recorder."""
    gather = reconciler.gather
    gather.custom = gather.core = gather.apps = kube  # type: ignore[assignment]
    applier = RecordingApplier()
    reconciler.applier = applier  # type: ignore[assignment]
    return applier


def api_client() -> client.ApiClient:
    """Never used to send anything: every read goes to a FakeKube."""
    return client.ApiClient()
