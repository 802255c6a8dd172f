"""`modelapp status` as rendered from ModelApps of every shape the operator writes: no cluster, a fixed clock."""

from __future__ import annotations

import ast
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from modelapp_operator.cli import status_view
from modelapp_operator.cli.status_view import human_duration, render, summarize

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(minutes: float) -> str:
    return datetime.fromtimestamp(NOW.timestamp() - minutes * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def app(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "diabetes", "namespace": "ml"}, "status": status}


def cond(kind: str, state: str, reason: str, message: str = "", minutes: float = 30) -> dict[str, Any]:
    return {
        "type": kind,
        "status": state,
        "reason": reason,
        "message": message,
        "lastTransitionTime": ago(minutes),
    }


SERVING = {"version": "1.1.0", "image": "reg.example/diabetes@sha256:ab12", "since": ago(180)}
READY = cond("Ready", "True", "Serving", "1.1.0 serves on 3/3 replicas", 180)


def lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


def test_nothing_yet_says_so_and_points_at_the_operator() -> None:
    text = render({"metadata": {"name": "diabetes", "namespace": "ml"}}, NOW)
    assert text.splitlines()[0] == "ModelApp ml/diabetes"
    assert "no status yet" in lines_with(text, "Ready")[0]
    assert lines_with(text, "Serving")[0].split() == ["Serving", "none"]
    assert lines_with(text, "Pending")[0].split() == ["Pending", "none"]
    assert "History      none yet" in text
    assert "Conditions" not in text
    assert "Quarantined" not in text
    summary = summarize({"metadata": {"name": "diabetes"}}, NOW)
    assert summary["ready"] is None
    assert summary["pending"] is None
    assert summary["next"] == []


def test_serving_shows_image_since_and_the_followed_source() -> None:
    text = render(
        app(
            conditions=[READY],
            servingVersion={**SERVING, "source": "qa/diabetes"},
            latestVersion={"version": "1.1.0", "seenAt": ago(200)},
        ),
        NOW,
    )
    assert lines_with(text, "Ready")[0].split()[:3] == ["Ready", "True", "Serving"]
    assert "1.1.0 serves on 3/3 replicas" in text
    assert f"1.1.0  since {ago(180)} (3h ago)" in text
    assert "image reg.example/diabetes@sha256:ab12" in text
    assert "from qa/diabetes (followed)" in text
    assert "seen 3h20m ago" in lines_with(text, "Latest")[0]


def test_soaking_shows_the_source_and_the_time_left() -> None:
    pending = {
        "version": "1.2.0",
        "stage": "Soaking",
        "source": "qa/diabetes",
        "soakUntil": "2025-06-01T13:30:00Z",
    }
    status = {"conditions": [READY], "servingVersion": SERVING, "pending": pending}
    text = render(app(**status), NOW)
    assert "1.2.0  Soaking" in lines_with(text, "Pending")[0]
    assert "from qa/diabetes" in text
    assert "soak ends 2025-06-01T13:30:00Z (in 90m)" in text
    assert summarize(app(**status), NOW)["pending"]["soakRemainingSeconds"] == 5400

    over = copy.deepcopy(status)
    over["pending"]["soakUntil"] = "2025-06-01T11:00:00Z"
    assert "soak ends 2025-06-01T11:00:00Z: over, promoting" in render(app(**over), NOW)
    assert summarize(app(**over), NOW)["pending"]["soakRemainingSeconds"] == 0


