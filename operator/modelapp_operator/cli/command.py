"""What a `modelapp` command is (name, help, arguments, what it runs), its exit codes and the usage error."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modelapp_operator.cli.settings import CliSettings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad combination of arguments: exit code 2, like argparse's own errors."""


RunFn = Callable[[argparse.Namespace, CliSettings], int | Awaitable[int]]
"""Runs a command (sync or async) and returns its exit code."""


@dataclass(frozen=True)
class Command:
    """``modelapp <name>``; the description defaults to the help line."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: RunFn
    description: str = ""
    epilog: str = ""
