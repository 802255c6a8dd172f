"""The reconcile loop of one ModelApp: observe (all reads) → plan (pure) → act (all writes)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from modelapp_operator import builders, metrics
from modelapp_operator.gates import JobState, effective_quarantine
from modelapp_operator.names import (
    ANN_LAST_GOOD,
    ANN_SPEC_HASH,
    FIELD_MANAGER,
    GROUP,
    LABEL_MODELAPP,
    PLURAL,
    VERSION,
    Reason,
)
from modelapp_operator.planner import DeploymentState, Event, ManifestInfo, Observed, Plan, StoreView, plan
from modelapp_operator.policy import Quarantine, resolve
from modelapp_operator.poller import AppKey, ContainerPoller, Endpoint, PollerRegistry, Subscription
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.spec import AppSpec, parse_spec
from modelapp_operator.store import (
    BlobCredentials,
    ModelStore,
    StoreError,
    StoreOptions,
    store_from_credentials,
)

log = logging.getLogger(__name__)

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


class Stopped(Protocol):
    def __bool__(self) -> bool: ...


EventPoster = Callable[[dict[str, Any], Event], None]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _api_message(exc: ApiException) -> str:
    """The API server's own message (a Status object); bodies of our writes never hold secrets."""
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))[:500]
    except (TypeError, ValueError, AttributeError):
        return ""


def _event_time(event: Any) -> datetime:
    """When an Event last happened (core/v1 Events fill one of these, depending on who posted them)."""
    when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return when if isinstance(when, datetime) else datetime.min.replace(tzinfo=UTC)