def test_awaiting_approval_shows_the_metrics_and_the_exact_commands() -> None:
    pending = {
        "version": "1.2.0",
        "stage": "AwaitingApproval",
        "since": ago(5),
        "metricsDiff": {"r2": {"serving": 0.46, "candidate": 0.52}},
    }
    a = app(conditions=[READY], servingVersion=SERVING, pending=pending)
    text = render(a, NOW)
    assert "1.2.0  AwaitingApproval for 5m" in text
    assert "r2: 0.46 (serving) -> 0.52 (candidate)" in text
    assert "modelapp approve diabetes -n ml --version 1.2.0" in lines_with(text, "Next")[0]
    assert "modelapp reject diabetes -n ml --version 1.2.0" in text
    assert render(a, NOW, prog="kubectl modelapp").count("kubectl modelapp approve diabetes -n ml") == 1
    first = summarize(a, NOW)["next"][0]
    assert first == {"command": "modelapp approve diabetes -n ml --version 1.2.0", "does": "roll it out"}

    approved = copy.deepcopy(a)
    approved["status"]["pending"]["approved"] = True
    assert "approve" not in "".join(lines_with(render(approved, NOW), "Next"))
    assert "approved, rolling out next" in render(approved, NOW)


def test_a_canary_step_shows_weight_pods_share_and_figures() -> None:
    canary = {
        "step": 1,
        "steps": 2,
        "weight": 10,
        "canaryReplicas": 1,
        "stableReplicas": 2,
        "share": 33.333,
        "stepSince": ago(2),
        "requests": 1520,
        "errorRatio": 0.002,
        "p99Seconds": 0.042,
    }
    pending = {"version": "1.2.0", "stage": "Canary", "since": ago(4), "canary": canary}
    text = render(app(conditions=[READY], servingVersion=SERVING, pending=pending), NOW)
    assert "step 1/2 weight 10% (1 canary / 2 stable pods, share 33.3%)" in text
    assert "requests 1520, error ratio 0.2%, p99 42ms (this step for 2m)" in text
    assert "modelapp promote diabetes -n ml --version 1.2.0" in text
    assert "skip the remaining canary steps" in text
    assert "modelapp abort diabetes -n ml --version 1.2.0" in text


def test_a_canary_without_figures_yet_shows_dashes_not_errors() -> None:
    pending = {"version": "1.2.0", "stage": "Canary", "canary": {"step": 1, "steps": 3, "weight": 5}}
    text = render(app(pending=pending), NOW)
    assert "step 1/3 weight 5% (- canary / - stable pods, share -%)" in text
    assert "requests -, error ratio -, p99 -" in text


def test_shadow_figures() -> None:
    shadow = {
        "sample": 0.1,
        "requests": 5000,
        "failures": 2,
        "meanAbsDiff": 0.0123456,
        "agreement": 0.992,
        "latencyRatio": 1.08,
        "since": ago(65),
    }
    pending = {"version": "1.2.0", "stage": "Shadowing", "since": ago(65), "shadow": shadow}
    text = render(app(conditions=[READY], servingVersion=SERVING, pending=pending), NOW)
    assert "sample 10%, requests 5000, failures 2 (for 65m)" in text
    assert "mean abs diff 0.01235, agreement 99.2%, latency ratio 1.08x" in text
    assert "skip the shadow gate" in text
    only_diff = {"requests": 10, "failures": 0, "meanAbsDiff": 0.5}
    text = render(app(pending={**pending, "shadow": only_diff}), NOW)
    assert "mean abs diff 0.5" in text
    assert "agreement" not in text


def test_quarantined_versions_with_their_reasons() -> None:
    quarantined = [
        {
            "version": "1.0.5",
            "reason": "CanaryFailed",
            "message": "error ratio 5% over 1%",
            "at": ago(2 * 1440),
        },
        {"version": "1.0.6", "reason": "ShadowTimedOut", "message": "", "at": ago(30)},
    ]
    text = render(app(conditions=[READY], servingVersion=SERVING, quarantined=quarantined), NOW)
    block = text.split("Quarantined\n")[1].split("\n\n")[0].splitlines()
    assert block[0].split() == ["VERSION", "REASON", "AGE", "MESSAGE"]
    assert block[1].split()[:3] == ["1.0.5", "CanaryFailed", "2d"]
    assert block[1].endswith("error ratio 5% over 1%")
    assert block[2].split() == ["1.0.6", "ShadowTimedOut", "30m"]


