"""Pure manifest builders: the Deployment, Service and Jobs a ModelApp owns, as plain dicts."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from modelapp_operator.names import (
    ANN_BUILD_HASH,
    ANN_IMAGE,
    ANN_LAST_GOOD,
    ANN_MODEL_SHA256,
    ANN_MODEL_VERSION,
    ANN_SPEC_HASH,
    ANN_TEMPLATE_HASH,
    COMPONENT_BUILD,
    COMPONENT_SERVER,
    COMPONENT_SHADOW,
    COMPONENT_VERIFY,
    LABEL_COMPONENT,
    canary_name,
    canary_selector,
    common_labels,
    owner_reference,
    selector_labels,
    shadow_name,
    shadow_selector,
    short_hash,
)
from modelapp_operator.snapshot import Images, Target
from modelapp_operator.spec import AppSpec

MODELS_DIR = "/models"
# How long a terminating serving pod goes on answering before the scorer is told to stop.
PRE_STOP_SECONDS = 5
HTTP_PORT_NAME = "http"
SERVICE_PORT = 80  # the app's Service (and the shadow's) answer on port 80
# The scorer's operations port (/metrics, /docs): never the serving port, so the Service does not expose it.
METRICS_PORT_NAME = "metrics"
METRICS_PORT = 8082
# The scorer's gRPC API (inference.GRPCInferenceService) and grpc.health.v1; the Service exposes it as is.
GRPC_PORT_NAME = "grpc"
GRPC_PORT = 8081
FETCH_CONTAINER = "fetch-model"
# The scorer's default SCORING_SHADOW_CONFIG is shadow.json in this directory.
SHADOW_DIR = "/etc/modelapp/shadow"
SHADOW_FILE = "shadow.json"
# AKS workload identity: the label makes its webhook inject the federated token; the annotation names the
# containers it must leave out.
LABEL_WORKLOAD_IDENTITY = "azure.workload.identity/use"
ANN_WI_SKIP_CONTAINERS = "azure.workload.identity/skip-containers"
# Non-root UID/GID the images are built with (Dockerfile.scoring, Dockerfile.operator).
RUN_AS = 10001


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


STORE_CREDENTIALS = "store-credentials"
STORE_CREDENTIALS_DIR = "/var/run/modelapp/store-credentials"


def store_env(spec: AppSpec) -> list[dict[str, Any]]:
    """Where the model store is, for `modelapp fetch`; secrets only as a mounted volume, never values.

    The Secret's files are read with the operator's own key mapping (``BlobCredentials.from_mapping``), so
    the fetch gets exactly what the operator used. Without a Secret the fetch uses the federated token of
    workload identity alone, never the node's managed identity."""
    src = spec.store
    env: list[dict[str, Any]] = [
        {"name": "MODELAPP_ACCOUNT_URL", "value": src.account_url},
        {"name": "MODELAPP_CONTAINER", "value": src.container},
        {"name": "MODELAPP_PREFIX", "value": src.prefix},
    ]
    if src.secret_name:
        env.append({"name": "MODELAPP_CREDENTIALS_DIR", "value": STORE_CREDENTIALS_DIR})
    else:
        env.append({"name": "MODELAPP_CREDENTIAL", "value": "workload-identity"})
    if src.workload_identity_client_id:
        env.append({"name": "AZURE_CLIENT_ID", "value": src.workload_identity_client_id})
    return env


def store_volumes(spec: AppSpec) -> list[dict[str, Any]]:
    """The Secret of ``auth.secretRef`` as a volume, mounted into the fetch container alone."""
    if not spec.store.secret_name:
        return []
    # 0444: the build pod has no pod-wide fsGroup (Kaniko runs as root), and only the fetch container mounts it.
    return [
        {"name": STORE_CREDENTIALS, "secret": {"secretName": spec.store.secret_name, "defaultMode": 0o444}}
    ]


def _store_mounts(spec: AppSpec) -> list[dict[str, Any]]:
    if not spec.store.secret_name:
        return []
    return [{"name": STORE_CREDENTIALS, "mountPath": STORE_CREDENTIALS_DIR, "readOnly": True}]


