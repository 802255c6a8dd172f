"""`modelapp status`, and `approve|reject|promote|abort|rollback|unquarantine`: user actions on a ModelApp,
through annotations.

Each action is an annotation the operator turns into status (and then removes), so a kubectl user can do
the same by hand, e.g. `kubectl annotate modelapp diabetes modelapp.dev/approve=1.1.0`.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from modelapp_operator.cli.command import Command, UsageError
from modelapp_operator.cli.settings import CliSettings
from modelapp_operator.cli.status_view import render, summarize
from modelapp_operator.kubeapi import MERGE, explain
from modelapp_operator.names import (
    ANN_ABORT,
    ANN_APPROVE,
    ANN_PROMOTE,
    ANN_QUARANTINE,
    ANN_REJECT,
    ANN_UNQUARANTINE,
    GROUP,
    PLURAL,
    VERSION,
    Reason,
    Stage,
)

API_TIMEOUT = 30.0  # seconds for each API call: a person is waiting


class ClusterError(ValueError):
    """A problem with the ModelApp or the cluster, said in one line."""


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="ModelApp name")
    parser.add_argument(
        "-n", "--namespace", help="namespace (default: the kubeconfig context's, else 'default')"
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")


class _Cluster:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.api: client.ApiClient | None = None
        self.namespace = args.namespace or "default"

    async def __aenter__(self) -> _Cluster:
        try:
            await config.load_kube_config(config_file=self.args.kubeconfig)
            if not self.args.namespace:
                _, active = config.list_kube_config_contexts(config_file=self.args.kubeconfig)
                self.namespace = (active or {}).get("context", {}).get("namespace") or "default"
        except (config.ConfigException, OSError, TypeError) as exc:
            raise ClusterError(f"no usable kubeconfig: {exc}") from None
        self.api = client.ApiClient()
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.api is not None:
            await self.api.close()

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    async def get(self) -> dict[str, Any]:
        try:
            app: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.args.name, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            raise ClusterError(explain(exc, f"modelapp {self.args.name}", self.namespace)) from None
        return app

    async def patch(self, body: dict[str, Any]) -> None:
        try:
            await self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.args.name,
                body,
                _content_type=MERGE,
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as exc:
            raise ClusterError(explain(exc, f"modelapp {self.args.name}", self.namespace)) from None


def _pending_version(app: dict[str, Any], given: str | None, verb: str) -> str:
    if given:
        return given
    pending = (app.get("status") or {}).get("pending") or {}
    if pending.get("stage") != Stage.AWAITING_APPROVAL:
        raise ClusterError(
            f"no version of {app['metadata']['name']} awaits approval; name one with --version to {verb} it"
        )
    return str(pending["version"])


def _version_arguments(parser: argparse.ArgumentParser) -> None:
    _target_arguments(parser)
    parser.add_argument("--version", help="model version (default: the one awaiting approval)")


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _target_arguments(parser)
    parser.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="text (default) or a JSON summary"
    )


async def status(args: argparse.Namespace, settings: CliSettings) -> int:
    async with _Cluster(args) as cluster:
        app = await cluster.get()
    prog = getattr(args, "prog", "modelapp")
    now = datetime.now(UTC)
    if args.output == "json":
        print(json.dumps(summarize(app, now, prog), indent=2))
    else:
        print(render(app, now, prog), end="")
    return 0


STATUS = Command(
    "status",
    help="show a ModelApp: what serves, the version on its way and its stage, what to run next, history",
    arguments=_status_arguments,
    epilog="examples:\n  modelapp status diabetes -n ml\n  modelapp status diabetes -n ml -o json | jq .pending\n"
    "  kubectl modelapp status diabetes -n ml     # the same, as a kubectl plugin",
    run=status,
)


async def approve(args: argparse.Namespace, settings: CliSettings) -> int:
    async with _Cluster(args) as cluster:
        app = await cluster.get()
        version = _pending_version(app, args.version, "approve")
        await cluster.patch({"metadata": {"annotations": {ANN_APPROVE: version}}})
        diff = ((app.get("status") or {}).get("pending") or {}).get("metricsDiff") or {}
        shown = ", ".join(
            f"{k}: {v.get('serving', '-')} → {v.get('candidate', '-')}" for k, v in diff.items()
        )
        print(f"approved {args.name} {version}" + (f" ({shown})" if shown else ""))
    return 0


APPROVE = Command(
    "approve",
    help="approve the rollout of a version (rollout.approval: Manual)",
    arguments=_version_arguments,
    epilog="example:\n  modelapp approve diabetes -n ml --version 1.1.0\n"
    "by hand:\n  kubectl -n ml annotate modelapp diabetes modelapp.dev/approve=1.1.0 --overwrite",
    run=approve,
)


async def reject(args: argparse.Namespace, settings: CliSettings) -> int:
    async with _Cluster(args) as cluster:
        app = await cluster.get()
        version = _pending_version(app, args.version, "reject")
        await cluster.patch({"metadata": {"annotations": {ANN_REJECT: version}}})
        print(f"rejected {args.name} {version}: it is quarantined")
    return 0


REJECT = Command(
    "reject",
    help="reject a version: it is quarantined and never rolled out",
    arguments=_version_arguments,
    epilog="example:\n  modelapp reject diabetes -n ml --version 1.1.0",
    run=reject,
)


def _gated_version(app: dict[str, Any], given: str | None, verb: str) -> str:
    """The version in a canary or shadow gate, unless one is named."""
    if given:
        return given
    pending = (app.get("status") or {}).get("pending") or {}
    stage = pending.get("stage")
    if stage not in (Stage.CANARY, Stage.SHADOWING) or not pending.get("version"):
        where = f"{pending.get('version')} is {stage}" if pending.get("version") else "no version is pending"
        raise UsageError(
            f"nothing of {app['metadata']['name']} to {verb}: {where}, not in a Canary or Shadowing stage; "
            "name one with --version"
        )
    return str(pending["version"])


def _gate_arguments(parser: argparse.ArgumentParser) -> None:
    _target_arguments(parser)
    parser.add_argument("--version", help="model version (default: the one in a Canary or Shadowing stage)")


async def _annotate_gated(args: argparse.Namespace, annotation: str, verb: str) -> str:
    async with _Cluster(args) as cluster:
        version = _gated_version(await cluster.get(), args.version, verb)
        await cluster.patch({"metadata": {"annotations": {annotation: version}}})
    return version


async def promote(args: argparse.Namespace, settings: CliSettings) -> int:
    version = await _annotate_gated(args, ANN_PROMOTE, "promote")
    print(f"promoting {args.name} {version}: the remaining canary steps or shadow gate are skipped")
    return 0


PROMOTE = Command(
    "promote",
    help="roll out a version now, skipping its remaining canary steps or its shadow gate",
    arguments=_gate_arguments,
    description="Roll out a version now, skipping its remaining canary steps or its shadow gate.\n\n"
    "Sets the annotation modelapp.dev/promote=<version>; the operator rolls the version to every replica\n"
    "and removes the annotation.",
    epilog="example:\n  modelapp promote diabetes -n ml            # the version in Canary or Shadowing\n"
    "by hand:\n  kubectl -n ml annotate modelapp diabetes modelapp.dev/promote=1.2.0 --overwrite",
    run=promote,
)


async def abort(args: argparse.Namespace, settings: CliSettings) -> int:
    version = await _annotate_gated(args, ANN_ABORT, "abort")
    print(f"aborting {args.name} {version}: the candidate is scaled to zero and the version quarantined")
    return 0


ABORT = Command(
    "abort",
    help="stop a version in a canary or shadow stage: its pods go, it is quarantined",
    arguments=_gate_arguments,
    description="Stop a version in a Canary or Shadowing stage.\n\n"
    "Sets the annotation modelapp.dev/abort=<version>; the operator scales the candidate to zero,\n"
    "quarantines the version (reason Aborted) and keeps serving what served. `modelapp unquarantine`\n"
    "lets the version policy pick it again.",
    epilog="example:\n  modelapp abort diabetes -n ml\n"
    "by hand:\n  kubectl -n ml annotate modelapp diabetes modelapp.dev/abort=1.2.0 --overwrite",
    run=abort,
)


def _rollback_arguments(parser: argparse.ArgumentParser) -> None:
    _target_arguments(parser)
    parser.add_argument(
        "--to", metavar="VERSION", help="version to go back to (default: the one served before)"
    )


async def rollback(args: argparse.Namespace, settings: CliSettings) -> int:
    async with _Cluster(args) as cluster:
        app = await cluster.get()
        status = app.get("status") or {}
        current = (status.get("servingVersion") or {}).get("version")
        if not current:
            raise ClusterError(f"{args.name} serves no version yet: there is nothing to roll back")
        target = args.to or _previous_good(status, current)
        if target is None:
            raise ClusterError(f"{args.name} has served no version before {current}; name one with --to")
        if target == current:
            raise ClusterError(f"{args.name} already serves {current}")
        await cluster.patch(
            {
                "metadata": {"annotations": {ANN_QUARANTINE: current}},
                "spec": {
                    "model": {
                        "versionPolicy": {"latest": None, "semver": None, "pinned": {"version": target}}
                    }
                },
            }
        )
        print(
            f"rolling {args.name} back from {current} to {target}: pinned to {target}, {current} quarantined"
        )
    return 0


ROLLBACK = Command(
    "rollback",
    help="pin a ModelApp back to a previous good version and quarantine the current one",
    arguments=_rollback_arguments,
    epilog="example:\n  modelapp rollback diabetes -n ml            # to the version served before\n"
    "  modelapp rollback diabetes -n ml --to 1.0.0\n"
    "To follow new versions again, set spec.model.versionPolicy back to {latest: {}}.",
    run=rollback,
)


def _previous_good(status: dict[str, Any], current: str) -> str | None:
    for entry in reversed(status.get("history") or []):
        if entry.get("event") == Reason.ROLLED_OUT and entry.get("version") != current:
            return str(entry["version"])
    return None


def _unquarantine_arguments(parser: argparse.ArgumentParser) -> None:
    _target_arguments(parser)
    parser.add_argument("version", help="the quarantined version to release")


async def unquarantine(args: argparse.Namespace, settings: CliSettings) -> int:
    async with _Cluster(args) as cluster:
        app = await cluster.get()
        quarantined = [q.get("version") for q in (app.get("status") or {}).get("quarantined") or []]
        if args.version not in quarantined:
            listed = ", ".join(v for v in quarantined if v) or "none"
            raise ClusterError(f"{args.version} is not quarantined in {args.name} (quarantined: {listed})")
        await cluster.patch({"metadata": {"annotations": {ANN_UNQUARANTINE: args.version}}})
        print(f"released {args.name} {args.version} from quarantine")
    return 0


UNQUARANTINE = Command(
    "unquarantine",
    help="release a quarantined version so the version policy may pick it again",
    arguments=_unquarantine_arguments,
    epilog="example:\n  modelapp unquarantine diabetes 1.1.0 -n ml",
    run=unquarantine,
)

COMMANDS = (STATUS, APPROVE, REJECT, PROMOTE, ABORT, ROLLBACK, UNQUARANTINE)
