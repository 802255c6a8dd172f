"""Apply: every write one reconcile makes (server-side apply, Job creation, the status, consumed
annotations), then its Events and metrics. Nothing here decides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from modelapp_operator import kubeapi, metrics
from modelapp_operator.names import FIELD_MANAGER, GROUP, PLURAL, VERSION
from modelapp_operator.snapshot import Event, Plan

EventPoster = Callable[[dict[str, Any], Event], None]


class Applier:
    def __init__(self, api: client.ApiClient, post_event: EventPoster, timeout: float) -> None:
        self.timeout = timeout
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.post_event = post_event

    async def apply(self, app: dict[str, Any], decided: Plan) -> None:
        ns, name = app["metadata"]["namespace"], app["metadata"]["name"]
        for obj in decided.apply:
            await self._server_side_apply(obj)
        for job in decided.create:
            await self._create_job(ns, job)
        body = decided.body
        if body != (app.get("status") or {}):
            # The whole status replaces the old one (a merge patch would keep stale nested keys), and
            # the resourceVersion we observed makes it conditional: if someone changed the object
            # since, the API server answers 409 and the next reconcile decides again on fresh data.
            await self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, ns, PLURAL, name, {**app, "status": body}, _request_timeout=self.timeout
            )
        if decided.remove_annotations:
            remove = {"metadata": {"annotations": dict.fromkeys(decided.remove_annotations)}}
            await self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                ns,
                PLURAL,
                name,
                remove,
                _content_type=kubeapi.MERGE,
                _request_timeout=self.timeout,
            )
        for event in decided.events:
            self.post_event(app, event)
        for metric, value in decided.observations:
            metrics.observe(ns, name, metric, value)

    async def _create_job(self, namespace: str, job: dict[str, Any]) -> None:
        try:
            await self.batch.create_namespaced_job(namespace, job, _request_timeout=self.timeout)  # type: ignore[arg-type]  # dicts pass as they are
        except ApiException as exc:
            if not kubeapi.is_conflict(exc):  # the same inputs already have their Job (deterministic name)
                raise

    def patcher(self, kind: str) -> Callable[..., Awaitable[Any]]:
        """The API call that server-side applies an object of ``kind`` (every kind a plan applies)."""
        calls: dict[str, Callable[..., Awaitable[Any]]] = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "ConfigMap": self.core.patch_namespaced_config_map,
        }
        return calls[kind]

    async def _server_side_apply(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        call = self.patcher(obj["kind"])
        await call(
            meta["name"],
            meta["namespace"],
            obj,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=kubeapi.APPLY,
        )
