"""`scoring-service smoke`: run contract samples (or one generated request) against the app in-process."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI
from PIL import Image

from scoring_service import asgi
from scoring_service.app import create_app
from scoring_service.contract import Contract, ContractError, Sample, Tolerance, compare, load_contract
from scoring_service.repository import ServedModel
from scoring_service.service import HEADER_LENGTH, DataPlane
from scoring_service.settings import Settings


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: int = 0
    passed: int = 0

    def ok(self, line: str) -> None:
        self.passed += 1
        self.lines.append(f"PASS {line}")

    def fail(self, line: str, details: list[str] | None = None) -> None:
        self.failures += 1
        self.lines.append(f"FAIL {line}")
        self.lines.extend(f"     {d}" for d in details or [])

    def render(self) -> str:
        verdict = "OK" if self.failures == 0 else "FAILED"
        return "\n".join([*self.lines, f"{verdict}: {self.passed} passed, {self.failures} failed"])


async def run_smoke(settings: Settings, contract_path: Path | None = None) -> Report:
    report = Report()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        plane: DataPlane = app.state.dataplane
        ready = await asgi.request(app, "GET", "/v2/health/ready")
        if ready.status != 200:
            report.fail("server ready", [ready.body.decode("utf-8", "replace")])
        else:
            report.ok("server ready")
        models = [m for m in plane.repo.all() if m.ready]
        explicit = None
        if contract_path is not None:
            try:
                explicit = load_contract(contract_path)
            except ContractError as exc:
                report.fail("contract", [str(exc)])
                return report
        for served in models:
            await _smoke_model(app, served, explicit, len(models), report)
    return report


async def _smoke_model(
    app: FastAPI, served: ServedModel, explicit: Contract | None, n_models: int, report: Report
) -> None:
    label = f"{served.name}:{served.version}"
    contract = explicit
    if contract is not None and contract.model not in (None, served.name):
        return
    if contract is not None and contract.model is None and n_models > 1:
        report.fail(f"{label}: contract names no model but the directory holds {n_models}")
        return
    if contract is None and served.bundle is not None and served.bundle.contract_path is not None:
        try:
            contract = load_contract(served.bundle.contract_path)
        except ContractError as exc:
            report.fail(f"{label}: contract", [str(exc)])
            return
    samples = contract.samples if contract else [_generated_sample(served)]
    tolerance = contract.tolerance if contract else Tolerance()
    path = f"/v2/models/{served.name}/versions/{served.version}/infer"
    for sample in samples:
        response = await asgi.request(
            app, "POST", path, orjson.dumps(sample.request), {"content-type": "application/json"}
        )
        header = response.headers.get(HEADER_LENGTH.lower())
        problems = compare(sample, tolerance, response.status, response.body, int(header) if header else None)
        if not contract and not problems:
            problems = _check_all_outputs(served, response.body, header)
        name = f"{label} {sample.name}"
        if problems:
            report.fail(name, problems)
        else:
            report.ok(name)


def _generated_sample(served: ServedModel) -> Sample:
    """One request of the right shape and datatype, zero-filled (a blank image for image inputs)."""
    model = served.model
    assert model is not None
    inputs: list[dict[str, Any]] = []
    for spec in model.inputs:
        shape = [1 if d < 0 else d for d in spec.shape]
        data: list[Any]
        if spec.name == served.image_input and served.preprocess is not None:
            height, width = served.preprocess.size
            buf = io.BytesIO()
            Image.new("L", (width, height)).save(buf, format="PNG")
            shape, data, datatype = [1], [base64.b64encode(buf.getvalue()).decode()], "BYTES"
        elif spec.datatype == "BYTES":
            data, datatype = [""] * int(np.prod(shape)), "BYTES"
        elif spec.datatype == "BOOL":
            data, datatype = [False] * int(np.prod(shape)), "BOOL"
        else:
            data, datatype = [0] * int(np.prod(shape)), spec.datatype
        inputs.append({"name": spec.name, "datatype": datatype, "shape": shape, "data": data})
    return Sample.model_validate({"name": "generated-request", "request": {"inputs": inputs}, "expected": {}})


def _check_all_outputs(served: ServedModel, body: bytes, header: str | None) -> list[str]:
    assert served.model is not None
    doc = orjson.loads(body if header is None else body[: int(header)])
    got = {o["name"] for o in doc.get("outputs", [])}
    missing = [n for n in served.model.output_names if n not in got]
    return [f"outputs {missing} missing from the response"] if missing else []