def test_stalled_shows_ready_false_and_the_other_conditions_as_a_table() -> None:
    conditions = [
        cond("Ready", "False", "SecretNotFound", "secret blob-creds not found", 10),
        cond("ModelResolved", "False", "SecretNotFound", "secret blob-creds not found", 10),
        cond("Stalled", "True", "SecretNotFound", "create the Secret blob-creds", 10),
    ]
    text = render(app(conditions=conditions), NOW)
    assert lines_with(text, "Ready")[0].split()[:3] == ["Ready", "False", "SecretNotFound"]
    block = text.split("Conditions\n")[1].split("\n\n")[0].splitlines()
    assert block[0].split() == ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
    assert [row.split()[:4] for row in block[1:]] == [
        ["ModelResolved", "False", "SecretNotFound", "10m"],
        ["Stalled", "True", "SecretNotFound", "10m"],
    ]
    assert all(c["type"] != "Ready" for c in summarize(app(conditions=conditions), NOW)["conditions"])


def test_history_is_oldest_first_with_absolute_and_relative_times() -> None:
    history = [
        {"version": "1.1.0", "event": "Detected", "at": ago(190)},
        {"version": "1.1.0", "event": "RolledOut", "at": ago(180), "durationSeconds": 42.5, "message": "3/3"},
        {"version": "1.2.0", "event": "CanaryStarted", "at": ago(4)},
    ]
    text = render(app(history=history), NOW)
    rows = text.split("History (oldest first)\n")[1].splitlines()
    assert rows[0].split() == ["AT", "AGO", "VERSION", "EVENT", "TOOK", "MESSAGE"]
    assert [r.split()[:4] for r in rows[1:]] == [
        [ago(190), "3h10m", "1.1.0", "Detected"],
        [ago(180), "3h", "1.1.0", "RolledOut"],
        [ago(4), "4m", "1.2.0", "CanaryStarted"],
    ]
    assert rows[2].split()[4:] == ["42s", "3/3"]


def test_the_json_summary_is_json_and_keeps_what_the_api_says() -> None:
    pending = {"version": "1.2.0", "stage": "Canary", "canary": {"step": 2, "steps": 2}}
    a = app(conditions=[READY], servingVersion=SERVING, pending=pending, history=[{"event": "X"}])
    summary = json.loads(json.dumps(summarize(a, NOW)))
    assert summary["name"] == "diabetes"
    assert summary["namespace"] == "ml"
    assert summary["ready"] == {
        "status": "True",
        "reason": "Serving",
        "message": "1.1.0 serves on 3/3 replicas",
    }
    assert summary["servingVersion"] == SERVING
    assert summary["pending"]["canary"] == {"step": 2, "steps": 2}
    assert [n["command"].split()[1] for n in summary["next"]] == ["promote", "abort"]
    assert summary["history"] == [{"event": "X"}]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59, "59s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (7200, "120m"), (3 * 3600 + 60, "3h1m"),
     (20 * 3600, "20h"), (3 * 86400 + 4 * 3600, "3d4h"), (12 * 86400, "12d"), (-5, "0s")],
)  # fmt: skip
def test_durations_read_like_kubectls(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_unreadable_times_do_not_break_the_view() -> None:
    a = app(servingVersion={"version": "1", "since": "yesterday"}, history=[{"at": None, "event": "X"}])
    text = render(a, NOW)
    assert "1  since -" in text
    assert text.split("History (oldest first)\n")[1].splitlines()[1].split()[:4] == ["-", "-", "-", "X"]


def test_the_renderer_imports_no_kubernetes_client() -> None:
    tree = ast.parse(Path(status_view.__file__).read_text())
    imported = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert not [
        m for m in imported if m.split(".")[0] in ("kubernetes_asyncio", "kubernetes", "kopf", "azure")
    ]
    assert "modelapp_operator.names" in imported  # the probe sees our imports
