"""`modelapp promote|abort|status` without a cluster: the ModelApp comes from memory, patches are recorded.

The real API server (kubeconfig, merge patch, 404s) is exercised by tests/integration/operator/test_cli_gates.py.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any, ClassVar

import pytest
from modelapp_operator.cli import CliSettings, build_parser, cluster_commands, main, program_name
from modelapp_operator.names import ANN_ABORT, ANN_PROMOTE

pytestmark = pytest.mark.unit


class FakeCluster:
    """Stands in for cluster_commands._Cluster: one ModelApp, every patch recorded."""

    app: ClassVar[dict[str, Any]] = {}
    patches: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    async def __aenter__(self) -> FakeCluster:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def get(self) -> dict[str, Any]:
        return copy.deepcopy(self.app)

    async def patch(self, body: dict[str, Any]) -> None:
        self.patches.append(body)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> type[FakeCluster]:
    monkeypatch.setattr(
        FakeCluster, "app", {"metadata": {"name": "diabetes", "namespace": "ml"}, "status": {}}
    )
    monkeypatch.setattr(FakeCluster, "patches", [])
    monkeypatch.setattr(cluster_commands, "_Cluster", FakeCluster)
    return FakeCluster


def pending(stage: str, version: str = "1.2.0") -> dict[str, Any]:
    return {"pending": {"version": version, "stage": stage}}


def run(*argv: str) -> int:
    return main(list(argv), settings=CliSettings(), prog="modelapp")


@pytest.mark.parametrize(("verb", "annotation"), [("promote", ANN_PROMOTE), ("abort", ANN_ABORT)])
@pytest.mark.parametrize("stage", ["Canary", "Shadowing"])
def test_the_gated_version_is_the_default(
    cluster: type[FakeCluster], verb: str, annotation: str, stage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.app["status"] = pending(stage)
    assert run(verb, "diabetes", "-n", "ml") == 0
    assert cluster.patches == [{"metadata": {"annotations": {annotation: "1.2.0"}}}]
    out = capsys.readouterr().out
    assert out.startswith(f"{'promoting' if verb == 'promote' else 'aborting'} diabetes 1.2.0")


@pytest.mark.parametrize("verb", ["promote", "abort"])
@pytest.mark.parametrize(
    ("status", "said"),
    [
        ({}, "no version is pending"),
        (pending("AwaitingApproval"), "1.2.0 is AwaitingApproval"),
        (pending("Soaking"), "1.2.0 is Soaking"),
        (pending("RollingOut"), "1.2.0 is RollingOut"),
    ],
)
def test_without_a_gated_version_it_is_a_usage_error(
    cluster: type[FakeCluster],
    verb: str,
    status: dict[str, Any],
    said: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster.app["status"] = status
    assert run(verb, "diabetes") == 2
    err = capsys.readouterr().err
    assert said in err
    assert "--version" in err
    assert f"(see 'modelapp {verb} --help')" in err
    assert cluster.patches == []


@pytest.mark.parametrize(("verb", "annotation"), [("promote", ANN_PROMOTE), ("abort", ANN_ABORT)])
def test_a_named_version_is_used_as_given(cluster: type[FakeCluster], verb: str, annotation: str) -> None:
    cluster.app["status"] = pending("AwaitingApproval")
    assert run(verb, "diabetes", "--version", "0.9.0") == 0
    assert cluster.patches == [{"metadata": {"annotations": {annotation: "0.9.0"}}}]


@pytest.mark.parametrize("verb", ["promote", "abort"])
def test_arguments(verb: str) -> None:
    args = build_parser().parse_args(
        [verb, "diabetes", "-n", "ml", "--version", "1.2.0", "--kubeconfig", "k"]
    )
    assert (args.name, args.namespace, args.version, args.kubeconfig) == ("diabetes", "ml", "1.2.0", "k")
    with pytest.raises(SystemExit):
        build_parser().parse_args([verb])  # the name is required


def test_help_says_what_the_operator_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("abort", "--help")
    text = capsys.readouterr().out
    assert "modelapp.dev/abort=" in text
    assert "scales the candidate to zero" in text
    assert "quarantines" in text
    with pytest.raises(SystemExit):
        run("promote", "--help")
    assert "modelapp.dev/promote=" in capsys.readouterr().out


def test_status_prints_text_or_json(cluster: type[FakeCluster], capsys: pytest.CaptureFixture[str]) -> None:
    cluster.app["status"] = pending("Canary")
    assert run("status", "diabetes", "-n", "ml") == 0
    text = capsys.readouterr().out
    assert text.startswith("ModelApp ml/diabetes\n")
    assert "modelapp promote diabetes -n ml --version 1.2.0" in text
    assert run("status", "diabetes", "-o", "json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pending"]["stage"] == "Canary"
    assert cluster.patches == []  # status only reads
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "diabetes", "-o", "yaml"])


def test_as_a_kubectl_plugin_help_and_hints_say_kubectl_modelapp(
    cluster: type[FakeCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    assert program_name("/usr/local/bin/kubectl-modelapp") == "kubectl modelapp"
    assert program_name("C:\\bin\\kubectl-modelapp.exe".replace("\\", "/")) == "kubectl modelapp"
    assert program_name("/venv/bin/modelapp") == "modelapp"
    cluster.app["status"] = pending("Shadowing")
    assert main(["status", "diabetes", "-n", "ml"], settings=CliSettings(), prog="kubectl modelapp") == 0
    assert "kubectl modelapp abort diabetes -n ml --version 1.2.0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"], settings=CliSettings(), prog="kubectl modelapp")
    assert capsys.readouterr().out.startswith("usage: kubectl modelapp ")
