"""uvicorn wiring for `serve`: the serving socket, the operations socket, one or several workers."""

from __future__ import annotations

import logging
import os
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

from scoring_service.settings import Settings

log = logging.getLogger(__name__)

STARTUP_FAILURE = 3  # uvicorn's exit code when the app's startup fails


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """One uvicorn config for both sockets: the app tells them apart by the port a request came in on."""
    if settings.workers == 1:
        from scoring_service.app import create_app

        app: object = create_app(settings)
    else:
        app = "scoring_service.app:app_from_env"  # each worker builds its app from SCORING_* variables
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        factory=settings.workers > 1,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,  # keep our structured handlers
        log_level=settings.log_level,
        access_log=settings.access_log,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=20,
    )


def bind(host: str, port: int) -> socket.socket:
    """A socket bound as uvicorn binds its own, for the operations port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        log.error("cannot bind the operations port %s:%d: %s", host, port, exc)
        sys.exit(1)
    sock.set_inheritable(True)
    log.info("operations endpoints (/metrics, /docs, /openapi.json) on http://%s:%d", host, port)
    return sock


def run(settings: Settings) -> int:
    """Serve until a signal; the exit code."""
    config = uvicorn_config(settings)
    sockets = [config.bind_socket()]
    if settings.metrics_port:
        sockets.append(bind(settings.host, settings.metrics_port))
    if settings.workers > 1:
        # Workers rebuild settings from the environment: pass every value `serve` may have overridden.
        for name in ("model_dir", "host", "port", "workers", "metrics_port"):
            os.environ[f"SCORING_{name.upper()}"] = str(getattr(settings, name))
        Multiprocess(config, sockets=sockets).run()
        return 0
    server = uvicorn.Server(config)
    server.run(sockets=sockets)
    return 0 if server.started else STARTUP_FAILURE
