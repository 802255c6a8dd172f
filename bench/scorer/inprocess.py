"""Per-request CPU of our scorer and of the bare ASGI ceiling, in one process, without the network.

    .venv/bin/python bench/scorer/inprocess.py [--requests 500] [--rounds 40] [--profile]

Each server's uvicorn HTTP protocol (ours: `GuardedProtocol` and the config `serve` builds; the
ceiling: uvicorn's httptools protocol) is fed the same raw 1-row OIP request over one keep-alive
connection whose transport only records what is written: the figures are the Python work of a
request (HTTP parsing callbacks, the ASGI app, onnxruntime), without the kernel's share, which is
the same for both. `--profile` prints cProfile's top functions for ours. Run it under
`valgrind --tool=callgrind` for instruction counts that other load on the host does not change.
Needs bench/.work/models/diabetes (run.py writes it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from uvicorn.lifespan.on import LifespanOn
from uvicorn.server import ServerState

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before bare_asgi loads onnxruntime, as the scorer does
BUNDLE = REPO / "bench" / ".work" / "models" / "diabetes"
BODY = (
    b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": [0.038, 0.05, 0.061, '
    b"0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]}]}"
)
REQUEST = (
    b"POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


class Recording(asyncio.Transport):
    """A transport that keeps the last response written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.last = b""
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: Any) -> None:
        self.last = bytes(data)

    def writelines(self, list_of_data: Any) -> None:
        self.last = b"".join(list_of_data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def config_for(server: str) -> uvicorn.Config:
    if server == "bare":
        os.environ["MODEL"] = str(BUNDLE / "model.onnx")
        sys.path.insert(0, str(REPO))
        return uvicorn.Config(
            "bench.scorer.bare_asgi:app",
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
        )
    from scoring_service.logs import configure_logging
    from scoring_service.server import uvicorn_config
    from scoring_service.settings import Settings

    settings = Settings(model_dir=BUNDLE, grpc_port=0, log_level="warning")
    configure_logging(settings.log_level, settings.log_format)
    return uvicorn_config(settings)


async def measure(server: str, requests: int, rounds: int, profile: bool) -> list[float]:
    """Microseconds of CPU per request, one figure per round."""
    config = config_for(server)
    config.load()
    lifespan = LifespanOn(config)
    await lifespan.startup()
    loop = asyncio.get_running_loop()
    protocol = config.http_protocol_class(config, ServerState(), {}, loop)  # type: ignore[call-arg]
    protocol.connection_made(Recording())
    done: list[asyncio.Future[None]] = []
    on_response = protocol.on_response_complete

    def completed() -> None:
        on_response()
        done[0].set_result(None)

    protocol.on_response_complete = completed  # type: ignore[method-assign]

    async def one() -> None:
        done[:] = [loop.create_future()]
        protocol.data_received(REQUEST)
        await done[0]

    for _ in range(1000):
        await one()
    profiler = cProfile.Profile() if profile else None
    figures = []
    for _ in range(rounds):
        if profiler is not None:
            profiler.enable()
        start = time.process_time()
        for _ in range(requests):
            await one()
        figures.append((time.process_time() - start) / requests * 1e6)
        if profiler is not None:
            profiler.disable()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    await lifespan.shutdown()
    return sorted(figures)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=500, help="requests per round")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions for ours")
    parser.add_argument("--server", choices=["ours", "bare", "both"], default="both")
    args = parser.parse_args()
    uvloop.install()
    servers = ["ours", "bare"] if args.server == "both" else [args.server]
    results = {}
    for server in servers:
        figures = asyncio.run(measure(server, args.requests, args.rounds, args.profile and server == "ours"))
        results[server] = figures[0]
        print(
            f"{server}: {figures[0]:.1f} us/request (lowest of {args.rounds} rounds), median {figures[len(figures) // 2]:.1f}"
        )
    if len(results) == 2:
        print(f"ceiling/ours: {results['bare'] / results['ours']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
