"""ModelApp scoring service: ONNX models over the Open Inference Protocol and the seeds' /score API."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("modelapp")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
