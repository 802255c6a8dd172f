"""The pure core stays pure: importing it pulls in no Kubernetes, kopf or Azure client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PURE = [
    "names",
    "spec",
    "status",
    "snapshot",
    "conditions",
    "policy",
    "builders",
    "draft",
    "planner",
    "retry",
    "promql",
    *(
        f"stages.{p.stem}"
        for p in sorted(
            (Path(__file__).resolve().parents[3] / "operator" / "modelapp_operator" / "stages").glob("*.py")
        )
        if p.stem != "__init__"
    ),
]
FORBIDDEN = ("kopf", "kubernetes_asyncio", "kubernetes", "azure")

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _imported(*modules: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    loaded: list[str] = json.loads(out)
    return loaded


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_cluster_or_cloud_client(module: str) -> None:
    loaded = _imported(f"modelapp_operator.{module}")
    assert f"modelapp_operator.{module}" in loaded
    leaked = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert leaked == [], f"modelapp_operator.{module} imports {leaked}"


# The bundle package goes into the scorer image too, which installs only the scorer extra.
BUNDLE_MAY_IMPORT = {"modelapp_bundle", "pydantic", "pydantic_core", "annotated_types", "typing_extensions",
                     "typing_inspection", "orjson"}  # fmt: skip


def test_bundle_package_imports_only_pydantic_orjson_and_the_stdlib() -> None:
    loaded = {m.split(".")[0] for m in _imported("modelapp_bundle")}
    assert "modelapp_bundle" in loaded
    assert not loaded & {"kopf", "kubernetes", "kubernetes_asyncio", "azure", "fastapi", "onnxruntime"}
    # Underscored names are the interpreter's own (__main__, _sysconfigdata_*).
    third_party = {m for m in loaded - sys.stdlib_module_names if not m.startswith("_")}
    assert third_party - BUNDLE_MAY_IMPORT == set()


def test_the_probe_can_see_a_forbidden_import() -> None:
    # gather is the I/O layer: it does import kubernetes_asyncio, so the check above can fail.
    loaded = _imported("modelapp_operator.gather")
    assert "kubernetes_asyncio" in loaded
