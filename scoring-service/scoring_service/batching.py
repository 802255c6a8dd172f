"""Adaptive batching: concurrent requests for one model run as one onnxruntime call, split back per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from modelapp_bundle import Batching

from scoring_service.errors import ModelNotReady
from scoring_service.runtime import OnnxModel

log = logging.getLogger(__name__)

Feeds = dict[str, npt.NDArray[Any]]
Results = list[npt.NDArray[Any]]
Observe = Callable[[int, float], None]
"""Called after every onnxruntime run with (rows, seconds inside onnxruntime)."""

DEFAULT_DELAY_MS = 2.0
SHORTEST_SWITCH_INTERVAL = 0.0002
"""Seconds; the GIL hand-off interval a batcher may ask for (Python's default is 0.005)."""


@dataclass(frozen=True, slots=True)
class BatchConfig:
    max_size: int
    """Rows per run at most (a single request with more rows runs alone); this many run at once."""
    max_delay: float
    """Seconds the oldest waiting request may wait for others to join it."""


def resolve_config(
    manifest: Batching | None, max_size: int | None, max_delay_ms: float | None
) -> BatchConfig | None:
    """Settings override the manifest field by field; fewer than 2 rows per run is no batching."""
    size = max_size if max_size is not None else (manifest.max_batch_size if manifest else None)
    if size is None or size < 2:
        return None
    if max_delay_ms is None:
        max_delay_ms = manifest.max_delay_ms if manifest else DEFAULT_DELAY_MS
    return BatchConfig(size, max_delay_ms / 1000)


def unbatchable(model: OnnxModel) -> str | None:
    """Why `model` cannot be batched (its first dimension is not dynamic everywhere), or None."""
    for kind, specs in (("input", model.inputs), ("output", model.outputs)):
        for spec in specs:
            if not spec.shape or spec.shape[0] != -1:
                return (
                    f"{kind} {spec.name!r} has shape {list(spec.shape)}: its first dimension is not dynamic"
                )
    return None


def batch_key(feeds: Feeds, outputs: list[str]) -> tuple[Hashable, int] | None:
    """(what requests must share to run together, rows), or None if this request cannot join others.

    Requests share a batch when they have the same inputs with the same dtypes and non-batch
    dimensions, and ask for the same outputs; every input must have the same number of rows (>= 1).
    """
    rows = -1
    parts = []
    for name, arr in feeds.items():
        if arr.ndim == 0 or (rows >= 0 and arr.shape[0] != rows):
            return None
        rows = arr.shape[0]
        parts.append((name, arr.dtype.str, arr.shape[1:]))
    if rows < 1:
        return None
    return (tuple(sorted(parts)), tuple(outputs)), rows


@dataclass(slots=True, eq=False)
class Pending:
    """A request waiting in a batcher."""

    feeds: Feeds
    outputs: list[str]
    key: Hashable
    rows: int
    arrived: float
    alone: bool = False
    """Cannot share a batch (its inputs disagree on rows, or have none): runs next, by itself."""
    loop: asyncio.AbstractEventLoop | None = None
    """The event loop that awaits `future` (an asyncio future); None: a thread waits on a
    concurrent future."""
    future: asyncio.Future[Results] | Future[Results] = field(default_factory=Future)


Outcome = tuple[Pending, "Results | Exception"]


def take(
    pending: list[Pending], now: float, config: BatchConfig
) -> tuple[list[Pending], list[Pending], float | None]:
    """(batch to run now, what stays pending, seconds to wait before asking again; None: nothing pending).

    The batch is the oldest request and the later ones that can share its batch, in arrival order, up
    to `max_size` rows. It is due once full (the next one would not fit) or once the oldest has
    waited `max_delay`; before that the batch is empty and the wait says until when.
    """
    if not pending:
        return [], pending, None
    first = pending[0]
    batch: list[Pending] = []
    rows, full = 0, False
    for request in pending:
        if request.key != first.key:
            continue
        if batch and rows + request.rows > config.max_size:
            full = True
            break
        batch.append(request)
        rows += request.rows
        if rows >= config.max_size or request.alone:
            full = True
            break
    wait = first.arrived + config.max_delay - now
    if not full and wait > 0:
        return [], pending, wait
    chosen = {id(r) for r in batch}
    return batch, [r for r in pending if id(r) not in chosen], 0.0


def concatenate(batch: list[Pending]) -> Feeds:
    """The feeds of every request in `batch`, stacked along the first dimension in order."""
    first = batch[0].feeds
    return {name: np.concatenate([r.feeds[name] for r in batch]) for name in first}


def split(batch: list[Pending], results: Results) -> list[Results]:
    """Each request's rows of every output (views, no copies); ValueError if an output has not one
    row per input row (the model does not follow batch semantics)."""
    total = sum(r.rows for r in batch)
    for arr in results:
        if arr.ndim == 0 or arr.shape[0] != total:
            raise ValueError(f"an output has shape {list(arr.shape)} for {total} input rows")
    out, start = [], 0
    for request in batch:
        end = start + request.rows
        out.append([arr[start:end] for arr in results])
        start = end
    return out


class Batcher:
    """One model's batches, formed and run by its own thread (off the event loop).

    A run is one onnxruntime call at a time for this model: while it runs, the next batch fills. If
    a batched run fails, each of its requests is run alone, so each gets its own answer or error.
    """

    def __init__(
        self,
        model: OnnxModel,
        config: BatchConfig,
        observe: Observe,
        *,
        name: str = "model",
        on_fallback: Callable[[], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model, self.config, self._observe = model, config, observe
        self._on_fallback = on_fallback
        self._on_wait = on_wait  # each request's seconds from arrival to its run's start
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: list[Pending] = []
        self._pending_rows = 0
        self._closed = False
        _hand_over_in_time(config.max_delay)
        self._thread = threading.Thread(target=self._serve, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    # -- callers (event loop or worker threads) ----------------------------------------------

    async def run_async(self, feeds: Feeds, outputs: list[str]) -> Results:
        loop = asyncio.get_running_loop()
        request = self._request(feeds, outputs)
        request.loop, request.future = loop, loop.create_future()
        self._enqueue(request)
        return await request.future

    def run(self, feeds: Feeds, outputs: list[str]) -> Results:
        """From a worker thread: blocks it until this request's batch has run."""
        return self.submit(feeds, outputs).result()

    def submit(self, feeds: Feeds, outputs: list[str]) -> Future[Results]:
        request = self._request(feeds, outputs)
        self._enqueue(request)
        assert isinstance(request.future, Future)
        return request.future

    def _request(self, feeds: Feeds, outputs: list[str]) -> Pending:
        keyed = batch_key(feeds, outputs)
        if keyed is None:
            return Pending(feeds, outputs, object(), _rows(feeds), self._clock(), alone=True)
        return Pending(feeds, outputs, keyed[0], keyed[1], self._clock())

    def _enqueue(self, request: Pending) -> None:
        with self._cond:
            if self._closed:
                raise ModelNotReady("the scorer is shutting down")
            self._pending.append(request)
            self._pending_rows += request.rows
            # Wake the thread when it waits for a first request, or when a batch may be due.
            if len(self._pending) == 1 or request.alone or self._pending_rows >= self.config.max_size:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            left, self._pending = self._pending, []
            self._cond.notify()
        _settle([(request, ModelNotReady("the scorer is shutting down")) for request in left])
        self._thread.join(timeout=5)

    # -- the batcher's thread ----------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._cond:
                batch: list[Pending] = []
                while not batch:
                    if self._closed:
                        return
                    batch, self._pending, wait = take(self._pending, self._clock(), self.config)
                    if not batch:
                        self._cond.wait(wait)
                self._pending_rows -= sum(r.rows for r in batch)
            if self._on_wait is not None:
                began = self._clock()
                for request in batch:
                    self._on_wait(began - request.arrived)
            try:
                outcomes = self._execute(batch)
            except Exception as exc:  # never leave a caller waiting, never let the thread die
                log.exception("batcher failed")
                outcomes = [(request, exc) for request in batch]
            _settle(outcomes)

    def _execute(self, batch: list[Pending]) -> list[Outcome]:
        live = [r for r in batch if not r.future.done()]  # skip the cancelled
        if len(live) <= 1:
            return [self._run_alone(r) for r in live]
        try:
            answers = self._run_batch(live)
        except Exception as exc:
            log.warning(
                "batched run of %d requests failed (%s): running each alone", len(live), exc,
                extra={"rows": sum(r.rows for r in live)},
            )  # fmt: skip
            if self._on_fallback is not None:
                self._on_fallback()
            return [self._run_alone(r) for r in live]
        return list(zip(live, answers, strict=True))

    def _run_batch(self, batch: list[Pending]) -> list[Results]:
        feeds = concatenate(batch)
        start = time.perf_counter()
        results = self.model.run(feeds, batch[0].outputs)
        self._observe(sum(r.rows for r in batch), time.perf_counter() - start)
        return split(batch, results)

    def _run_alone(self, request: Pending) -> Outcome:
        start = time.perf_counter()
        try:
            results = self.model.run(request.feeds, request.outputs)
        except Exception as exc:
            return request, exc
        self._observe(request.rows, time.perf_counter() - start)
        return request, results


def _hand_over_in_time(max_delay: float) -> None:
    """Make the GIL change hands often enough for the batcher to keep its delay.

    The batcher's thread needs the GIL to notice that a batch is due and again after each run; while
    the event loop is busy with requests it gives the GIL up only every switch interval, 5 ms by
    default, so under load a 2 ms delay became 5-20 ms. A quarter of the shortest delay (at least
    0.2 ms) bounds that lateness; it costs only when threads actually contend for the GIL.
    """
    wanted = max(SHORTEST_SWITCH_INTERVAL, max_delay / 4)
    if wanted < sys.getswitchinterval():
        sys.setswitchinterval(wanted)
        log.info(
            "GIL switch interval lowered for adaptive batching", extra={"switch_interval_ms": wanted * 1000}
        )


def _settle(outcomes: list[Outcome]) -> None:
    """Hand each request its answer or error: one wake-up per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        loop = outcome[0].loop
        if loop is None:
            _set(outcome)
        else:
            by_loop.setdefault(loop, []).append(outcome)
    for loop, on_loop in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_set_all, on_loop)


def _set_all(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        _set(outcome)


def _set(outcome: Outcome) -> None:
    request, result = outcome
    if request.future.done():  # cancelled while it waited
        return
    if isinstance(result, Exception):
        request.future.set_exception(result)
    else:
        request.future.set_result(result)


def _rows(feeds: Feeds) -> int:
    """Rows of a request that cannot be batched, for the batch-size histogram: its first input's."""
    for arr in feeds.values():
        return int(arr.shape[0]) if arr.ndim else 1
    return 0
