"""What a hostile or broken world cannot grow: condition messages, the quarantine list, per-app metric series;
and a fetch init container's failure reaching the status."""

from __future__ import annotations

import dataclasses

import pytest
from modelapp_operator import metrics
from modelapp_operator.conditions import MESSAGE_CHARS
from modelapp_operator.names import Reason
from modelapp_operator.planner import plan
from modelapp_operator.status import QUARANTINE_LIMIT, ModelAppStatus, QuarantineEntry
from prometheus_client import REGISTRY
from unit.operator.conftest import IMAGES, cond, deployment, make_app, observe, store, template_for
from unit.operator.test_gates import build_name, failed, obs

pytestmark = pytest.mark.unit


def test_a_huge_build_log_does_not_grow_the_status_without_bound() -> None:
    name = build_name("1.0.0")
    view = store("1.0.0")
    p = plan(obs(make_app(), view), IMAGES)
    log = "x" * 100_000
    p = plan(obs(make_app(p.body), view, jobs={name: failed(name, reason="R: " + log)}), IMAGES)
    for c in p.body["conditions"]:
        assert len(c["message"]) <= MESSAGE_CHARS
    assert all(len(h["message"]) <= MESSAGE_CHARS for h in p.body["history"])
    assert all(len(e.message) <= MESSAGE_CHARS for e in p.events)
    assert len(p.body["quarantined"][0]["message"]) <= MESSAGE_CHARS


def test_the_quarantine_list_keeps_the_newest_entries() -> None:
    status = ModelAppStatus()
    for i in range(QUARANTINE_LIMIT + 10):
        status = status.with_quarantine(QuarantineEntry(f"0.0.{i}", reason=Reason.BUILD_FAILED))
    assert len(status.quarantined) == QUARANTINE_LIMIT
    assert status.quarantined[-1].version == f"0.0.{QUARANTINE_LIMIT + 9}"
    assert status.quarantine_of("0.0.0") is None


def test_a_deleted_apps_metric_series_are_dropped() -> None:
    metrics.observe("tenant-a", "gone", "rollouts", 1.0)
    metrics.observe("tenant-a", "gone", "build_seconds", 12.0)
    labels = {"namespace": "tenant-a", "name": "gone"}
    assert REGISTRY.get_sample_value("modelapp_rollouts_total", labels) == 1.0
    metrics.forget("tenant-a", "gone")
    assert REGISTRY.get_sample_value("modelapp_rollouts_total", labels) is None
    assert REGISTRY.get_sample_value("modelapp_build_duration_seconds_count", labels) is None
    metrics.forget("tenant-a", "never-seen")  # no error


def test_a_failing_fetch_init_container_says_why_in_the_status() -> None:
    t = template_for("1.0.0")
    problem = "fetch-model in pod diabetes-abc failed: version 1.0.0 changed since it was resolved"
    dep = dataclasses.replace(deployment(t, available=0, updated=2), pod_problem=problem)
    p = plan(observe(make_app(), store("1.0.0"), dep), IMAGES)
    rolled = cond(p, "RolledOut")
    assert (rolled["status"], rolled["reason"]) == ("False", Reason.FETCH_FAILED)
    assert problem in rolled["message"]
    assert cond(p, "Ready")["reason"] == Reason.FETCH_FAILED


async def test_credentials_of_endpoints_no_poller_reads_are_forgotten() -> None:
    """A rotated Secret gives a new endpoint (its fingerprint); the old credentials must not stay in memory."""
    from kubernetes_asyncio import client
    from modelapp_operator.gather import Gatherer
    from modelapp_operator.poller import Endpoint, PollerRegistry
    from modelapp_operator.settings import OperatorSettings
    from modelapp_operator.store import BlobCredentials

    old = Endpoint("https://a.blob.core.windows.net", "models", "secret:ns/creds:old")
    new = Endpoint("https://a.blob.core.windows.net", "models", "secret:ns/creds:new")
    registry = PollerRegistry(lambda ep: None, lambda key: None)  # type: ignore[arg-type,return-value]
    registry.pollers[new] = object()  # type: ignore[assignment]  # only membership matters here
    credentials = {old: BlobCredentials(sas_token="old"), new: BlobCredentials(sas_token="new")}
    async with client.ApiClient() as api:
        Gatherer(api, OperatorSettings(), registry, credentials).evict_credentials()
    assert list(credentials) == [new]
