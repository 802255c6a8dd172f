"""`scoring-service serve|smoke`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from scoring_service.logs import configure_logging
from scoring_service.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scoring-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve every model bundle under --model-dir")
    serve.add_argument("--model-dir", type=Path, help="a bundle or a folder of bundles (SCORING_MODEL_DIR)")
    serve.add_argument("--host", help="bind address (SCORING_HOST)")
    serve.add_argument("--port", type=int, help="port (SCORING_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (SCORING_WORKERS)")
    serve.add_argument(
        "--grpc-port", type=int, help="port of the gRPC API and gRPC health; 0: off (SCORING_GRPC_PORT)"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics, /docs, /openapi.json; 0: off (SCORING_METRICS_PORT)",
    )
    smoke = sub.add_parser("smoke", help="run the bundle's contract (or one generated request) in-process")
    smoke.add_argument("--model-dir", type=Path, help="a bundle or a folder of bundles (SCORING_MODEL_DIR)")
    smoke.add_argument("--contract", type=Path, help="contract file; default: each bundle's own contract")
    return parser


def _overrides(args: argparse.Namespace, *names: str) -> dict[str, object]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def serve(args: argparse.Namespace) -> int:
    from scoring_service.server import run

    names = ("model_dir", "host", "port", "workers", "grpc_port", "metrics_port")
    settings = Settings(**_overrides(args, *names))  # type: ignore[arg-type]
    configure_logging(settings.log_level, settings.log_format, settings.access_log)
    return run(settings)


def smoke(args: argparse.Namespace) -> int:
    from scoring_service.smoke import run_smoke

    settings = Settings(**_overrides(args, "model_dir"))  # type: ignore[arg-type]
    configure_logging("warning", "text")
    report = asyncio.run(run_smoke(settings, args.contract))
    print(report.render())
    return 0 if report.failures == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return serve(args) if args.command == "serve" else smoke(args)


if __name__ == "__main__":
    sys.exit(main())