def fetch_container(spec: AppSpec, images: Images, version: str, sha256: str, out_dir: str) -> dict[str, Any]:
    """`modelapp fetch` of exactly the bundle the operator resolved: a version republished since then fails
    the pod loudly instead of serving something the status does not say."""
    return {
        "name": FETCH_CONTAINER,
        "image": images.fetch,
        # The fetch image is the operator's, whose entrypoint is the operator: name the CLI.
        "command": ["modelapp"],
        "args": ["fetch", "--version", version, "--expect-sha256", sha256, "--out", out_dir],
        "env": store_env(spec),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            *_store_mounts(spec),
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": container_security_context(),
        # Its error, not a stack of log lines, is what the operator reports when the pod cannot start.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def placement(spec: AppSpec) -> dict[str, Any]:
    """Pod-level fields every pod of the app carries (serving, build, contract test): where it may run
    and what it pulls with. Only what the spec sets, so an app that sets none keeps its template."""
    pod: dict[str, Any] = {}
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = copy.deepcopy(list(spec.tolerations))
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    return pod


def service_account(spec: AppSpec, fetches: bool) -> dict[str, Any]:
    """The ServiceAccount of a pod: a pod that fetches the model from the store runs as the ModelApp's own
    identity (auth.workloadIdentity.serviceAccountName) when it names one, else as serve.serviceAccountName."""
    name = (spec.store.identity_service_account if fetches else None) or spec.service_account
    return {"serviceAccountName": name} if name else {}


def app_env(spec: AppSpec) -> dict[str, Any]:
    """The spec's env for the containers that run the scorer (serving and contract test), if any."""
    return {"env": copy.deepcopy(list(spec.env))} if spec.env else {}


def metrics_port(spec: AppSpec) -> int:
    """The scorer's default operations port, or the next one when the app serves on that one."""
    return METRICS_PORT if spec.port != METRICS_PORT else METRICS_PORT + 1


def grpc_port(spec: AppSpec) -> int:
    """The scorer's default gRPC port, or the next one that is neither the serving nor the operations port."""
    port = GRPC_PORT
    while port in (spec.port, metrics_port(spec)):
        port += 1
    return port


def _scorer(spec: AppSpec, image: str) -> dict[str, Any]:
    probe_port = HTTP_PORT_NAME
    scorer: dict[str, Any] = {
        "name": "scorer",
        "image": image,
        "args": [
            "serve",
            *("--model-dir", MODELS_DIR, "--host", "0.0.0.0", "--port", str(spec.port)),
            *("--metrics-port", str(metrics_port(spec)), "--grpc-port", str(grpc_port(spec))),
        ],
        **app_env(spec),
        "ports": [
            {"name": HTTP_PORT_NAME, "containerPort": spec.port, "protocol": "TCP"},
            {"name": GRPC_PORT_NAME, "containerPort": grpc_port(spec), "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": metrics_port(spec), "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": probe_port},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": probe_port},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": probe_port},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        # A terminating pod keeps serving until the Service has dropped it: kube-proxy removes the
        # endpoint a moment after the pod is marked terminating, and connections sent in between were
        # refused during every rollout on a real node.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": container_security_context(),
    }
    if spec.resources:
        scorer["resources"] = copy.deepcopy(spec.resources)
    return scorer


def pod_template(
    name: str, spec: AppSpec, target: Target, images: Images, *, mirrors: bool = True
) -> dict[str, Any]:
    """The serving pod template, annotated with its own content hash. With rollout.shadow, the serving pods
    (``mirrors``) read where to mirror requests from the app's shadow ConfigMap."""
    scorer = _scorer(spec, target.image)
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [scorer],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **placement(spec),
        **service_account(spec, fetches=not target.baked),
    }
    labels = common_labels(name, COMPONENT_SERVER)
    if spec.shadow is not None and mirrors:
        pod["volumes"].append({"name": "shadow", "configMap": {"name": shadow_name(name), "optional": True}})
        scorer["volumeMounts"].append({"name": "shadow", "mountPath": SHADOW_DIR, "readOnly": True})
    if not target.baked:
        pod["initContainers"] = [
            fetch_container(spec, images, target.version, target.sha256, f"{MODELS_DIR}/{spec.model_name}")
        ]
        pod["volumes"] += [{"name": "models", "emptyDir": {}}, *store_volumes(spec)]
        scorer["volumeMounts"].append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    annotations = {ANN_MODEL_VERSION: target.version, ANN_MODEL_SHA256: target.sha256}
    if not target.baked and not spec.store.secret_name:
        # AKS workload identity injects the federated token into pods that carry this label: only the
        # fetch step reads the store, so the scorer does not get the token.
        labels[LABEL_WORKLOAD_IDENTITY] = "true"
        annotations[ANN_WI_SKIP_CONTAINERS] = "scorer"
    template = {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}
    template["metadata"]["annotations"][ANN_TEMPLATE_HASH] = short_hash(template)
    return template


