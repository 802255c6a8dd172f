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

from modelapp_operator import builders, kubeapi, prometheus
from modelapp_operator.figures import CanaryFigures, canary_figures, shadow_figures
from modelapp_operator.identity import Identities
from modelapp_operator.names import (
    ANN_FOLLOWERS,
    ANN_LAST_GOOD,
    ANN_SPEC_HASH,
    ANN_TEMPLATE_HASH,
    GROUP,
    LABEL_MODELAPP,
    LABEL_TRACK,
    PLURAL,
    VERSION,
    Cond,
    Reason,
    Stage,
    canary_name,
    canary_selector,
    selector_labels,
    shadow_label,
    shadow_name,
)
from modelapp_operator.policy import Quarantine, candidates, effective_quarantine
from modelapp_operator.poller import AppKey, ContainerPoller, Endpoint, PollerRegistry, Subscription
from modelapp_operator.scrape import scrape
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.snapshot import (
    DeploymentState,
    JobState,
    ManifestInfo,
    Observed,
    Published,
    SourceState,
    Stalled,
    StoreView,
    Waiting,
)
from modelapp_operator.spec import AppSpec, Follow, parse_spec
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
    source: SourceState | None = None


def source_state(key: str, src: dict[str, Any]) -> SourceState:
    status = parse_status(src.get("status"))
    ready_cond = next((c for c in status.conditions if c.type == Cond.READY and c.status == "True"), None)
    return SourceState(
        key=key,
        serving=status.serving_version,
        ready=ready_cond is not None,
        ready_since=ready_cond.last_transition_time if ready_cond is not None else None,
        bakes=(src.get("spec") or {}).get("packaging", "Image") == "Image",
        quarantined=frozenset(q.version for q in status.quarantined),
    )


