"""Scorer settings: the one place that reads the environment (prefix `SCORING_`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every field can be set as `SCORING_<FIELD>` (e.g. `SCORING_MODEL_DIR=/models`)."""

    model_config = SettingsConfigDict(env_prefix="SCORING_", frozen=True, extra="ignore")

    model_dir: Path = Path("/models")
    """A model bundle, or a folder whose sub-folders are bundles."""

    host: str = "0.0.0.0"
    """Address `serve` binds to."""

    port: int = Field(default=8080, ge=0, le=65535)
    """Port `serve` listens on."""

    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """Port of the Open Inference Protocol over gRPC (`inference.GRPCInferenceService`) and of the gRPC
    health service (grpc.health.v1, for Kubernetes' gRPC probes); 0 turns them off. Same data plane,
    limits and metrics as REST (endpoint label `grpc_infer`); `max_request_bytes` caps a message."""

    metrics_port: int = Field(default=8082, ge=0, le=65535)
    """Port of the operations endpoints: `/metrics`, `/docs`, `/openapi.json`; 0 turns them off.

    Not the serving port: whoever can send inference requests need not read the metrics of every
    model or the API's layout, and a scrape never queues behind inference.
    """

    workers: int = Field(default=1, ge=1)
    """uvicorn worker processes. Prefer 1 per pod and scale replicas: metrics are per process."""

    intra_op_threads: int = Field(default=1, ge=0)
    """onnxruntime threads inside one operator. 1 suits small models and many workers; 0 = one per core."""

    inter_op_threads: int = Field(default=1, ge=0)
    """onnxruntime threads across independent graph nodes (parallel execution mode only if > 1)."""

    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    """onnxruntime graph optimisation level applied when the session is created."""

    inline_max_elements: int = Field(default=65536, ge=0)
    """Requests with at most this many input elements (or decoded image pixels) run on the event loop.

    Small models finish in microseconds, less than a thread hand-off costs; big ones would block
    health checks, and onnxruntime releases the GIL while it runs.
    """

    inline_max_bytes: int = Field(default=64 * 1024, ge=0)
    """Request bodies up to this size are parsed on the event loop; larger ones in a worker thread.

    Parsing a 64 KiB JSON body takes about a millisecond; 3 MB of images took 14 s on the loop,
    during which not even `/v2/health/live` answered.
    """

    worker_threads: int = Field(default=2, ge=1)
    """Threads that parse large bodies, decompress, decode images and run large inputs.

    They bound the CPU and memory that such requests take at once (parsing JSON costs ~13x its size
    in memory); the others wait for a free thread, and the event loop stays free for small requests
    and health.
    """

    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a connection has to send a request's head (line and headers), from its first byte (or
    from connecting); then 408 and the connection is closed. uvicorn has no such deadline: 300
    connections sending a header line every 2 s were held for as long as they cared to."""

    body_timeout: float = Field(default=30.0, gt=0)
    """Seconds a request has to send its body once the head is in; then 408 and the connection is
    closed. 30 s carries a 64 MiB body at 18 Mbit/s."""

    keep_alive_timeout: int = Field(default=5, ge=1)
    """Seconds an idle keep-alive connection stays open between requests (uvicorn's `timeout_keep_alive`)."""

    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    """Largest request head (line and headers) that may arrive over several reads; beyond it 431
    and the connection is closed. uvicorn with httptools buffers a head without limit."""

    max_concurrent_requests: int = Field(default=32, ge=1)
    """Inference requests (POST) in progress at once, from the first byte of their body to the answer.

    One more gets 503 with `Retry-After: 1` at once instead of queueing: bodies waiting for a worker
    thread hold memory, and a client that floods should learn so fast. Health, metadata and the
    operations port are not counted.
    """

    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger bodies get 413 before they are buffered."""

    max_decompressed_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """Largest body once inflated (`Content-Encoding: gzip|deflate`); larger ones get 413.

    Lower than `max_request_bytes`: 60 KiB of gzip inflated to 59 MiB of JSON, whose parsing took
    the process to 0.97 GB.
    """

    max_json_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest JSON document (the whole body, or the header before binary tensor data); larger get 413,
    an all-JSON body before it is read.

    Parsing costs ~13x the text in memory (4 MiB of JSON numbers peak at ~55 MB) and holds the GIL
    for up to ~0.2 s; large tensors go as binary tensor data, which is read in place.
    """

    max_image_pixels: int = Field(default=16_000_000, ge=1)
    """Largest decoded image (width x height) accepted by the image preprocessor."""

    max_images: int = Field(default=64, ge=1)
    """Most images one request may carry."""

    max_request_pixels: int = Field(default=64_000_000, ge=1)
    """Most pixels, over all its images, one request may ask to decode (~0.5 s of decoding)."""

    allow_non_finite: bool = False
    """Accept NaN and ±infinity in FP16/FP32/FP64 inputs. Off, they get 400: that includes JSON numbers
    beyond the datatype (1e39 as FP32 is inf, 70000 as FP16) and NaN or inf bit patterns in binary data,
    which most models would turn into NaN outputs without a word."""

    batch_max_size: int | None = Field(default=None, ge=0)
    """Adaptive batching for every model, overriding the manifests' `batching.maxBatchSize`: at most
    this many rows per onnxruntime run; 0 or 1 turns batching off for every model. Unset: each model's
    manifest decides (no `batching` block: off). Models whose first dimension is not dynamic on every
    input and output are never batched (a log line says so)."""

    batch_max_delay_ms: float | None = Field(default=None, ge=0, le=1000)
    """Longest a request waits for others to join its batch, overriding the manifests' `maxDelayMs`.
    Unset: the manifest's, or 2 ms when batching comes from `batch_max_size` alone."""

    default_model: str | None = None
    """Model used by `/score` and `/version`; defaults to the only (or first by name) model."""

    top_k: int = Field(default=5, ge=1)
    """Labels returned by `/score` for classifiers with `labels`, unless the request sets `top_k`."""

    score_response: Literal["default", "seed"] = "default"
    """Shape of `/score`'s answer for models with `labels`.

    `default`: `{"result": [[{"label", "probability"}, ...top_k] per image]}`, a structure a client
    reads without parsing strings. `seed`: the cat-species seed's `{"result": [[[label, percent],
    ...top 3] per image], "Computed in N ms"]}` (percent 0-100; the request's `top_k` still
    applies), for that seed's clients unmodified. Models without labels answer alike in both.
    """

    server_name: str = "modelapp-scoring-service"
    """Name reported by `GET /v2`."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level for the scorer and uvicorn."""

    log_format: Literal["json", "text"] = "json"
    """`json`: one JSON object per line (for log shippers); `text`: for humans."""

    access_log: bool = False
    """uvicorn access log; off by default because it costs throughput on the hot path."""

    shadow_config: Path = Path("/etc/modelapp/shadow/shadow.json")
    """File that turns shadow mirroring on: `{"url", "candidate", "sample", "timeoutSeconds"}` (see
    `shadow.py`). Missing, empty or `{}`: off. The operator mounts it from a ConfigMap; its content is
    re-read, so kubelet's swap of the mount is seen."""

    shadow_reload_seconds: float = Field(default=2.0, gt=0)
    """Seconds between two reads of `shadow_config`."""

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError(f"metrics_port {self.metrics_port} is also the serving port; pick another, or 0")
        if self.grpc_port and self.grpc_port in (self.port, self.metrics_port):
            which = "serving" if self.grpc_port == self.port else "metrics"
            raise ValueError(f"grpc_port {self.grpc_port} is also the {which} port; pick another, or 0")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
