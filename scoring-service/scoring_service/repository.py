"""Loads every bundle under the model directory and answers "which model serves this path?"."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelapp_bundle import (
    MODEL_FILE,
    Bundle,
    BundleError,
    Preprocess,
    discover,
    newest_first,
    read_bundle,
    sha256_bytes,
    verify_bundle,
)

from scoring_service.batching import Batcher, resolve_config, unbatchable
from scoring_service.errors import ModelNotReady, NotFound
from scoring_service.metrics import Metrics
from scoring_service.preprocess import validate_spec
from scoring_service.runtime import OnnxModel, TensorSpec
from scoring_service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServedModel:
    """One (name, version): either a loaded model or the reason it is not served."""

    name: str
    version: str
    path: Path
    bundle: Bundle | None = None
    model: OnnxModel | None = None
    error: str | None = None
    labels: list[str] | None = None
    preprocess: Preprocess | None = None
    image_input: str | None = None
    """Model input that also accepts encoded images (BYTES), when the manifest has `preprocess`."""
    proba_output: str | None = None
    """Output holding one probability per label, when the manifest has `labels`."""
    metadata: dict[str, Any] = field(default_factory=dict)
    batcher: Batcher | None = None
    """Set when the model is served with adaptive batching: its runs go through it."""

    @property
    def ready(self) -> bool:
        return self.model is not None

    def require(self) -> OnnxModel:
        if self.model is None:
            raise ModelNotReady(f"model {self.name} version {self.version} is not ready: {self.error}")
        return self.model


class ModelRepository:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, dict[str, ServedModel]] = {}
        self.latest: dict[str, ServedModel] = {}
        self.errors: list[str] = []
        self.loaded = False

    # -- loading -----------------------------------------------------------------------------

    def load_all(self) -> None:
        """Blocking: run it in a thread from the lifespan."""
        model_dir = self.settings.model_dir
        try:
            paths = discover(model_dir)
        except BundleError as exc:
            self._fail_global(str(exc), "the model directory does not exist")
            return
        if not paths:
            self._fail_global(
                f"no model bundle (folder with {MODEL_FILE}) under {model_dir}",
                f"no model bundle (folder with {MODEL_FILE}) in the model directory",
            )
            return
        for path in paths:
            self._add(self._load_one(path))
        for name, versions in self.models.items():
            self.latest[name] = versions[newest_first(versions)[0]]
        self.loaded = True

    def _fail_global(self, reason: str, public: str) -> None:
        log.error("not ready: %s", reason)
        self.errors.append(public)
        self.loaded = True

    def _add(self, served: ServedModel) -> None:
        versions = self.models.setdefault(served.name, {})
        if served.version in versions:
            other = versions[served.version].path
            reason = f"{served.path}: duplicate of {served.name} version {served.version} at {other}"
            log.error("model not loaded: %s", reason)
            self.errors.append(f"{served.name} {served.version}: two bundles have this name and version")
            self.metrics.load_failures.labels(served.name, served.version).inc()
            return
        versions[served.version] = served
        self.metrics.model_ready.labels(served.name, served.version).set(1 if served.ready else 0)

    def _load_one(self, path: Path) -> ServedModel:
        name, version = path.resolve().name, "unknown"
        try:
            bundle = read_bundle(path)
            name, version = bundle.name, bundle.version
            served = ServedModel(name=name, version=version, path=path, bundle=bundle)
            verify_bundle(bundle)
            model_bytes = bundle.model_path.read_bytes()
            if bundle.manifest is not None:
                # Hash the very bytes handed to onnxruntime: the file could change after verify().
                digest = sha256_bytes(model_bytes)
                if digest != bundle.manifest.files[MODEL_FILE].sha256:
                    raise BundleError(f"{path}: {MODEL_FILE} changed while loading (sha256 {digest})")
            try:
                served.model = OnnxModel(
                    model_bytes,
                    intra_op_threads=self.settings.intra_op_threads,
                    inter_op_threads=self.settings.inter_op_threads,
                    optimization=self.settings.graph_optimization,
                )
            except Exception as exc:  # onnxruntime raises pybind types for invalid graphs
                raise BundleError(f"{path}: onnxruntime cannot load {MODEL_FILE}: {exc}") from None
            self._configure(served)
            self._warm_up(served)
            self._batching(served)
        except BundleError as exc:
            return self._failed(name, version, path, str(exc))
        except ValueError as exc:
            return self._failed(name, version, path, f"{path}: {exc}")
        log.info(
            "model loaded",
            extra={"model": name, "version": version, "path": str(path),
                   "inputs": [s.metadata() for s in served.model.inputs] if served.model else []},
        )  # fmt: skip
        return served

    def _failed(self, name: str, version: str, path: Path, reason: str) -> ServedModel:
        log.error("model not loaded: %s", reason, extra={"model": name, "version": version})
        self.metrics.load_failures.labels(name, version).inc()
        public = without_paths(reason, path, self.settings.model_dir)
        self.errors.append(f"{name} {version}: {public}")
        return ServedModel(name=name, version=version, path=path, error=public)

    def _configure(self, served: ServedModel) -> None:
        model = served.model
        assert model is not None
        manifest = served.bundle.manifest if served.bundle else None
        if manifest is not None and manifest.preprocess is not None:
            spec = manifest.preprocess
            target_name = spec.input or (model.inputs[0].name if len(model.inputs) == 1 else None)
            if target_name is None or target_name not in model.input_by_name:
                raise ValueError(
                    f"preprocess.input must name one of the model inputs {list(model.input_by_name)}"
                )
            validate_spec(spec, model.input_by_name[target_name])
            served.preprocess, served.image_input = spec, target_name
        if manifest is not None and manifest.labels:
            served.labels = manifest.labels
            served.proba_output = _find_proba(model.outputs, len(manifest.labels))
            if served.proba_output is None:
                raise ValueError(
                    f"manifest has {len(manifest.labels)} labels but no float output has that many columns"
                )
        served.metadata = {
            "name": served.name,
            "versions": [served.version],
            "platform": "onnxruntime_onnx",
            "inputs": [s.metadata() for s in model.inputs],
            "outputs": [s.metadata() for s in model.outputs],
        }

    def _warm_up(self, served: ServedModel) -> None:
        # The first run allocates arenas and finalises kernels; pay that before readiness, not on a user.
        model = served.model
        assert model is not None
        try:
            model.run(model.example_feeds())
        except Exception as exc:  # a model may legitimately reject all-zero input
            log.warning(
                "warm-up inference failed (model still served): %s", exc, extra={"model": served.name}
            )

    def _batching(self, served: ServedModel) -> None:
        """Start a batcher if the manifest or the settings ask for one and the model allows it."""
        model = served.model
        assert model is not None
        manifest = served.bundle.manifest if served.bundle else None
        settings = self.settings
        config = resolve_config(
            manifest.batching if manifest else None, settings.batch_max_size, settings.batch_max_delay_ms
        )
        if config is None:
            return
        reason = unbatchable(model)
        if reason is not None:
            log.warning(
                "adaptive batching refused, the model is served unbatched: %s", reason,
                extra={"model": served.name, "version": served.version},
            )  # fmt: skip
            return
        labels = (served.name, served.version)
        rows, latency = (
            self.metrics.batch_rows.labels(*labels),
            self.metrics.inference_latency.labels(*labels),
        )
        fallbacks = self.metrics.batch_fallbacks.labels(*labels)
        waited = self.metrics.batch_wait.labels(*labels)

        def observe(n: int, seconds: float) -> None:
            rows.observe(n)
            latency.observe(seconds)

        # The first run at full size sizes onnxruntime's arenas: pay it now, not on a user's batch.
        feeds = {k: v.repeat(config.max_size, axis=0) for k, v in model.example_feeds().items()}
        try:
            model.run(feeds)
        except Exception as exc:
            log.warning("batched warm-up inference failed: %s", exc, extra={"model": served.name})
        served.batcher = Batcher(
            model, config, observe, name=f"{served.name}-{served.version}",
            on_fallback=fallbacks.inc, on_wait=waited.observe,
        )  # fmt: skip
        log.info(
            "adaptive batching on", extra={"model": served.name, "version": served.version,
                                           "max_batch_size": config.max_size, "max_delay_ms": config.max_delay * 1000},
        )  # fmt: skip

    def close(self) -> None:
        """Stop the batchers: requests still waiting in one get 503."""
        for served in self.all():
            if served.batcher is not None:
                served.batcher.close()

    # -- lookups (hot path) ------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> ServedModel:
        if version is None:
            served = self.latest.get(name)
            if served is None:
                raise NotFound(f"model {name!r} not found")
            return served
        versions = self.models.get(name)
        if versions is None:
            raise NotFound(f"model {name!r} not found")
        found = versions.get(version)
        if found is None:
            raise NotFound(f"model {name!r} has no version {version!r}")
        return found

    def default(self) -> ServedModel:
        name = self.settings.default_model or (min(self.latest) if self.latest else None)
        if name is None:
            raise ModelNotReady("no model is loaded: " + "; ".join(self.errors))
        return self.get(name)

    @property
    def ready(self) -> bool:
        return self.loaded and not self.errors and bool(self.models)

    def all(self) -> list[ServedModel]:
        return [m for versions in self.models.values() for m in versions.values()]


def _find_proba(outputs: list[TensorSpec], n_labels: int) -> str | None:
    for spec in outputs:
        is_float = spec.datatype in ("FP32", "FP64", "FP16")
        if is_float and len(spec.shape) == 2 and spec.shape[-1] in (n_labels, -1):
            return spec.name
    return None


def without_paths(reason: str, bundle: Path, model_dir: Path) -> str:
    """A load failure as readiness may tell it: the log has the paths, clients need not learn the layout.

    Bundle errors read `<bundle path>: <what>` or `<bundle path>/<file>: <what>`.
    """
    roots = {str(p) for p in (bundle, bundle.resolve(), model_dir, model_dir.resolve())} - {"/", "."}
    for root in sorted(roots, key=len, reverse=True):
        reason = reason.replace(f"{root}: ", "").replace(f"{root}/", "").replace(root, "<model dir>")
    return reason