class Controller:
    """Reconciles ModelApps. One instance per operator process; kopf handlers call into it."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: OperatorSettings,
        post_event: EventPoster,
        store_factory: Callable[[Endpoint, BlobCredentials], ModelStore] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.settings = settings
        self.post_event = post_event
        self.clock = clock
        self._credentials: dict[Endpoint, BlobCredentials] = {}
        self._store_factory = store_factory or self._azure_store
        self.registry = PollerRegistry(lambda ep: self._store_factory(ep, self._credentials[ep]), self.wake)
        self._wakes: dict[AppKey, asyncio.Event] = {}
        self._fingerprints: dict[AppKey, object] = {}
        self._gate = asyncio.Semaphore(settings.max_concurrent_reconciles)

    def _azure_store(self, endpoint: Endpoint, creds: BlobCredentials) -> ModelStore:
        opts = StoreOptions(
            connection_timeout=self.settings.store_connection_timeout,
            retry_total=self.settings.store_retry_total,
        )
        return store_from_credentials(endpoint.account_url, endpoint.container, creds, options=opts)

    # --- the per-ModelApp loop (a kopf daemon runs it) -----------------------------------------

    def changed(self, key: AppKey, fingerprint: object) -> None:
        """Wake the ModelApp if what it would react to changed since the last event."""
        if self._fingerprints.get(key) != fingerprint:
            self._fingerprints[key] = fingerprint
            self.wake(key)

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
            self.registry.unsubscribe(key)

    async def reconcile_guarded(self, key: AppKey) -> float | None:
        async with self._gate:
            start = time.monotonic()
            try:
                delay = await self.reconcile(key)
            except ApiException as exc:
                if exc.status == 409:
                    metrics.RECONCILES.labels("conflict").inc()
                    return 0.2  # the object changed under us: decide again on fresh data
                metrics.RECONCILES.labels("error").inc()
                log.warning(
                    "reconcile of %s failed: API %s %s: %s", key, exc.status, exc.reason, _api_message(exc)
                )
                return 5.0
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                log.exception("reconcile of %s failed", key)
                return 10.0
            finally:
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - start)
            metrics.RECONCILES.labels("ok").inc()
            return delay

    async def reconcile(self, key: AppKey) -> float | None:
        observed = await self.observe(key)
        if observed is None:
            return None
        decided = plan(observed, self.settings.images)
        await self.act(observed.app, decided)
        return decided.requeue_after

    # --- observe ------------------------------------------------------------------------------

    async def observe(self, key: AppKey) -> Observed | None:
        try:
            app: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, key.namespace, PLURAL, key.name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        if app["metadata"].get("deletionTimestamp"):
            return None
        spec = parse_spec(key.name, app.get("spec") or {})
        stalled: tuple[str, str] | None = None
        store = StoreView(None, None)
        endpoint, stalled = await self._endpoint(key, spec)
        if endpoint is not None:
            poller = self.registry.subscribe(
                key, endpoint, Subscription(spec.source.prefix, spec.poll_interval)
            )
            await poller.first_listing(self.settings.first_listing_timeout)
            annotations = app["metadata"].get("annotations") or {}
            store = await self._store_view(key, spec, poller, app.get("status") or {}, annotations)
        deployment, service_exists, jobs = await asyncio.gather(
            self._deployment(key), self._service_exists(key), self._jobs(key, spec)
        )
        return Observed(app, spec, store, deployment, service_exists, self.clock(), stalled, jobs)

    async def _endpoint(self, key: AppKey, spec: AppSpec) -> tuple[Endpoint | None, tuple[str, str] | None]:
        src = spec.source
        creds = BlobCredentials()
        credential = f"default:{src.workload_identity_client_id or ''}"
        if src.secret_name:
            try:
                secret = await self.core.read_namespaced_secret(src.secret_name, key.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None, (
                        Reason.SECRET_NOT_FOUND,
                        f"Secret {src.secret_name} (auth.secretRef) not found in namespace {key.namespace}; "
                        "create it with one of connectionString, sasToken or accountKey",
                    )
                raise
            data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            creds = BlobCredentials.from_mapping(data)
            if not creds.secrets:
                return None, (
                    Reason.SECRET_NOT_FOUND,
                    f"Secret {src.secret_name} has none of the keys connectionString, sasToken or accountKey",
                )
            # A fingerprint, so that a rotated secret gets a fresh client; the secret itself is never kept here.
            digest = hashlib.sha256("\0".join(creds.secrets).encode()).hexdigest()[:16]
            credential = f"secret:{key.namespace}/{src.secret_name}:{digest}"
        endpoint = Endpoint(src.account_url, src.container, credential)
        self._credentials[endpoint] = creds
        return endpoint, None

    async def _store_view(
        self,
        key: AppKey,
        spec: AppSpec,
        poller: ContainerPoller,
        status: dict[str, Any],
        annotations: dict[str, str],
    ) -> StoreView:
        versions, problem = poller.view(key, spec.source.prefix)
        if versions is None:
            return StoreView(None, problem)
        quarantined = effective_quarantine(status, annotations)
        manifests: dict[str, ManifestInfo] = {}
        invalid: list[str] = []
        # The newest version (for latestVersion) and the one the policy picks; an unusable manifest
        # excludes that version and the policy picks again.
        for _ in range(5):
            res = resolve(spec.policy, versions, quarantined)
            if res.version is None:
                break
            try:
                info = await poller.manifest(spec.source.prefix, res.version)
            except StoreError as exc:
                return StoreView(None, (Reason.STORE_UNAVAILABLE, f"reading a manifest failed: {exc}"))
            if isinstance(info, ManifestInfo):
                manifests[res.version.version] = info
                break
            invalid.append(info)
            quarantined.append(Quarantine(res.version.version, res.version.etag))
        problem = (Reason.MANIFEST_INVALID, "; ".join(invalid)) if invalid else None
        return StoreView(versions, problem, manifests)

    async def _deployment(self, key: AppKey) -> DeploymentState | None:
        try:
            d = await self.apps.read_namespaced_deployment(key.name, key.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw: dict[str, Any] = self.api.sanitize_for_serialization(d)
        status = raw.get("status") or {}
        annotations = raw["metadata"].get("annotations") or {}
        deadline = any(
            c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
            for c in status.get("conditions") or []
        )
        return DeploymentState(
            generation=int(raw["metadata"].get("generation", 0)),
            observed_generation=int(status.get("observedGeneration", 0)),
            spec_replicas=int(raw["spec"].get("replicas", 1)),
            replicas=int(status.get("replicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            available=int(status.get("availableReplicas", 0)),
            template=raw["spec"]["template"],
            spec_hash=str(annotations.get(ANN_SPEC_HASH, "")),
            last_good=builders.parse_last_good(annotations.get(ANN_LAST_GOOD)),
            deadline_exceeded=deadline,
        )

    async def _jobs(self, key: AppKey, spec: AppSpec) -> dict[str, JobState]:
        """This app's build and verify Jobs; finished ones with the tail of their termination message."""
        if spec.packaging != "Image":
            return {}
        jobs = await self.batch.list_namespaced_job(
            key.namespace, label_selector=f"{LABEL_MODELAPP}={key.name}"
        )
        states = [await self._job_state(key.namespace, job) for job in jobs.items]
        return {s.name: s for s in states}

    async def _job_state(self, namespace: str, job: Any) -> JobState:
        st = job.status
        conditions = {c.type: c for c in st.conditions or [] if c.status == "True"}
        done_ok = "Complete" in conditions or "SuccessCriteriaMet" in conditions
        failed = "Failed" in conditions or "FailureTarget" in conditions
        message, reason, rejected = "", "", ""
        if failed:
            cond = conditions.get("Failed") or conditions.get("FailureTarget")
            reason = f"{cond.reason}: {cond.message}" if cond is not None else ""
        if done_ok or failed:
            message = await self._termination_message(namespace, job.metadata.name)
        if not (st.active or st.succeeded or st.failed or done_ok):
            # Never had a pod: the API server may be refusing them (Pod Security admission, a quota,
            # a webhook). The Job controller says so only in a FailedCreate event on the Job.
            rejected = await self._pod_refusal(namespace, job.metadata.uid)
        return JobState(
            name=job.metadata.name,
            active=bool(st.active) and not (done_ok or failed),
            succeeded=done_ok,
            failed=failed,
            message=message,
            reason=reason,
            rejected=rejected,
        )

    async def _pod_refusal(self, namespace: str, job_uid: str) -> str:
        """The newest FailedCreate event of a Job: the API server's own words for refusing its pods."""
        events = await self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.uid={job_uid},reason=FailedCreate"
        )
        newest = max(events.items, key=_event_time, default=None)
        return str(newest.message or "")[:2000] if newest is not None else ""

    async def _termination_message(self, namespace: str, job_name: str) -> str:
        """The newest pod's termination message: Kaniko's digest, or the tail of a failure."""
        pods = await self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
        newest = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)[-1:] if pods.items else []
        for pod in newest:
            for cs in pod.status.container_statuses or []:
                term = cs.state.terminated if cs.state else None
                if term is not None and term.message:
                    return str(term.message)[-2000:]
        return ""

    async def _service_exists(self, key: AppKey) -> bool:
        try:
            await self.core.read_namespaced_service(key.name, key.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- act ----------------------------------------------------------------------------------

    async def act(self, app: dict[str, Any], decided: Plan) -> None:
        ns, name = app["metadata"]["namespace"], app["metadata"]["name"]
        for obj in decided.apply:
            await self._apply(obj)
        for job in decided.create:
            try:
                await self.batch.create_namespaced_job(ns, job)  # type: ignore[arg-type]  # dicts pass as they are
            except ApiException as exc:
                if exc.status != 409:  # 409: the same inputs already have their Job (deterministic name)
                    raise
        previous = app.get("status") or {}
        if decided.status != previous:
            # The whole status replaces the old one (a merge patch would keep stale nested keys), and
            # the resourceVersion we observed makes it conditional: if someone changed the object
            # since, the API server answers 409 and the next reconcile decides again on fresh data.
            await self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, ns, PLURAL, name, {**app, "status": decided.status}
            )
        if decided.remove_annotations:
            remove = {"metadata": {"annotations": dict.fromkeys(decided.remove_annotations)}}
            await self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                GROUP, VERSION, ns, PLURAL, name, remove, _content_type=MERGE
            )
        for event in decided.events:
            self.post_event(app, event)
        for metric, value in decided.observations:
            metrics.observe(ns, name, metric, value)

    async def _apply(self, obj: dict[str, Any]) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        call: Callable[..., Awaitable[Any]] = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
        }[kind]
        await call(
            meta["name"], meta["namespace"], obj, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
        )
