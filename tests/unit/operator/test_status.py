"""The typed status and the CRD's status schema agree field by field, and the API's dict round-trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from modelapp_operator.names import Stage
from modelapp_operator.status import (
    ModelAppStatus,
    Pending,
    fields_of,
    parse_status,
    status_body,
)

pytestmark = pytest.mark.unit

CRD = Path(__file__).resolve().parents[3] / "crds" / "modelapp.dev_modelapps.yaml"


def _schema_fields(schema: dict[str, Any]) -> Any:
    """The field names of a schema object, nested like ``status.fields_of`` gives them."""
    if schema.get("type") == "array":
        return _schema_fields(schema.get("items") or {})
    if "properties" in schema:
        return {k: _schema_fields(v) for k, v in schema["properties"].items()}
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return _schema_fields(extra)
    return None


def crd_status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


def test_the_status_model_and_the_crd_have_the_same_fields() -> None:
    assert fields_of(ModelAppStatus) == _schema_fields(crd_status_schema())


def test_the_probe_sees_a_field_declared_on_one_side_only() -> None:
    schema = crd_status_schema()
    schema["properties"]["servingVersion"]["properties"]["forgotten"] = {"type": "string"}
    assert fields_of(ModelAppStatus) != _schema_fields(schema)


FULL = {
    "observedGeneration": 3,
    "replicas": 2,
    "selector": "modelapp.dev/name=diabetes,app.kubernetes.io/component=server",
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Serving",
            "message": "serving 1.0.0",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 3,
        }
    ],
    "latestVersion": {"version": "1.1.0", "etag": '"0x1"', "seenAt": "2026-01-01T00:00:00Z", "metrics": {}},
    "servingVersion": {
        "version": "1.0.0",
        "sha256": "ab" * 32,
        "image": "acr/diabetes:1.0.0-abababababab",
        "since": "2026-01-01T00:00:00Z",
        "templateHash": "0123456789abcdef",
        "imageByTag": True,
        "metrics": {"r2": 0.46},
    },
    "pending": {
        "version": "1.1.0",
        "sha256": "cd" * 32,
        "stage": "AwaitingApproval",
        "since": "2026-01-01T00:00:00Z",
        "image": "acr/diabetes@sha256:" + "1" * 64,
        "metricsDiff": {"r2": {"serving": 0.46, "candidate": 0.5}, "mae": {"candidate": 40.0}},
    },
    "quarantined": [
        {"version": "0.9.0", "etag": '"0x0"', "reason": "RolloutFailed", "at": "2026-01-01T00:00:00Z"}
    ],
    "images": {
        "0123456789abcdef": {"image": "acr/d@sha256:" + "2" * 64, "version": "1.0.0", "verified": True}
    },
    "attempts": {"1.1.0": 1},
    "notBetter": {"version": "0.8.0", "message": "not better", "at": "2026-01-01T00:00:00Z"},
    "failedTemplateHash": "fedcba9876543210",
    "history": [{"version": "1.0.0", "event": "RolledOut", "at": "2026-01-01T00:00:00Z", "message": ""}],
}


def test_a_status_round_trips_through_the_typed_model() -> None:
    status = parse_status(FULL)
    assert status.pending == Pending(
        version="1.1.0",
        stage=Stage.AWAITING_APPROVAL,
        since="2026-01-01T00:00:00Z",
        sha256="cd" * 32,
        image="acr/diabetes@sha256:" + "1" * 64,
        metrics_diff=status.pending.metrics_diff if status.pending else None,
    )
    assert status.serving_version is not None
    assert status.serving_version.image_by_tag is True
    assert status_body(status) == FULL


def test_an_empty_status_reads_as_defaults() -> None:
    assert parse_status(None) == ModelAppStatus()
    assert status_body(ModelAppStatus()) == {"conditions": [], "quarantined": [], "history": []}


_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"


def schema_problems(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """What the API server's structural validation would refuse in a status body (types, enums,
    date-time formats): a plan whose status the API server refuses never lands, so check them here."""
    import re

    kind = schema.get("type")
    problems: list[str] = []
    if kind == "object" and isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k) if k in props else (extra if isinstance(extra, dict) else None)
            if sub is not None:
                problems += schema_problems(v, sub, f"{path}.{k}")
    elif kind == "array" and isinstance(value, list):
        for i, v in enumerate(value):
            problems += schema_problems(v, schema.get("items") or {}, f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: not a string: {value!r}")
        elif schema.get("format") == "date-time" and not re.match(_DATE_TIME, value):
            problems.append(f"{path}: not a date-time: {value!r}")
        elif "enum" in schema and value not in schema["enum"]:
            problems.append(f"{path}: {value!r} not one of {schema['enum']}")
    elif kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        problems.append(f"{path}: not an integer: {value!r}")
    elif kind == "number" and (not isinstance(value, int | float) or isinstance(value, bool)):
        problems.append(f"{path}: not a number: {value!r}")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{path}: not a boolean: {value!r}")
    return problems


def test_the_schema_check_finds_what_the_api_server_refuses() -> None:
    body = {"pending": {"version": "1", "stage": "Nope", "since": "", "canary": {"step": "1"}}}
    assert schema_problems(body, crd_status_schema()) == [
        "status.pending.stage: 'Nope' not one of "
        + str(crd_status_schema()["properties"]["pending"]["properties"]["stage"]["enum"]),
        "status.pending.since: not a date-time: ''",
        "status.pending.canary.step: not an integer: '1'",
    ]
