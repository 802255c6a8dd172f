"""Spec parsing (durations, CRD defaults) and condition merging (lastTransitionTime only on flips)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from modelapp_operator import conditions
from modelapp_operator.conditions import Condition
from modelapp_operator.spec import AppSpec, BlobSource, Promotion, VersionPolicy, parse_duration, parse_spec
from modelapp_operator.status import ConditionStatus, from_api, rfc3339, to_api

pytestmark = pytest.mark.unit


def merge_conditions(
    previous: list[dict[str, Any]], desired: list[Condition], generation: int, now: datetime
) -> list[dict[str, Any]]:
    """merge_conditions, in and out as the API spells conditions."""
    typed = [from_api(ConditionStatus, c) for c in previous]
    merged: list[dict[str, Any]] = to_api(conditions.merge_conditions(typed, desired, generation, now))
    return merged


def find(conds: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conds if c["type"] == type_), None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("1h2m3s", 3723.0),
        ("2m500ms", 120.5),
        ("1s", 1.0),
        ("24h", 86400.0),
        ("0.25s", 0.25),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "soon", "10", "1d", "-1s", "1s ", " 1s", "1 s", "s", "1.s", ".5s", "1m30", "1h-1m", "1S"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_parse_spec_defaults() -> None:
    spec = parse_spec(
        "diabetes",
        {
            "model": {
                "source": {"azureBlob": {"accountUrl": "https://a.blob.core.windows.net/", "container": "m"}}
            }
        },
    )
    assert spec == AppSpec(
        model_name="diabetes",
        source=BlobSource("https://a.blob.core.windows.net", "m", ""),
        policy=VersionPolicy("latest", ""),
        poll_interval=60.0,
        promotion=None,
        packaging="Image",
        build=None,
        image=None,
        replicas=2,
        port=8080,
        service_account=None,
        resources={},
        manual_approval=False,
        contract_test=True,
        progress_deadline_seconds=300,
    )


def test_parse_spec_full() -> None:
    spec = parse_spec(
        "app",
        {
            "model": {
                "name": "diab",
                "source": {
                    "azureBlob": {
                        "accountUrl": "http://127.0.0.1:10000/devstoreaccount1",
                        "container": "models",
                        "prefix": "diabetes/",
                        "auth": {"workloadIdentity": {"clientId": "0000-guid"}},
                    }
                },
                "versionPolicy": {"semver": {"range": ">=1.0 <2"}},
                "pollInterval": "1m30s",
                "promotion": {"metric": "rmse", "direction": "Minimize"},
            },
            "packaging": "Image",
            "build": {
                "destination": "acr.example/diabetes",
                "pushSecretRef": {"name": "acr-push"},
                "timeoutSeconds": 600,
                "cache": False,
            },
            "serve": {
                "replicas": 5,
                "port": 9000,
                "serviceAccountName": "sa",
                "resources": {"limits": {"cpu": 1}},
            },
            "rollout": {"approval": "Manual", "contractTest": False, "progressDeadlineSeconds": 60},
        },
    )
    assert spec.model_name == "diab"
    assert spec.source.workload_identity_client_id == "0000-guid"
    assert spec.source.secret_name is None
    assert spec.policy == VersionPolicy("semver", ">=1.0 <2")
    assert spec.poll_interval == 90.0
    assert spec.promotion == Promotion("rmse", maximize=False)
    assert spec.build is not None
    assert (spec.build.destination, spec.build.push_secret) == ("acr.example/diabetes", "acr-push")
    assert (spec.build.timeout_seconds, spec.build.cache) == (600, False)
    assert (spec.replicas, spec.port, spec.service_account) == (5, 9000, "sa")
    assert spec.resources == {"limits": {"cpu": 1}}
    assert spec.manual_approval is True
    assert spec.contract_test is False
    assert spec.progress_deadline_seconds == 60


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"latest": {}}, VersionPolicy()),
        ({"pinned": {"version": "1.2.0"}}, VersionPolicy("pinned", "1.2.0")),
        ({"semver": {"range": "^1"}}, VersionPolicy("semver", "^1")),
    ],
)
def test_parse_spec_version_policy(policy: dict[str, object], expected: VersionPolicy) -> None:
    spec = parse_spec("a", {"model": {"source": {"azureBlob": {}}, "versionPolicy": policy}})
    assert spec.policy == expected


def test_parse_spec_secret_ref_and_promotion_default_direction() -> None:
    spec = parse_spec(
        "a",
        {
            "model": {
                "source": {"azureBlob": {"auth": {"secretRef": {"name": "creds"}}}},
                "promotion": {"metric": "r2"},
            }
        },
    )
    assert spec.source.secret_name == "creds"
    assert spec.promotion == Promotion("r2", maximize=True)


# --- conditions --------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_rfc3339() -> None:
    assert rfc3339(T0) == "2026-01-01T12:00:00Z"


def test_new_conditions_get_now_and_the_generation() -> None:
    out = merge_conditions([], [Condition("Ready", "False", "Progressing", "starting")], 3, T0)
    assert out == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Progressing",
            "message": "starting",
            "lastTransitionTime": "2026-01-01T12:00:00Z",
            "observedGeneration": 3,
        }
    ]


def test_last_transition_time_moves_only_when_the_status_flips() -> None:
    first = merge_conditions(
        [], [Condition("Ready", "False", "Progressing"), Condition("Stalled", "False", "Idle")], 1, T0
    )
    # Same statuses, new reasons and messages: times stay, everything else follows.
    second = merge_conditions(
        first,
        [Condition("Ready", "False", "NoVersions", "nothing yet"), Condition("Stalled", "False", "Idle")],
        2,
        T1,
    )
    assert [c["lastTransitionTime"] for c in second] == [rfc3339(T0), rfc3339(T0)]
    assert find(second, "Ready") == {
        "type": "Ready",
        "status": "False",
        "reason": "NoVersions",
        "message": "nothing yet",
        "lastTransitionTime": rfc3339(T0),
        "observedGeneration": 2,
    }
    # A flip moves only the flipped condition's time.
    third = merge_conditions(
        second, [Condition("Ready", "True", "Serving"), Condition("Stalled", "False", "Idle")], 2, T1
    )
    assert find(third, "Ready")["lastTransitionTime"] == rfc3339(T1)  # type: ignore[index]
    assert find(third, "Stalled")["lastTransitionTime"] == rfc3339(T0)  # type: ignore[index]
    # Unknown counts as a status of its own.
    fourth = merge_conditions(
        third, [Condition("Ready", "Unknown", "StoreUnavailable")], 2, T1 + timedelta(1)
    )
    assert fourth[0]["lastTransitionTime"] == rfc3339(T1 + timedelta(1))


def test_merge_keeps_the_desired_order_and_drops_others() -> None:
    prev = merge_conditions([], [Condition("Old", "True", "X"), Condition("Ready", "True", "Serving")], 1, T0)
    out = merge_conditions(
        prev, [Condition("Stalled", "False", "Idle"), Condition("Ready", "True", "Serving")], 1, T1
    )
    assert [c["type"] for c in out] == ["Stalled", "Ready"]
    assert find(out, "Old") is None
    assert find(out, "Ready")["lastTransitionTime"] == rfc3339(T0)  # type: ignore[index]


def test_a_prior_condition_without_a_transition_time_gets_one() -> None:
    # The CRD does not require lastTransitionTime, so a hand-written status may lack it.
    prev = [{"type": "Ready", "status": "True", "reason": "Serving"}]
    out = merge_conditions(prev, [Condition("Ready", "True", "Serving")], 1, T1)
    assert out[0]["lastTransitionTime"] == rfc3339(T1)
