"""Fixtures for the chart's e2e tests: releases, a second namespace, kopf's peering CRDs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers of this folder (chart_kit) import like tests/testbed.py does.
sys.path.insert(0, str(Path(__file__).parent))

from chart_kit import CHART, Installer, helm, new_namespace, set_args
from operator_kit import KWOK_PLACEMENT
from testbed import kubectl


@pytest.fixture
def app_namespace(testbed: Path) -> Iterator[str]:
    """A second fresh namespace: where ModelApps live when the operator runs in `namespace`."""
    name = new_namespace()
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def peering_crds(testbed: Path) -> None:
    """kopf's peering CRDs from the chart, so that `--dry-run=server` knows the peering kinds."""
    kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds" / "kopf.dev_peerings.yaml")
    )
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/kopfpeerings.kopf.dev",
        "crd/clusterkopfpeerings.kopf.dev",
        "--timeout=60s",
    )


@pytest.fixture
def install(namespace: str, crds: None, peering_crds: None) -> Iterator[Installer]:
    """`helm install --wait` of the chart into `namespace` (a unique release name: its ClusterRoles are
    cluster-scoped), its operator pod on the KWOK nodes (it only has to become Ready there; the tests run
    the operator as a process); every release is uninstalled afterwards."""
    releases: list[str] = []

    def run(values: dict[str, Any] | None = None) -> str:
        release = f"r{namespace[2:]}-{len(releases)}"
        helm(
            "install",
            release,
            str(CHART),
            "-n",
            namespace,
            "--wait",
            "--timeout",
            "90s",
            *set_args({**KWOK_PLACEMENT, **(values or {})}),
        )
        releases.append(release)
        return release

    yield run
    for release in releases:
        helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "60s", check=False)
