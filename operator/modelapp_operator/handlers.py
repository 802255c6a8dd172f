"""kopf handlers: thin; each one hands over to the Reconciler (loop.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes_asyncio import client, config
from prometheus_client import start_http_server

from modelapp_operator.loop import Reconciler
from modelapp_operator.names import GROUP, LABEL_MANAGED_BY, LABEL_MODELAPP, MANAGED_BY, PLURAL, VERSION
from modelapp_operator.poller import AppKey
from modelapp_operator.settings import get_settings
from modelapp_operator.snapshot import Event

log = logging.getLogger(__name__)


def _post_event(app: dict[str, Any], event: Event) -> None:
    kopf.event(cast(kopf.Body, app), type=event.type, reason=event.reason, message=event.message)


async def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    return client.ApiClient()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours = get_settings()
    # Progress and diff-base in our own annotations; status is ours alone (the schema prunes the rest).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.modelapp.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.modelapp.dev", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "modelapp.dev/daemon"
    settings.posting.level = logging.WARNING  # k8s Events come from the planner, not from kopf's logs
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    if ours.metrics_port:
        start_http_server(ours.metrics_port)
    memo.reconciler = Reconciler(await _api_client(), ours, _post_event)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = getattr(memo, "reconciler", None)
    if reconciler is not None:
        await reconciler.close()


# Why a daemon loop rather than kopf's handlers raising kopf.TemporaryError(delay=...): what a ModelApp waits
# for is mostly not a change of the ModelApp itself — a new blob in the store (the shared poller wakes the
# app), a Deployment's or Job's progress (the watch handlers below wake it) — and kopf's retries only run
# on changes of the handled object, stored in its annotations (a write per retry). The loop keeps one
# reconcile path for all of these, sleeps until woken or until the planner's requeue time, and backs off
# (jittered, exponential) per app after failures.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=2.0)
async def follow(namespace: str | None, name: str, stopped: kopf.DaemonStopped, memo: Any, **_: Any) -> None:
    """One long-lived task per ModelApp: reconcile, then sleep until woken or the resync period ends."""
    await memo.reconciler.run(AppKey(namespace or "", name), stopped)


# The watch handlers are coroutines on purpose: kopf runs plain functions in a thread pool, and the
# asyncio.Events they set are not thread-safe (threads would also add malloc arenas to the RSS).
@kopf.on.event(GROUP, VERSION, PLURAL)
async def modelapp_changed(
    namespace: str | None, name: str, meta: kopf.Meta, status: kopf.Status, memo: Any, **_: Any
) -> None:
    """Spec edits and our annotations (approve, reject) wake the ModelApp at once; our own status writes do not."""
    ours = {k: v for k, v in meta.annotations.items() if k.startswith("modelapp.dev/")}
    key = AppKey(namespace or "", name)
    memo.reconciler.changed(key, (meta.get("generation"), status.get("observedGeneration"), ours))
    # ModelApps that follow this one react to what it serves and whether it is Ready.
    ready = [c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    memo.reconciler.source_changed(key, (str(status.get("servingVersion")), ready))


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGED_BY})
@kopf.on.event("batch", "v1", "jobs", labels={LABEL_MANAGED_BY: MANAGED_BY})
async def owned_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
    """Progress of an owned Deployment (rollout) or Job (build, verify) wakes its ModelApp."""
    owner = labels.get(LABEL_MODELAPP)
    if owner:
        memo.reconciler.wake(AppKey(namespace or "", owner))
