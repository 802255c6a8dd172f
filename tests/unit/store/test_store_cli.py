"""The modelapp CLI without a store: parsing, settings, credential resolution and the explicit command list."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from modelapp_operator import cli
from modelapp_operator.cli import CliSettings, build_parser, main, resolve_credentials
from modelapp_operator.cli.command import Command
from modelapp_operator.cli.store_commands import format_versions_table

pytestmark = pytest.mark.unit

KEY = "a2V5LW5vdC1yZWFsLWJ1dC1sb25nLWVub3VnaC10by1zY3J1Yg=="


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_publish_arguments() -> None:
    args = parse(
        "publish", "./m", "--version", "1.2.0", "--metric", "r2=0.46", "--metric", "mae=40",
        "--connection-string", "cs", "--container", "models", "--prefix", "diabetes/", "--force",
    )  # fmt: skip
    assert args.command == "publish"
    assert args.directory == Path("./m")
    assert args.metric == [("r2", 0.46), ("mae", 40.0)]
    assert args.force is True
    assert args.name is None


@pytest.mark.parametrize(
    "argv",
    [
        ["publish", "./m"],  # no --version
        ["publish", "./m", "--version", "../1"],
        ["publish", "./m", "--version", "1", "--metric", "r2"],
        ["publish", "./m", "--version", "1", "--metric", "r2=high"],
        ["publish", "./m", "--version", "1", "--connection-string", "x", "--account-url", "y"],
        ["fetch", "--version", "1", "--out", "d", "--sas-token", "x", "--account-key", "y"],
        ["fetch", "--version", "1"],  # no --out
        ["nope"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv, settings=CliSettings())
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("publish", "versions", "fetch"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out
        assert f"modelapp {command}" in out
        assert "MODELAPP_CONNECTION_STRING" in out


def test_settings_come_from_modelapp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELAPP_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    monkeypatch.setenv("MODELAPP_ACCOUNT_KEY", KEY)
    monkeypatch.setenv("MODELAPP_CONTAINER", "models")
    monkeypatch.setenv("MODELAPP_PREFIX", "diabetes/")
    monkeypatch.setenv("MODELAPP_RETRY_TOTAL", "0")
    settings = CliSettings()
    assert settings.container == "models"
    assert settings.retry_total == 0
    assert KEY not in repr(settings)
    url, creds = resolve_credentials(parse("versions"), settings)
    assert url == "https://acct.blob.core.windows.net"
    assert creds.account_key == KEY


def test_invalid_env_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELAPP_RETRY_TOTAL", "lots")
    cli.get_settings.cache_clear()
    try:
        assert main(["versions"]) == 2
    finally:
        cli.get_settings.cache_clear()
    assert "MODELAPP_RETRY_TOTAL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "settings", "expected_url", "expected_kind"),
    [
        (["--connection-string", "CS"], {}, None, "connection string"),
        ([], {"connection_string": "CS"}, None, "connection string"),
        ([], {"account_url": "https://u", "sas_token": "S"}, "https://u", "SAS token"),
        ([], {"account_url": "https://u"}, "https://u", "DefaultAzureCredential"),
        # A location given as a flag wins over a connection string in the environment.
        (
            ["--account-url", "https://flag"],
            {"connection_string": "CS"},
            "https://flag",
            "DefaultAzureCredential",
        ),
        (["--account-url", "https://flag", "--account-key", KEY], {}, "https://flag", "account key"),
        # A flag credential beats the environment's other kind of credential.
        (["--sas-token", "S"], {"account_url": "https://u", "account_key": KEY}, "https://u", "SAS token"),
        (
            ["--account-key", KEY],
            {"account_url": "https://u", "connection_string": "CS"},
            "https://u",
            "account key",
        ),
    ],
)
def test_credential_resolution(
    argv: list[str], settings: dict[str, str], expected_url: str | None, expected_kind: str
) -> None:
    url, creds = resolve_credentials(parse("versions", *argv), CliSettings(**settings))  # type: ignore[arg-type]
    assert url == expected_url
    assert creds.kind == expected_kind


def test_missing_location_or_container_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["versions", "--container", "models"], settings=CliSettings()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no storage location")
    assert "Traceback" not in err
    assert main(["versions", "--connection-string", "x"], settings=CliSettings()) == 2
    assert "no container" in capsys.readouterr().err


def test_connection_string_with_sas_flag_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["versions", "--connection-string", f"AccountKey={KEY}", "--sas-token", "tok", "--container", "c"],
        settings=CliSettings(),
    )
    assert code == 2
    assert KEY not in capsys.readouterr().err


def test_operational_errors_exit_1_without_leaking_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_cs = f"AccountKey={KEY};nonsense"
    (tmp_path / "model.onnx").write_bytes(b"m")
    code = main(
        ["publish", str(tmp_path), "--version", "1", "--connection-string", bad_cs, "--container", "c"],
        settings=CliSettings(),
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: invalid storage configuration")
    assert KEY not in err


def test_publish_of_a_directory_without_a_model_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["publish", str(tmp_path), "--version", "1", "--connection-string", "x", "--container", "c"],
        settings=CliSettings(),
    )
    assert code == 1
    assert "no model.onnx" in capsys.readouterr().err


def test_dockerfile_needs_a_base_image(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "fetch",
        "--version",
        "1",
        "--out",
        "d",
        "--dockerfile",
        "--connection-string",
        "x",
        "--container",
        "c",
    ]
    assert main(argv, settings=CliSettings()) == 2
    assert "--base-image" in capsys.readouterr().err


def scratch_command(seen: list[argparse.Namespace]) -> Command:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name")

    def run(args: argparse.Namespace, settings: CliSettings) -> int:
        seen.append(args)
        return 7

    return Command("scratch-test", help="test only", arguments=arguments, run=run)


def test_the_parser_has_the_listed_commands_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    names = [
        "publish",
        "versions",
        "fetch",
        "status",
        "approve",
        "reject",
        "promote",
        "abort",
        "rollback",
        "unquarantine",
    ]
    assert [c.name for c in cli.COMMANDS] == names
    with pytest.raises(SystemExit):
        main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("    ") and line[4] != " "]
    assert listed == names


def test_main_runs_the_command_it_is_given() -> None:
    seen: list[argparse.Namespace] = []
    scratch = scratch_command(seen)
    assert main(["scratch-test", "diabetes"], settings=CliSettings(), commands=[*cli.COMMANDS, scratch]) == 7
    assert seen[0].name == "diabetes"
    with pytest.raises(ValueError, match="listed twice"):
        build_parser([scratch, scratch])
    with pytest.raises(SystemExit):
        main(["scratch-test", "diabetes"], settings=CliSettings())  # not in the default list


def test_async_commands_are_awaited() -> None:
    async def run(args: argparse.Namespace, settings: CliSettings) -> int:
        return 3

    command = Command("async-test", help="test only", arguments=lambda p: None, run=run)
    assert main(["async-test"], settings=CliSettings(), commands=[command]) == 3


def test_versions_table() -> None:
    rows: list[dict[str, Any]] = [
        {
            "version": "1.0",
            "created": "2026-01-01T00:00:00+00:00",
            "sha256": "ab" * 32,
            "metrics": {"r2": 0.46},
        },
        {"version": "bad", "error": "invalid"},
        {"version": "2.0", "created": "2026-01-02T00:00:00+00:00", "sha256": "cd" * 32, "metrics": {}},
    ]
    lines = format_versions_table(rows).splitlines()
    assert lines[0].split() == ["VERSION", "CREATED", "SHA256", "METRICS"]
    assert lines[1].split() == ["1.0", "2026-01-01T00:00:00+00:00", "abababababab", "r2=0.46"]
    assert lines[2].split() == ["bad", "-", "-", "invalid", "manifest"]
    assert lines[3].split()[-1] == "-"


def test_workload_identity_without_its_token_is_a_clear_error_not_the_default_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pods the operator starts must never fall back to the node's managed identity (IMDS)."""
    for var in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    settings = CliSettings(
        account_url="https://acct.blob.core.windows.net", container="models", credential="workload-identity"
    )
    code = main(["fetch", "--version", "1", "--out", str(tmp_path / "m")], settings)
    assert code == 2
    err = capsys.readouterr().err
    assert "AZURE_FEDERATED_TOKEN_FILE" in err
    assert "azure.workload.identity/use" in err
    assert not (tmp_path / "m").exists()
