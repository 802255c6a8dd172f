"""The ``modelapp`` user command line: publish, list and fetch model versions (store_commands); show a ModelApp,
approve, reject, promote, abort, roll back and release its versions (cluster_commands). ``COMMANDS`` lists
them all. Installed as ``kubectl-modelapp`` too, it is a kubectl plugin: ``kubectl modelapp status NAME``."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TextIO

from modelapp_bundle import BundleError
from pydantic import ValidationError

from modelapp_operator.cli import cluster_commands, store_commands
from modelapp_operator.cli.command import EXIT_ERROR, EXIT_USAGE, Command, UsageError
from modelapp_operator.cli.settings import CliSettings, get_settings
from modelapp_operator.cli.store_commands import resolve_credentials
from modelapp_operator.store import StoreError, scrub

COMMANDS: tuple[Command, ...] = (*store_commands.COMMANDS, *cluster_commands.COMMANDS)

__all__ = [
    "COMMANDS",
    "CliSettings",
    "Command",
    "build_parser",
    "get_settings",
    "main",
    "program_name",
    "resolve_credentials",
]


PROG = "modelapp"
KUBECTL_PLUGIN = "kubectl-modelapp"


def program_name(argv0: str) -> str:
    """How the user called us: kubectl runs a plugin by its path (argv[0]) with the words after
    ``kubectl modelapp`` as its arguments, so help and hints say ``kubectl modelapp`` then."""
    return "kubectl modelapp" if Path(argv0).name.startswith(KUBECTL_PLUGIN) else PROG


def build_parser(commands: Sequence[Command] = COMMANDS, prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Publish model versions to blob storage and manage ModelApps.",
        epilog=f"Run '{prog} <command> --help' for the options and examples of a command.",
    )
    parser.set_defaults(prog=prog)
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    seen: set[str] = set()
    for cmd in commands:
        if cmd.name in seen:
            raise ValueError(f"command {cmd.name!r} listed twice")
        seen.add(cmd.name)
        sub = subparsers.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            epilog=cmd.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.arguments(sub)
    return parser


def main(
    argv: list[str] | None = None,
    settings: CliSettings | None = None,
    commands: Sequence[Command] = COMMANDS,
    prog: str | None = None,
) -> int:
    # The SDK's own warnings may quote request URLs; our errors say what matters.
    logging.getLogger("azure").setLevel(logging.ERROR)
    prog = prog or program_name(sys.argv[0])
    parser = build_parser(commands, prog)
    args = parser.parse_args(argv)
    try:
        settings = settings or get_settings()
    except ValidationError as exc:
        return _fail(
            f"invalid MODELAPP_* environment: {exc.error_count()} problem(s): {_brief(exc)}", EXIT_USAGE
        )
    secrets = _secrets(args, settings)
    run = next(cmd.run for cmd in commands if cmd.name == args.command)
    try:
        result = run(args, settings)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return int(result)
    except UsageError as exc:
        return _fail(scrub(str(exc), secrets), EXIT_USAGE, parser_hint=f"{prog} {args.command} --help")
    except (StoreError, BundleError, ValueError, OSError) as exc:
        return _fail(scrub(str(exc), secrets), EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A user gets one scrubbed line, never a traceback that may quote their paths or keys.
        return _fail(scrub(f"unexpected {type(exc).__name__}: {exc}", secrets), EXIT_ERROR)


async def _await(result: Awaitable[int]) -> int:
    return await result


def _fail(message: str, code: int, *, parser_hint: str | None = None, err: TextIO | None = None) -> int:
    stream = err or sys.stderr
    print(f"error: {message}", file=stream)
    if parser_hint:
        print(f"(see '{parser_hint}')", file=stream)
    return code


def _brief(exc: ValidationError) -> str:
    return "; ".join(f"MODELAPP_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())


def _secrets(args: argparse.Namespace, settings: CliSettings) -> list[str]:
    out = [getattr(args, k, None) for k in ("connection_string", "sas_token", "account_key")]
    for secret in (settings.connection_string, settings.sas_token, settings.account_key):
        if secret is not None:
            out.append(secret.get_secret_value())
    return [s for s in out if s]
