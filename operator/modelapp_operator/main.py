"""`modelapp-operator`: runs the kopf operator (in-cluster config or KUBECONFIG)."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys

import kopf

from modelapp_operator import handlers  # noqa: F401 - registers the handlers
from modelapp_operator.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelapp-operator",
        description="Follow model versions in Azure Blob Storage and roll ModelApps to them.",
        epilog="Settings also come from MODELAPP_OPERATOR_* environment variables (see the README).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch this namespace (repeatable); default: all",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument(
        "--peering", metavar="NAME", help="kopf peering name: run several replicas, one active"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="kopf peering priority; default with --peering: random, so exactly one replica acts",
    )
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8081/healthz", help="liveness endpoint URL ('' to disable)"
    )
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (0 disables)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format", choices=["plain", "json"], default="json", help="log format (default json)"
    )
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    # Never below these levels, even with -v: the Kubernetes client's DEBUG lines carry response
    # bodies (Secrets included) and the Azure SDK's carry request details.
    logging.getLogger("kubernetes_asyncio").setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(logging.WARNING)
    if not args.verbose:
        # kopf logs every handler call at INFO; our own logs say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    settings = get_settings()
    if args.namespace:
        settings.namespaces = args.namespace
    if args.all_namespaces:
        settings.namespaces = []
    if args.metrics_port is not None:
        settings.metrics_port = args.metrics_port

    priority = args.priority
    if priority is None:
        priority = 1 + secrets.randbelow(1 << 16) if args.peering else 0
    _configure_logging(args)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        # kopf pauses every operator that sees a peer of equal priority: distinct priorities let the
        # highest one act while the others stand by.
        priority=priority,
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