def build_deployment(
    app: dict[str, Any],
    spec: AppSpec,
    template: dict[str, Any],
    last_good: dict[str, Any] | None,
) -> dict[str, Any]:
    """The app's Deployment. ``last_good`` (a pod template) is kept on it so a failed rollout can be undone."""
    name = app["metadata"]["name"]
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": app["metadata"]["namespace"],
            "labels": common_labels(name, COMPONENT_SERVER),
            "annotations": {},
            "ownerReferences": [owner_reference(app)],
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(name)},
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "revisionHistoryLimit": 5,
            # Never take a serving pod down before its replacement is Ready: a bad version must not
            # reduce what serves.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": template,
        },
    }
    body["metadata"]["annotations"][ANN_SPEC_HASH] = short_hash(body["spec"])
    if last_good is not None:
        body["metadata"]["annotations"][ANN_LAST_GOOD] = orjson.dumps(
            last_good, option=orjson.OPT_SORT_KEYS
        ).decode()
    return body


def _candidate_deployment(
    app: dict[str, Any],
    spec: AppSpec,
    name: str,
    selector: dict[str, str],
    template: dict[str, Any],
    replicas: int,
) -> dict[str, Any]:
    owner = app["metadata"]["name"]
    template = copy.deepcopy(template)
    template["metadata"]["labels"].update(selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": app["metadata"]["namespace"],
            "labels": {**common_labels(owner, selector[LABEL_COMPONENT]), **selector},
            "ownerReferences": [owner_reference(app)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "revisionHistoryLimit": 2,
            "template": template,
        },
    }


def canary_deployment(
    app: dict[str, Any], spec: AppSpec, template: dict[str, Any], replicas: int
) -> dict[str, Any]:
    """rollout.strategy.canary: the candidate's pods, selected by the app's Service too (the traffic split is
    the ratio of its pods to the stable ones)."""
    owner = app["metadata"]["name"]
    return _candidate_deployment(app, spec, canary_name(owner), canary_selector(owner), template, replicas)


def shadow_deployment(
    app: dict[str, Any], spec: AppSpec, template: dict[str, Any], replicas: int
) -> dict[str, Any]:
    """rollout.shadow: the candidate's pods, outside the app's Service; they get mirrored requests only."""
    owner = app["metadata"]["name"]
    return _candidate_deployment(app, spec, shadow_name(owner), shadow_selector(owner), template, replicas)


def shadow_service(app: dict[str, Any], spec: AppSpec) -> dict[str, Any]:
    owner = app["metadata"]["name"]
    body = build_service(app, spec)
    body["metadata"]["name"] = shadow_name(owner)
    body["metadata"]["labels"] = common_labels(owner, COMPONENT_SHADOW)
    body["spec"]["selector"] = shadow_selector(owner)
    return body


def shadow_config(app: dict[str, Any], mirror: dict[str, Any] | None) -> dict[str, Any]:
    """The ConfigMap the serving pods read (SCORING_SHADOW_CONFIG): where and how much to mirror, or ``{}``."""
    owner = app["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": shadow_name(owner),
            "namespace": app["metadata"]["namespace"],
            "labels": common_labels(owner, COMPONENT_SHADOW),
            "ownerReferences": [owner_reference(app)],
        },
        "data": {SHADOW_FILE: orjson.dumps(mirror or {}, option=orjson.OPT_SORT_KEYS).decode()},
    }


