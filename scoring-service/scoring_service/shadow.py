"""Shadow mirroring: a sample of the infer requests served here is replayed on a candidate, off the request path.

The configuration is a file (`SCORING_SHADOW_CONFIG`, mounted from a ConfigMap by the operator) re-read
every `SCORING_SHADOW_RELOAD_SECONDS`:

    {"url": "http://10.96.0.17:8080", "candidate": "1.3.0", "sample": 0.2, "timeoutSeconds": 5}

Missing, empty or `{}`: off; invalid: off, and one warning per content. A request answered 2xx is,
with probability `sample`, put on a bounded queue (full: dropped and counted) that a few worker tasks
drain: each sends the body to `{url}/v2/models/{name}/infer`, compares the two answers
(`compare.py`) and counts the result. The client's response never waits on any of it.

Metrics, each labelled `model`, `serving` (this pod's version), `candidate` (the configured version):

- `scoring_shadow_requests_total`: requests sent to the candidate (each is compared or one failure);
- `scoring_shadow_failures_total{reason}`: `error` (non-2xx or broken HTTP), `timeout`, `connect`,
  `mismatch` (outputs of other names, shapes or row counts);
- `scoring_shadow_dropped_total`: sampled requests not mirrored because the queue was full;
- `scoring_shadow_abs_diff_sum_total` / `scoring_shadow_values_total`: sum of |serving - candidate|
  over the numeric output values compared, and their number (mean absolute difference = sum / values);
- `scoring_shadow_rows_total` / `scoring_shadow_agreed_rows_total`: rows compared for top-1 agreement
  and rows that agreed;
- `scoring_shadow_serving_duration_seconds`, `scoring_shadow_candidate_duration_seconds`: histograms
  of the serving model's own time and of the candidate's round trip, over the requests the candidate
  answered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from scoring_service.compare import Comparison, Mismatch, compare, read_outputs
from scoring_service.http1 import ConnectFailed, Connection
from scoring_service.metrics import Metrics
from scoring_service.service import HEADER_LENGTH, SERVER_TIMING, SHADOW_HEADER, DataPlane, Reply
from scoring_service.settings import Settings

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
WORKERS = 4
REASONS = ("error", "timeout", "connect", "mismatch")


class ShadowConfig(BaseModel):
    """The content of the shadow configuration file (written by the operator)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    url: str
    """http(s) base URL of the candidate's Service."""
    candidate: str = Field(min_length=1)
    """The candidate's model version (the `candidate` label)."""
    sample: float = Field(ge=0, le=1)
    """Fraction of the requests answered 2xx that are mirrored."""
    timeout_seconds: float = Field(default=5.0, gt=0, alias="timeoutSeconds")
    """Deadline of one mirrored request, connecting included."""

    @field_validator("url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"must be an http(s) base URL such as http://10.96.0.17:8080, not {value!r}")
        return value.rstrip("/")


def parse_shadow_config(content: bytes) -> ShadowConfig | None:
    """The configuration in a file's content; None (off) when empty or `{}`. ValueError if invalid."""
    if not content.strip():
        return None
    document = orjson.loads(content)
    if document == {}:
        return None
    return ShadowConfig.model_validate(document)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return b""
    except OSError as exc:
        # Unreadable: invalid content, which warns once per distinct error, not once per reload.
        return f"unreadable: {exc}".encode()


@dataclass(frozen=True, slots=True)
class Mirrored:
    """A request answered 2xx and sampled, waiting on the queue."""

    config: ShadowConfig
    name: str
    version: str | None
    body: bytes
    content_type: str | None
    header_length: int | None
    reply: Reply
    serving_seconds: float


@dataclass(frozen=True, slots=True)
class _Children:
    """The metrics' label children for one (model, serving, candidate): resolved once."""

    requests: Any
    failures: dict[str, Any]
    dropped: Any
    abs_diff: Any
    values: Any
    rows: Any
    agreed_rows: Any
    serving: Any
    candidate: Any

    @classmethod
    def of(cls, m: Metrics, key: tuple[str, str, str]) -> _Children:
        return cls(
            m.shadow_requests.labels(*key),
            {reason: m.shadow_failures.labels(*key, reason) for reason in REASONS},
            m.shadow_dropped.labels(*key),
            m.shadow_abs_diff.labels(*key),
            m.shadow_values.labels(*key),
            m.shadow_rows.labels(*key),
            m.shadow_agreed_rows.labels(*key),
            m.shadow_serving_latency.labels(*key),
            m.shadow_candidate_latency.labels(*key),
        )


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    header_length: int | None
    seconds: float


class Shadow:
    """The configuration watcher, the queue and its workers; started and stopped with the app.

    While a configuration is on, `plane.mirror` is `offer`, which `routes.handle_infer` calls; while
    off it is None, and a request pays one attribute check.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        plane: DataPlane,
        *,
        draw: Callable[[], float] = random.random,
        workers: int = WORKERS,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._path = settings.shadow_config
        self._interval = settings.shadow_reload_seconds
        self._inline_max_bytes = settings.inline_max_bytes
        self._metrics = metrics
        self._plane = plane
        self._draw = draw
        self._workers = workers
        self.config: ShadowConfig | None = None
        self._content: bytes | None = None
        self.queue: asyncio.Queue[Mirrored] = asyncio.Queue(queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._children: dict[tuple[str, str, str], _Children] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.reload()
        self._tasks = [asyncio.create_task(self._watch(), name="shadow-config")]
        self._tasks += [asyncio.create_task(self._work(), name=f"shadow-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        self._apply(None)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.reload()
            except Exception:
                log.exception("cannot reload the shadow configuration %s", self._path)

    def reload(self) -> None:
        """Read the file; when its content changed, apply it. kubelet swaps a ConfigMap's files under
        the mount, so the content is read each time, never an open file or its inode."""
        content = _read(self._path)
        if content == self._content:
            return
        self._content = content
        try:
            config = parse_shadow_config(content)
        except ValueError as exc:
            reason = str(exc).replace("\n", " ")[:300]
            log.warning("shadow mirroring off: invalid configuration in %s: %s", self._path, reason)
            config = None
        was_on = self.config is not None
        self._apply(config)
        if config is not None:
            log.info(
                "shadow mirroring on: %.0f%% of the requests to candidate %s at %s",
                config.sample * 100, config.candidate, config.url,
                extra={"candidate": config.candidate, "url": config.url, "sample": config.sample},
            )  # fmt: skip
        elif was_on:
            log.info("shadow mirroring off")

    def _apply(self, config: ShadowConfig | None) -> None:
        self.config = config
        self._plane.mirror = self.offer if config is not None else None

    # -- on the request path: sample and enqueue, nothing else --------------------------------

    def offer(
        self,
        name: str,
        version: str | None,
        body: bytes,
        content_type: str | None,
        header_length: int | None,
        reply: Reply,
        serving_seconds: float,
    ) -> None:
        """Called for each infer request answered 2xx while mirroring is on."""
        config = self.config
        if config is None or self._draw() >= config.sample:
            return
        item = Mirrored(config, name, version, body, content_type, header_length, reply, serving_seconds)
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self._labels(item).dropped.inc()

    # -- off the request path ----------------------------------------------------------------

    def _labels(self, item: Mirrored) -> _Children:
        key = (item.name, self._plane.repo.get(item.name, item.version).version, item.config.candidate)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = _Children.of(self._metrics, key)
        return children

    async def _work(self) -> None:
        """One worker: one keep-alive connection to the candidate, one request at a time."""
        connection: Connection | None = None
        try:
            while True:
                item = await self.queue.get()
                if connection is None or connection.url != item.config.url:
                    if connection is not None:
                        connection.close()
                    connection = Connection(item.config.url)
                try:
                    await self._mirror(item, connection)
                except Exception:
                    log.exception("shadow mirroring of a %s request failed", item.name)
        finally:
            if connection is not None:
                connection.close()

    async def _mirror(self, item: Mirrored, connection: Connection) -> None:
        children = self._labels(item)
        children.requests.inc()
        try:
            answer = await _send(item, connection)
        except _Failed as failed:
            children.failures[failed.reason].inc()
            return
        children.serving.observe(item.serving_seconds)
        children.candidate.observe(answer.seconds)
        if not 200 <= answer.status < 300:
            children.failures["error"].inc()
            return
        try:
            if len(answer.body) + len(item.reply.body) <= self._inline_max_bytes:
                result = _compare(item.reply, answer)
            else:  # large outputs: parse and diff them off the event loop
                result = await asyncio.to_thread(_compare, item.reply, answer)
        except Mismatch as exc:
            log.debug("shadow mismatch on %s: %s", item.name, exc)
            children.failures["mismatch"].inc()
            return
        children.abs_diff.inc(result.abs_diff_sum)
        children.values.inc(result.values)
        children.rows.inc(result.rows)
        children.agreed_rows.inc(result.agreed_rows)


async def _send(item: Mirrored, connection: Connection) -> _Answer:
    headers = {"Content-Type": item.content_type or "application/json", SHADOW_HEADER: "1"}
    if item.header_length is not None:
        headers[HEADER_LENGTH] = str(item.header_length)
    start = time.perf_counter()
    try:
        answer = await connection.post(
            f"/v2/models/{quote(item.name, safe='')}/infer", item.body, headers, item.config.timeout_seconds
        )
    except ConnectFailed:
        raise _Failed("connect") from None
    except TimeoutError:
        raise _Failed("timeout") from None
    except (OSError, EOFError, ValueError):  # a broken connection or an answer that is not HTTP
        raise _Failed("error") from None
    round_trip = time.perf_counter() - start
    length = answer.headers.get(HEADER_LENGTH.lower())
    header_length = int(length) if length is not None and length.isascii() and length.isdigit() else None
    # The candidate's own time, measured as the serving side measures its own (not the network's share).
    own = server_seconds(answer.headers.get(SERVER_TIMING.lower(), ""))
    return _Answer(answer.status, answer.body, header_length, round_trip if own is None else own)


_DUR = re.compile(r"(?:^|[;,\s])dur=([0-9]+(?:\.[0-9]+)?)")


def server_seconds(value: str) -> float | None:
    """The first ``dur`` of a Server-Timing header, in seconds; None without one."""
    m = _DUR.search(value)
    return float(m.group(1)) / 1000 if m else None


def _compare(reply: Reply, answer: _Answer) -> Comparison:
    return compare(
        read_outputs(reply.body, reply.header_length), read_outputs(answer.body, answer.header_length)
    )
