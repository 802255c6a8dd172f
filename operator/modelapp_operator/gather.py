"""Gather: every read one reconcile needs (the ModelApp, its Secret, the store's view, its Deployment,
Service and Jobs), into one ``Observed`` snapshot. Nothing here writes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from modelapp_operator import builders, kubeapi
from modelapp_operator.identity import Identities
from modelapp_operator.names import (
    ANN_LAST_GOOD,
    ANN_SPEC_HASH,
    ANN_TEMPLATE_HASH,
    GROUP,
    LABEL_MODELAPP,
    PLURAL,
    VERSION,
    Reason,
    selector_labels,
)
from modelapp_operator.policy import Quarantine, candidates, effective_quarantine
from modelapp_operator.poller import AppKey, ContainerPoller, Endpoint, PollerRegistry, Subscription
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.snapshot import (
    DeploymentState,
    JobState,
    ManifestInfo,
    Observed,
    Stalled,
    StoreView,
    Waiting,
)
from modelapp_operator.spec import AppSpec, parse_spec
from modelapp_operator.status import ModelAppStatus, parse_status
from modelapp_operator.store import BlobCredentials, StoreError

# How many candidates' manifests one reconcile reads before it gives up on finding a usable one.
MANIFEST_TRIES = 5
TERMINATION_CHARS = 2000
FETCH_FAILURE_CHARS = 600


@dataclass(frozen=True)
class AppRead:
    """What a reconcile reads before taking its slot: the ModelApp, and the store as it sees it."""

    app: dict[str, Any]
    spec: AppSpec
    status: ModelAppStatus
    store: StoreView
    stalled: Stalled | None


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _event_time(event: Any) -> datetime:
    """When an Event last happened (core/v1 Events fill one of these, depending on who posted them)."""
    when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return when if isinstance(when, datetime) else datetime.min.replace(tzinfo=UTC)


class Gatherer:
    """Reads for one reconcile. ``credentials`` is where the store factory finds each endpoint's secrets."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: OperatorSettings,
        registry: PollerRegistry,
        credentials: dict[Endpoint, BlobCredentials],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.settings = settings
        self.registry = registry
        self.credentials = credentials
        self.clock = clock
        self.timeout = settings.api_timeout_seconds
        self.identities = Identities(self.core, settings.tenant_id, self.timeout)

    async def observe_store(self, key: AppKey) -> AppRead | None:
        """The ModelApp and its store view (the reads that wait on the store), or None when the ModelApp
        is gone or going. The loop calls this before it takes a reconcile slot."""
        try:
            app: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, key.namespace, PLURAL, key.name, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if kubeapi.is_not_found(exc):
                return None
            raise
        if app["metadata"].get("deletionTimestamp"):
            return None
        spec = parse_spec(key.name, app.get("spec") or {})
        status = parse_status(app.get("status"))
        store, stalled = await self._store(key, spec, status, app["metadata"].get("annotations") or {})
        return AppRead(app, spec, status, store, stalled)

    async def observe(self, key: AppKey, read: AppRead) -> Observed:
        """The snapshot: ``read`` (from :meth:`observe_store`) and the app's Deployment, Service, Jobs."""
        deployment, service_exists, jobs = await asyncio.gather(
            self._deployment(key), self._service_exists(key), self._jobs(key, read.spec)
        )
        return Observed(
            read.app,
            read.spec,
            read.status,
            read.store,
            deployment,
            service_exists,
            self.clock(),
            read.stalled,
            jobs,
        )

    async def _store(
        self, key: AppKey, spec: AppSpec, status: ModelAppStatus, annotations: dict[str, str]
    ) -> tuple[StoreView, Stalled | None]:
        endpoint, stalled = await self._endpoint(key, spec)
        if endpoint is None:
            return StoreView(None, None), stalled
        poller = self.registry.subscribe(key, endpoint, Subscription(spec.source.prefix, spec.poll_interval))
        self.evict_credentials()  # e.g. the endpoint of a Secret before it rotated
        await poller.first_listing(self.settings.first_listing_timeout)
        return await self._store_view(key, spec, poller, effective_quarantine(status, annotations)), None

    def evict_credentials(self) -> None:
        """Forget the credentials of endpoints no poller reads any more (a rotated Secret, a deleted app)."""
        for endpoint in [e for e in self.credentials if e not in self.registry.pollers]:
            del self.credentials[endpoint]

    async def _endpoint(self, key: AppKey, spec: AppSpec) -> tuple[Endpoint | None, Stalled | None]:
        """Who reads the store for this app; the endpoint (what a poller is keyed by) names that identity
        and the namespace, so no two namespaces ever share a listing or a manifest cache."""
        src = spec.source
        if src.secret_name:
            found = await self._secret_credentials(key, src.secret_name)
        elif src.identity_service_account:
            found = await self.identities.credentials(
                key.namespace, src.identity_service_account, src.workload_identity_client_id
            )
        elif self.settings.require_object_identity:
            found = Stalled(
                Reason.IDENTITY_REQUIRED,
                "this operator reads no store with its own identity: set auth.workloadIdentity.serviceAccountName "
                f"to a ServiceAccount of namespace {key.namespace} federated with a managed identity that may "
                "read the container, or use auth.secretRef",
            )
        else:
            found = BlobCredentials(), f"operator:{key.namespace}:{src.workload_identity_client_id or ''}"
        if isinstance(found, Stalled):
            return None, found
        creds, credential = found
        endpoint = Endpoint(src.account_url, src.container, credential)
        self.credentials[endpoint] = creds
        return endpoint, None

    async def _secret_credentials(self, key: AppKey, name: str) -> tuple[BlobCredentials, str] | Stalled:
        try:
            secret = await self.core.read_namespaced_secret(
                name, key.namespace, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if kubeapi.is_not_found(exc):
                return Stalled(
                    Reason.SECRET_NOT_FOUND,
                    f"Secret {name} (auth.secretRef) not found in namespace {key.namespace}; "
                    "create it with one of connectionString, sasToken or accountKey",
                )
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        creds = BlobCredentials.from_mapping(data)
        if not creds.secrets:
            return Stalled(
                Reason.SECRET_NOT_FOUND,
                f"Secret {name} has none of the keys connectionString, sasToken or accountKey",
            )
        # A fingerprint, so that a rotated secret gets a fresh client; the secret itself is never kept here.
        digest = hashlib.sha256("\0".join(creds.secrets).encode()).hexdigest()[:16]
        return creds, f"secret:{key.namespace}/{name}:{digest}"

    async def _store_view(
        self, key: AppKey, spec: AppSpec, poller: ContainerPoller, quarantined: list[Quarantine]
    ) -> StoreView:
        """The listing, and the manifests of the policy's candidates, best first, until a usable one."""
        versions, problem = poller.view(key, spec.source.prefix)
        if versions is None:
            return StoreView(None, problem)
        manifests: dict[str, ManifestInfo] = {}
        unusable: dict[str, str] = {}
        for version in candidates(spec.policy, versions, quarantined)[:MANIFEST_TRIES]:
            try:
                info = await poller.manifest(spec.source.prefix, version)
            except StoreError as exc:
                return StoreView(None, Waiting(Reason.STORE_UNAVAILABLE, f"reading a manifest failed: {exc}"))
            if isinstance(info, ManifestInfo):
                manifests[version.version] = info
                break
            unusable[version.version] = info
        return StoreView(versions, None, manifests, unusable)

    async def _deployment(self, key: AppKey) -> DeploymentState | None:
        try:
            d = await self.apps.read_namespaced_deployment(
                key.name, key.namespace, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if kubeapi.is_not_found(exc):
                return None
            raise
        raw: dict[str, Any] = self.api.sanitize_for_serialization(d)
        status = raw.get("status") or {}
        annotations = raw["metadata"].get("annotations") or {}
        deadline = any(
            c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
            for c in status.get("conditions") or []
        )
        state = DeploymentState(
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
        if state.complete or "initContainers" not in state.template.get("spec", {}):
            return state
        return replace(state, pod_problem=await self._fetch_failure(key, state.template_hash))

    async def _fetch_failure(self, key: AppKey, template_hash: str) -> str:
        """Why the newest pods' fetch init container fails, in its own words; "" when it does not."""
        pods = await self.core.list_namespaced_pod(
            key.namespace,
            label_selector=",".join(f"{k}={v}" for k, v in selector_labels(key.name).items()),
            _request_timeout=self.timeout,
        )
        for pod in pods.items:
            if (pod.metadata.annotations or {}).get(ANN_TEMPLATE_HASH) != template_hash:
                continue
            for cs in pod.status.init_container_statuses or []:
                if cs.name != builders.FETCH_CONTAINER:
                    continue
                for state in (cs.state, cs.last_state):
                    term = state.terminated if state else None
                    if term is not None and term.exit_code:
                        why = " ".join(str(term.message or term.reason or "").split())[-FETCH_FAILURE_CHARS:]
                        return f"{builders.FETCH_CONTAINER} in pod {pod.metadata.name} failed: {why}"
        return ""

    async def _jobs(self, key: AppKey, spec: AppSpec) -> dict[str, JobState]:
        """This app's build and verify Jobs; finished ones with the tail of their termination message."""
        if spec.packaging != "Image":
            return {}
        jobs = await self.batch.list_namespaced_job(
            key.namespace, label_selector=f"{LABEL_MODELAPP}={key.name}", _request_timeout=self.timeout
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
            namespace,
            field_selector=f"involvedObject.uid={job_uid},reason=FailedCreate",
            _request_timeout=self.timeout,
        )
        newest = max(events.items, key=_event_time, default=None)
        return str(newest.message or "")[:TERMINATION_CHARS] if newest is not None else ""

    async def _termination_message(self, namespace: str, job_name: str) -> str:
        """The newest pod's termination message: Kaniko's digest, or the tail of a failure."""
        pods = await self.core.list_namespaced_pod(
            namespace, label_selector=f"job-name={job_name}", _request_timeout=self.timeout
        )
        newest = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)[-1:] if pods.items else []
        for pod in newest:
            for cs in pod.status.container_statuses or []:
                term = cs.state.terminated if cs.state else None
                if term is not None and term.message:
                    return str(term.message)[-TERMINATION_CHARS:]
        return ""

    async def _service_exists(self, key: AppKey) -> bool:
        try:
            await self.core.read_namespaced_service(key.name, key.namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if kubeapi.is_not_found(exc):
                return False
            raise
        return True