def build_service(app: dict[str, Any], spec: AppSpec) -> dict[str, Any]:
    name = app["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": app["metadata"]["namespace"],
            "labels": common_labels(name, COMPONENT_SERVER),
            "ownerReferences": [owner_reference(app)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": HTTP_PORT_NAME, "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT_NAME, "protocol": "TCP"},
            ],
        },
    }


def parse_last_good(annotation: str | None) -> dict[str, Any] | None:
    if not annotation:
        return None
    try:
        value = orjson.loads(annotation)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# --- Image packaging: build and verify Jobs -------------------------------------------------------

KANIKO_DOCKER_CONFIG = "/kaniko/.docker"
BUILD_TTL_SECONDS = 86400
VERIFY_DEADLINE_SECONDS = 600


def build_hash(spec: AppSpec, images: Images, version: str, sha256: str, attempt: int = 0) -> str:
    """What a build produces depends on these and nothing else: equal hashes never build twice.
    ``attempt`` > 0 after a person released the version from quarantine: it builds anew."""
    build = spec.build
    assert build is not None
    return short_hash(
        {
            **({"attempt": attempt} if attempt else {}),
            "version": version,
            "sha256": sha256,
            "base": build.base_image or images.base,
            "destination": build.destination,
            "kaniko": build.kaniko_image or images.kaniko,
            "cache": build.cache,
            "model": spec.model_name,
        }
    )


def image_tag(version: str, sha256: str) -> str:
    """An OCI tag from the model version and a content hash (tags allow [A-Za-z0-9_.-], 128 chars)."""
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "_.-" else "_" for c in version).lstrip(".-")
    return f"{safe[:100] or '_'}-{sha256[:12]}"


def job_name(app_name: str, kind: str, digest: str) -> str:
    # ModelApp names are at most 52 characters (the CRD says so): 52 + 3 + 8 = 63, a valid label value.
    return f"{app_name}-{kind[0]}-{digest[:8]}"


def _job(
    app: dict[str, Any],
    name: str,
    component: str,
    deadline: int,
    pod: dict[str, Any],
    annotations: dict[str, str],
) -> dict[str, Any]:
    app_name = app["metadata"]["name"]
    labels = common_labels(app_name, component)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": app["metadata"]["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(app)],
        },
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": BUILD_TTL_SECONDS,
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod},
        },
    }


def _kaniko(spec: AppSpec, images: Images, version: str, sha256: str) -> dict[str, Any]:
    build = spec.build
    assert build is not None
    args = [
        "--context=dir:///workspace",
        "--dockerfile=/workspace/Dockerfile",
        f"--destination={build.destination}:{image_tag(version, sha256)}",
        "--digest-file=/dev/termination-log",
        "--snapshot-mode=redo",
        "--single-snapshot",
    ]
    if build.cache:
        args += ["--cache=true", f"--cache-repo={build.destination}/cache", "--cache-ttl=168h"]
    return {
        "name": "kaniko",
        "image": build.kaniko_image or images.kaniko,
        "args": args,
        "env": [{"name": "DOCKER_CONFIG", "value": KANIKO_DOCKER_CONFIG}],
        "volumeMounts": [
            {"name": "workspace", "mountPath": "/workspace"},
            {"name": "docker-config", "mountPath": KANIKO_DOCKER_CONFIG, "readOnly": True},
        ],
        # Kaniko unpacks the base image's filesystem, so it runs as root; it needs no privilege
        # escalation and no host access. Pod Security `baseline` admits it, `restricted` does not.
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
    }


def _pod_key(pod: dict[str, Any], name_from: str) -> str:
    """A Job's name hash: what it builds or verifies, and, when set, how its pods are placed, so that a
    placement fix (e.g. a toleration) gets a new pod rather than waiting on the stuck one."""
    return short_hash({"job": name_from, "pod": pod}) if pod else name_from


