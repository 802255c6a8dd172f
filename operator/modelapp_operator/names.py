"""API names, labels, annotations, condition types and reasons: the one place they are spelled."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any, Final

GROUP: Final = "modelapp.dev"
VERSION: Final = "v1alpha1"
PLURAL: Final = "modelapps"
KIND: Final = "ModelApp"
API_VERSION: Final = f"{GROUP}/{VERSION}"
FIELD_MANAGER: Final = "modelapp-operator"

# Labels
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_MODELAPP: Final = f"{GROUP}/name"
MANAGED_BY: Final = "modelapp-operator"

# Annotations
ANN_MODEL_VERSION: Final = f"{GROUP}/model-version"
ANN_MODEL_SHA256: Final = f"{GROUP}/model-sha256"
ANN_TEMPLATE_HASH: Final = f"{GROUP}/template-hash"
ANN_SPEC_HASH: Final = f"{GROUP}/spec-hash"
ANN_LAST_GOOD: Final = f"{GROUP}/last-good-template"
ANN_BUILD_HASH: Final = f"{GROUP}/build-hash"
ANN_IMAGE: Final = f"{GROUP}/image"
ANN_APPROVE: Final = f"{GROUP}/approve"
# Skip a version's remaining canary steps or shadow gate and roll it out; abort it (candidate scaled to zero,
# version quarantined).
ANN_PROMOTE: Final = f"{GROUP}/promote"
ANN_ABORT: Final = f"{GROUP}/abort"
ANN_QUARANTINE: Final = f"{GROUP}/quarantine"
ANN_UNQUARANTINE: Final = f"{GROUP}/unquarantine"
ANN_REJECT: Final = f"{GROUP}/reject"
# On a ModelApp that others follow from other namespaces: the namespaces allowed to (comma-separated, or *).
ANN_FOLLOWERS: Final = f"{GROUP}/followers"


class Cond(StrEnum):
    """Condition types (Kubernetes API conventions: conditions, not phases)."""

    READY = "Ready"
    MODEL_RESOLVED = "ModelResolved"
    IMAGE_BUILT = "ImageBuilt"
    VERIFIED = "Verified"
    ROLLED_OUT = "RolledOut"
    STALLED = "Stalled"
    RECONCILING = "Reconciling"


class Stage(StrEnum):
    """Where a version on its way to serving is (``status.pending.stage``)."""

    SOAKING = "Soaking"
    BUILDING = "Building"
    VERIFYING = "Verifying"
    AWAITING_APPROVAL = "AwaitingApproval"
    SHADOWING = "Shadowing"
    CANARY = "Canary"
    ROLLING_OUT = "RollingOut"


class Reason(StrEnum):
    """Every CamelCase reason the operator writes: condition reasons, Event reasons, history events and
    quarantine reasons. Nothing else spells one."""

    # The store and the version policy (ModelResolved).
    RESOLVED = "Resolved"
    NO_VERSIONS = "NoVersions"
    NO_MATCHING_VERSION = "NoMatchingVersion"
    STORE_UNAVAILABLE = "StoreUnavailable"
    STORE_AUTH_FAILED = "StoreAuthFailed"
    STORE_MISCONFIGURED = "StoreMisconfigured"
    MANIFEST_INVALID = "ManifestInvalid"
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason, not a password
    SERVICE_ACCOUNT_NOT_FOUND = "ServiceAccountNotFound"
    IDENTITY_MISCONFIGURED = "IdentityMisconfigured"
    IDENTITY_REQUIRED = "IdentityRequired"
    IMAGE_NOT_ALLOWED = "ImageNotAllowed"
    NEW_VERSION = "NewVersion"
    DETECTED = "Detected"
    NOT_BETTER = "NotBetter"
    # Staged promotion (versionPolicy.follow).
    SOURCE_NOT_FOUND = "SourceNotFound"
    FOLLOW_NOT_ALLOWED = "FollowNotAllowed"
    SOAKING = "Soaking"
    SOAKED = "Soaked"
    FROM_SOURCE = "FromSource"
    SOURCE_IMAGE_MISSING = "SourceImageMissing"
    # Shadow and canary.
    SHADOW_STARTED = "ShadowStarted"
    SHADOW_PASSED = "ShadowPassed"
    SHADOW_FAILED = "ShadowFailed"
    SHADOW_TIMED_OUT = "ShadowTimedOut"
    CANARY_STEP = "CanaryStep"
    CANARY_PASSED = "CanaryPassed"
    CANARY_FAILED = "CanaryFailed"
    PROMOTED = "Promoted"
    ABORTED = "Aborted"
    # Build and contract test (ImageBuilt, Verified).
    BUILD_STARTED = "BuildStarted"
    BUILT = "Built"
    BUILD_FAILED = "BuildFailed"
    VERIFY_STARTED = "VerifyStarted"
    VERIFIED = "Verified"
    CONTRACT_PASSED = "ContractPassed"
    CONTRACT_FAILED = "ContractFailed"
    SKIPPED = "Skipped"
    # The API server refuses a build or contract-test Job's pods (e.g. Pod Security admission): the
    # namespace is at fault, not the model version, so nothing is quarantined.
    BUILD_POD_REJECTED = "BuildPodRejected"
    VERIFY_POD_REJECTED = "VerifyPodRejected"
    # Approval and people's actions.
    AWAITING_APPROVAL = "AwaitingApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    ROLLED_BACK_BY_USER = "RolledBackByUser"
    QUARANTINED = "Quarantined"
    UNQUARANTINED = "Unquarantined"
    # The rollout (RolledOut, Ready, Reconciling, Stalled).
    ROLLOUT_STARTED = "RolloutStarted"
    PROGRESSING = "Progressing"
    ROLLOUT_COMPLETE = "RolloutComplete"
    ROLLED_OUT = "RolledOut"
    ROLLED_BACK = "RolledBack"
    ROLLOUT_FAILED = "RolloutFailed"
    FETCH_FAILED = "FetchFailed"
    SCALED = "Scaled"
    SERVING = "Serving"
    NOT_SERVING = "NotServing"
    SUCCEEDED = "Succeeded"
    IDLE = "Idle"


def short_hash(obj: Any, length: int = 16) -> str:
    """A stable content hash of JSON-like data (dict key order does not matter)."""
    import orjson

    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()[:length]


COMPONENT_SERVER: Final = "server"
COMPONENT_BUILD: Final = "build"
COMPONENT_VERIFY: Final = "verify"
# rollout.shadow: the candidate's pods, outside the app's Service.
COMPONENT_SHADOW: Final = "shadow"
# rollout.strategy.canary: the candidate's pods inside the app's Service carry this label (value "canary").
LABEL_TRACK: Final = f"{GROUP}/track"
TRACK_CANARY: Final = "canary"


def canary_selector(app_name: str) -> dict[str, str]:
    return {**selector_labels(app_name), LABEL_TRACK: TRACK_CANARY}


def shadow_selector(app_name: str) -> dict[str, str]:
    return {LABEL_MODELAPP: app_name, LABEL_COMPONENT: COMPONENT_SHADOW}


def canary_name(app_name: str) -> str:
    return f"{app_name}-canary"


def shadow_name(app_name: str) -> str:
    return f"{app_name}-shadow"


def shadow_label(version: str, attempt: int) -> str:
    """The candidate as the serving pods label their comparison: a retry after `modelapp unquarantine`
    counts afresh."""
    return version if attempt == 0 else f"{version}+attempt{attempt}"


def selector_labels(app_name: str) -> dict[str, str]:
    """The Deployment's (immutable) selector: the app's serving pods and nothing else, not its Job pods."""
    return {LABEL_MODELAPP: app_name, LABEL_COMPONENT: COMPONENT_SERVER}


def common_labels(app_name: str, component: str) -> dict[str, str]:
    return {
        LABEL_NAME: "scoring-service",
        LABEL_INSTANCE: app_name,
        LABEL_MODELAPP: app_name,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def owner_reference(app: dict[str, Any]) -> dict[str, Any]:
    meta = app["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
