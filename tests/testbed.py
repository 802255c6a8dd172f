"""Helpers for tests that run against the local test bed (hack/cluster.sh)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / ".local"
KUBECONFIG = LOCAL / "kubeconfig"
CLUSTER_SH = REPO / "hack" / "cluster.sh"

# Azurite's documented development account; it is public, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_URL = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"

T = TypeVar("T")


@dataclass(frozen=True)
class Azurite:
    account_url: str = AZURITE_URL
    account_name: str = AZURITE_ACCOUNT
    account_key: str = AZURITE_KEY

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.account_url};"
        )


def cluster(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), *args], check=check, text=True, capture_output=True, timeout=1800
    )


def cluster_running() -> bool:
    return cluster("status", check=False).returncode == 0


def component_running(name: str) -> bool:
    out = cluster("status", check=False).stdout
    return f"{name}: running" in out


def kubectl(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the real kubectl against the test bed; tests read its output like a person would."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), *args],
        check=check,
        text=True,
        capture_output=True,
        input=input,
        timeout=300,
        env={**os.environ, "KUBECONFIG": str(KUBECONFIG)},
    )


def wait_until(
    probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.25, what: str = "condition"
) -> T:
    """Polls `probe` until it returns something truthy; fails the test with `what` on time-out."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