def _build_fetch(spec: AppSpec, images: Images, version: str, sha256: str, source_url: str) -> dict[str, Any]:
    """The build's first step: `modelapp fetch` downloads and verifies the bundle and writes the Dockerfile."""
    build = spec.build
    assert build is not None
    fetch = fetch_container(spec, images, version, sha256, "/workspace")
    fetch["args"] += ["--dockerfile", "--base-image", build.base_image or images.base, "--source", source_url]
    fetch["volumeMounts"] = [
        {"name": "workspace", "mountPath": "/workspace"},
        {"name": "tmp", "mountPath": "/tmp"},
        *_store_mounts(spec),
    ]
    # The pod runs Kaniko as root, so it has no pod-wide user: the fetch step names its own.
    fetch["securityContext"] |= {"runAsUser": RUN_AS, "runAsGroup": RUN_AS}
    return fetch


def _build_volumes(spec: AppSpec, push_secret: str) -> list[dict[str, Any]]:
    return [
        *store_volumes(spec),
        {"name": "workspace", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        {
            "name": "docker-config",
            "secret": {
                "secretName": push_secret,
                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
            },
        },
    ]


def build_job(
    app: dict[str, Any],
    spec: AppSpec,
    images: Images,
    version: str,
    sha256: str,
    source_url: str,
    attempt: int = 0,
) -> dict[str, Any]:
    """The Kaniko Job that bakes a verified model version into an image and pushes it."""
    build = spec.build
    assert build is not None
    digest = build_hash(spec, images, version, sha256, attempt)
    placed = placement(spec)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "initContainers": [_build_fetch(spec, images, version, sha256, source_url)],
        "containers": [_kaniko(spec, images, version, sha256)],
        "volumes": _build_volumes(spec, build.push_secret),
        **placed,
        **service_account(spec, fetches=True),
    }
    annotations = {ANN_MODEL_VERSION: version, ANN_MODEL_SHA256: sha256, ANN_BUILD_HASH: digest}
    name = job_name(app["metadata"]["name"], "build", _pod_key(placed, digest))
    job = _job(app, name, COMPONENT_BUILD, build.timeout_seconds, pod, annotations)
    if not spec.store.secret_name:
        # AKS workload identity: the fetch step reads the store with the pod's federated token; Kaniko,
        # which runs the tenant's chosen base image build, does not get it.
        meta = job["spec"]["template"]["metadata"]
        meta["labels"][LABEL_WORKLOAD_IDENTITY] = "true"
        meta["annotations"] = {**meta["annotations"], ANN_WI_SKIP_CONTAINERS: "kaniko"}
    return job


def verify_job(
    app: dict[str, Any],
    spec: AppSpec,
    image: str,
    version: str,
    sha256: str,
    attempt: int = 0,
    retry: int = 0,
) -> dict[str, Any]:
    """The contract-test Job: the new image runs `scoring-service smoke` on the model baked into it.
    ``retry`` > 0 after an earlier Job of the same test ran out of time with its pods refused."""
    smoke = {
        "name": "smoke",
        "image": image,
        "args": ["smoke", "--model-dir", MODELS_DIR],
        **app_env(spec),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": copy.deepcopy(spec.resources)
        if spec.resources
        else {"requests": {"cpu": "250m", "memory": "256Mi"}},
    }
    placed = placement(spec)
    pod = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [smoke],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **placed,
    }
    annotations = {ANN_MODEL_VERSION: version, ANN_MODEL_SHA256: sha256, ANN_IMAGE: image}
    key: dict[str, Any] = {
        "image": image,
        "v": version,
        **({"attempt": attempt} if attempt else {}),
        **({"retry": retry} if retry else {}),
    }
    pod_key = _pod_key({**placed, **app_env(spec)}, short_hash(key))
    name = job_name(app["metadata"]["name"], "verify", pod_key)
    return _job(app, name, COMPONENT_VERIFY, VERIFY_DEADLINE_SECONDS, pod, annotations)
