"""The wake loop: one long-lived task per ModelApp reconciles (gather → plan → apply), then sleeps until
something it depends on changes, its requeue time comes, or its backoff after a failure ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from modelapp_operator import kubeapi, metrics
from modelapp_operator.apply import Applier, EventPoster
from modelapp_operator.gather import AppRead, Gatherer, utcnow
from modelapp_operator.planner import plan
from modelapp_operator.poller import AppKey, Endpoint, PollerRegistry
from modelapp_operator.retry import BACKOFF_CAP as BACKOFF_CAP
from modelapp_operator.retry import backoff
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.store import BlobCredentials, ModelStore, store_from_credentials

log = logging.getLogger(__name__)

CONFLICT_RETRY = 0.2  # the object changed under us: decide again on fresh data, soon


class Stopped(Protocol):
    def __bool__(self) -> bool: ...


class Reconciler:
    """Reconciles ModelApps. One instance per operator process; the kopf handlers call into it."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: OperatorSettings,
        post_event: EventPoster,
        store_factory: Callable[[Endpoint, BlobCredentials], ModelStore] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.api = api
        self.settings = settings
        credentials: dict[Endpoint, BlobCredentials] = {}
        factory = store_factory or self._azure_store
        self.registry = PollerRegistry(
            lambda ep: factory(ep, credentials[ep]), self.wake, floor=settings.poll_interval_floor_seconds
        )
        self.gather = Gatherer(api, settings, self.registry, credentials, clock)
        self.applier = Applier(api, post_event, settings.api_timeout_seconds)
        self._wakes: dict[AppKey, asyncio.Event] = {}
        self._fingerprints: dict[AppKey, object] = {}
        self._failures: dict[AppKey, int] = {}
        # versionPolicy.follow: who follows each ModelApp, and what of it they react to, last seen.
        self._followers: dict[AppKey, set[AppKey]] = {}
        self._served: dict[AppKey, object] = {}
        self._slots = asyncio.Semaphore(settings.max_concurrent_reconciles)

    def _azure_store(self, endpoint: Endpoint, creds: BlobCredentials) -> ModelStore:
        opts = self.settings.store_options()
        token = None
        if creds.federated is not None:
            from azure.identity.aio import ClientAssertionCredential

            fed = creds.federated
            token = ClientAssertionCredential(fed.tenant_id, fed.client_id, func=fed.assertion)
        return store_from_credentials(
            endpoint.account_url,
            endpoint.container,
            creds,
            options=opts,
            token_credential=token,
            owns_token_credential=True,
        )

    async def close(self) -> None:
        await self.registry.close()
        await self.api.close()

    def changed(self, key: AppKey, fingerprint: object) -> None:
        """Wake the ModelApp if what it would react to changed since the last event."""
        if self._fingerprints.get(key) != fingerprint:
            self._fingerprints[key] = fingerprint
            self.wake(key)

    def source_changed(self, key: AppKey, served: object) -> None:
        """A ModelApp's serving version or readiness changed: wake the ModelApps that follow it."""
        if self._served.get(key) != served:
            self._served[key] = served
            for follower in self._followers.get(key, ()):
                self.wake(follower)

    def _note_follow(self, key: AppKey, read: AppRead) -> None:
        for followers in self._followers.values():
            followers.discard(key)
        follow = read.spec.follow
        if follow is not None:
            self._followers.setdefault(AppKey(follow.namespace, follow.model_app), set()).add(key)

    def wake(self, key: AppKey) -> None:
        event = self._wakes.get(key)
        if event is not None:
            event.set()

    async def run(self, key: AppKey, stopped: Stopped) -> None:
        wake = self._wakes.setdefault(key, asyncio.Event())
        try:
            while not stopped:
                wake.clear()
                delay = await self.reconcile_guarded(key)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay or self.settings.resync_seconds)
        finally:
            self._wakes.pop(key, None)
            self._fingerprints.pop(key, None)
            self._failures.pop(key, None)
            for followers in self._followers.values():
                followers.discard(key)
            self.registry.unsubscribe(key)
            self.gather.evict_credentials()
            metrics.forget(key.namespace, key.name)

    async def reconcile_guarded(self, key: AppKey) -> float | None:
        """One reconcile; a failure is logged and counted, and the next try waits its backoff."""
        start = time.monotonic()
        try:
            delay = await self.reconcile(key)
        except ApiException as exc:
            if kubeapi.is_conflict(exc):
                metrics.RECONCILES.labels("conflict").inc()
                return CONFLICT_RETRY * (1 + random.random())  # noqa: S311 - jitter, not a secret
            metrics.RECONCILES.labels("error").inc()
            log.warning(
                "reconcile of %s failed: API %s %s: %s",
                key,
                exc.status,
                exc.reason,
                kubeapi.api_message(exc),
            )
            return self._failed(key)
        except Exception:
            metrics.RECONCILES.labels("error").inc()
            log.exception("reconcile of %s failed", key)
            return self._failed(key)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - start)
        metrics.RECONCILES.labels("ok").inc()
        self._failures.pop(key, None)
        return delay

    def _failed(self, key: AppKey) -> float:
        self._failures[key] = self._failures.get(key, 0) + 1
        return backoff(self._failures[key])

    async def reconcile(self, key: AppKey) -> float | None:
        # The ModelApp and its store view (a first listing, manifests) are read before a slot is taken:
        # a slow or hostile store then holds up only the apps reading from it, not every tenant's.
        read = await self.gather.observe_store(key)
        if read is None:
            return None
        self._note_follow(key, read)
        async with self._slots:
            observed = await self.gather.observe(key, read)
            decided = plan(observed, self.settings.images)
            await self.applier.apply(observed.app, decided)
        return decided.requeue_after
