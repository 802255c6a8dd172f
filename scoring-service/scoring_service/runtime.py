"""onnxruntime wrapper: one `OnnxModel` per bundle. Knows nothing about HTTP."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from scoring_service.codecs import DATATYPE_TO_NUMPY, ONNX_TO_DATATYPE
from scoring_service.errors import InferenceFailed

log = logging.getLogger(__name__)

OptimizationLevel = Literal["disable", "basic", "extended", "all"]

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A graph input or output as the protocol describes it; -1 marks a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    fixed: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    """(position, size) of each static dimension: what `accepts_shape` compares."""
    where: str = field(init=False, repr=False, compare=False)
    """How error messages name this input (computed once, not per request)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", tuple((i, d) for i, d in enumerate(self.shape) if d != -1))
        object.__setattr__(self, "where", f"input {self.name!r}")

    @property
    def dtype(self) -> np.dtype[Any] | None:
        return DATATYPE_TO_NUMPY.get(self.datatype)

    def accepts_shape(self, shape: list[int] | tuple[int, ...]) -> bool:
        if len(shape) != len(self.shape):
            return False
        # A loop, not all(<generator>) (~0.7 us more): this runs for every input of every request.
        for i, want in self.fixed:  # noqa: SIM110
            if shape[i] != want:
                return False
        return True

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def session_options(
    intra_op_threads: int, inter_op_threads: int, optimization: OptimizationLevel
) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = _OPT_LEVELS[optimization]
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    # Parallel mode only pays off for graphs with independent branches and a second thread for them.
    opts.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if inter_op_threads > 1 else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    # Spinning threads busy-wait between requests: they steal the CPU the event loop needs in a
    # small pod and burn quota while idle. Latency cost is a few microseconds per op.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only; ORT's warnings about unused initialisers are noise
    return opts


def _spec(arg: Any) -> TensorSpec | None:
    datatype = ONNX_TO_DATATYPE.get(arg.type)
    if datatype is None:
        return None  # sequences, maps (e.g. skl2onnx ZipMap) and types OIP cannot carry
    dims = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, dims)


class OnnxModel:
    """An onnxruntime session plus the OIP view of its inputs and outputs."""

    def __init__(
        self,
        model: bytes,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        optimization: OptimizationLevel = "all",
    ) -> None:
        self.session = ort.InferenceSession(
            model,
            sess_options=session_options(intra_op_threads, inter_op_threads, optimization),
            providers=["CPUExecutionProvider"],
        )
        self.inputs: list[TensorSpec] = []
        for arg in self.session.get_inputs():
            spec = _spec(arg)
            if spec is None:
                raise ValueError(f"input {arg.name!r} has type {arg.type}, which OIP cannot carry")
            self.inputs.append(spec)
        self.outputs: list[TensorSpec] = []
        for arg in self.session.get_outputs():
            spec = _spec(arg)
            if spec is None:
                log.warning("output %r of type %s is not served (not a tensor)", arg.name, arg.type)
                continue
            self.outputs.append(spec)
        if not self.outputs:
            raise ValueError("the model has no tensor outputs")
        # InferenceSession.run wraps the binding's run in Python checks that cost ~1.5 us a call and
        # earn nothing here: input names are checked before every run, only the CPU provider is used
        # (no fallback to try), no graph capture. The wrapper stays the way in if that ever moves.
        binding = getattr(self.session, "_sess", None)
        self._run = binding.run if binding is not None else self.session.run
        self.input_by_name = {s.name: s for s in self.inputs}
        self.output_by_name = {s.name: s for s in self.outputs}
        self.output_names = [s.name for s in self.outputs]

    def run(
        self, feeds: dict[str, npt.NDArray[Any]], output_names: list[str] | None = None
    ) -> list[npt.NDArray[Any]]:
        try:
            result: list[npt.NDArray[Any]] = self._run(output_names or self.output_names, feeds, None)
        except Exception as exc:  # ORT raises its own pybind types (InvalidArgument, Fail, ...)
            raise InferenceFailed(f"inference failed: {_first_line(exc)}") from None
        return result

    def example_feeds(self) -> dict[str, npt.NDArray[Any]]:
        """Zero-filled inputs with every dynamic dimension set to 1 (warm-up and smoke)."""
        feeds: dict[str, npt.NDArray[Any]] = {}
        for spec in self.inputs:
            shape = tuple(1 if d < 0 else d for d in spec.shape)
            dtype = spec.dtype
            if dtype is None:
                raise ValueError(f"input {spec.name!r}: datatype {spec.datatype} cannot be generated")
            if spec.datatype == "BYTES":
                feeds[spec.name] = np.full(shape, "", dtype=object)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=dtype)
        return feeds


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__