def followed_view(source: SourceState) -> StoreView:
    """A follower's store: the one version its source serves (unless the source quarantined it)."""
    serving = source.serving
    if serving is None or not serving.sha256 or serving.version in source.quarantined:
        return StoreView(())
    uploaded = (
        datetime.strptime(serving.since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if serving.since
        else utcnow()
    )
    info = ManifestInfo(serving.version, serving.sha256, serving.sha256, dict(serving.metrics or {}))
    return StoreView((Published(serving.version, serving.sha256, uploaded),), None, {serving.version: info})


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


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
        spec = parse_spec(key.name, app.get("spec") or {}, key.namespace)
        status = parse_status(app.get("status"))
        if spec.follow is not None:
            found = await self._source(key, spec.follow)
            if isinstance(found, Stalled):
                return AppRead(app, spec, status, StoreView(None), found)
            return AppRead(app, spec, status, followed_view(found), None, found)
        store, stalled = await self._store(key, spec, status, app["metadata"].get("annotations") or {})
        return AppRead(app, spec, status, store, stalled)

    async def _source(self, key: AppKey, follow: Follow) -> SourceState | Stalled:
        """The ModelApp ``follow`` names, if it exists and lets this namespace follow it."""
        try:
            src: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, follow.namespace, PLURAL, follow.model_app, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if kubeapi.is_not_found(exc) or exc.status == 403:
                why = (
                    "not found"
                    if exc.status == 404
                    else "not readable by the operator (it does not watch that namespace)"
                )
                return Stalled(Reason.SOURCE_NOT_FOUND, f"versionPolicy.follow: ModelApp {follow.key} {why}")
            raise
        allowed = {
            n.strip() for n in (src["metadata"].get("annotations") or {}).get(ANN_FOLLOWERS, "").split(",")
        }
        if follow.namespace != key.namespace and not allowed & {key.namespace, "*"}:
            return Stalled(
                Reason.FOLLOW_NOT_ALLOWED,
                f"ModelApp {follow.key} does not allow namespace {key.namespace} to follow it: its owners can "
                f"allow it with the annotation {ANN_FOLLOWERS}={key.namespace}",
            )
        return source_state(follow.key, src)

    async def observe(self, key: AppKey, read: AppRead) -> Observed:
        """The snapshot: ``read`` (from :meth:`observe_store`) and the app's Deployment, Service, Jobs."""
        deployment, service_exists, jobs, candidates = await asyncio.gather(
            self._deployment(key),
            self._service_exists(key),
            self._jobs(key, read.spec),
            self._candidates(key, read),
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
            read.source,
            **candidates,
        )

    async def _store(
        self, key: AppKey, spec: AppSpec, status: ModelAppStatus, annotations: dict[str, str]
    ) -> tuple[StoreView, Stalled | None]:
        endpoint, stalled = await self._endpoint(key, spec)
        if endpoint is None:
            return StoreView(None, None), stalled
        poller = self.registry.subscribe(key, endpoint, Subscription(spec.store.prefix, spec.poll_interval))
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
        src = spec.store
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
        versions, problem = poller.view(key, spec.store.prefix)
        if versions is None:
            return StoreView(None, problem)
        manifests: dict[str, ManifestInfo] = {}
        unusable: dict[str, str] = {}
        for version in candidates(spec.policy, versions, quarantined)[:MANIFEST_TRIES]:
            try:
                info = await poller.manifest(spec.store.prefix, version)
            except StoreError as exc:
                return StoreView(None, Waiting(Reason.STORE_UNAVAILABLE, f"reading a manifest failed: {exc}"))
            if isinstance(info, ManifestInfo):
                manifests[version.version] = info
                break
            unusable[version.version] = info
        return StoreView(versions, None, manifests, unusable)

    async def _candidates(self, key: AppKey, read: AppRead) -> dict[str, Any]:
        """rollout.strategy.canary and rollout.shadow: the candidate's Deployments, the shadow Service's
        address, and the figures of the step or comparison under way (Observed's fields by name)."""
        spec, pending = read.spec, read.status.pending
        stage = pending.stage if pending is not None else None
        found: dict[str, Any] = {}
        if spec.canary is not None or stage == Stage.CANARY:
            found["canary"] = await self._deployment(key, canary_name(key.name))
        if spec.shadow is not None or stage == Stage.SHADOWING:
            found["shadow"] = await self._deployment(key, shadow_name(key.name))
            found["shadow_service_ip"] = await self._service_ip(key.namespace, shadow_name(key.name))
        if pending is None or stage not in (Stage.CANARY, Stage.SHADOWING):
            return found
        if stage == Stage.CANARY:
            found["canary_figures"] = await self._canary_figures(key, spec, pending.version)
            return found
        serving = read.status.serving_version
        stable = _selector(selector_labels(key.name)) + f",!{LABEL_TRACK}"
        texts = await scrape(self.core, key.namespace, stable, self.timeout)
        if texts is not None and serving is not None:
            label = shadow_label(pending.version, read.status.attempt(pending.version))
            found["shadow_figures"] = shadow_figures(texts, spec.model_name, serving.version, label)
        return found

    async def _canary_figures(self, key: AppKey, spec: AppSpec, version: str) -> CanaryFigures | None:
        """From the Prometheus the analysis names, else from the canary pods' own metrics endpoints."""
        url = spec.canary.analysis.prometheus_url if spec.canary is not None else None
        if url:
            return await prometheus.canary_figures(url, key.namespace, spec.model_name, version)
        texts = await scrape(self.core, key.namespace, _selector(canary_selector(key.name)), self.timeout)
        return canary_figures(texts, spec.model_name, version) if texts is not None else None

    async def _service_ip(self, namespace: str, name: str) -> str:
        try:
            svc = await self.core.read_namespaced_service(name, namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if kubeapi.is_not_found(exc):
                return ""
            raise
        ip = svc.spec.cluster_ip if svc.spec is not None else None
        return str(ip) if ip and ip != "None" else ""

    async def _deployment(self, key: AppKey, name: str | None = None) -> DeploymentState | None:
        try:
            d = await self.apps.read_namespaced_deployment(
                name or key.name, key.namespace, _request_timeout=self.timeout
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
        if name is not None or state.complete or "initContainers" not in state.template.get("spec", {}):
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
