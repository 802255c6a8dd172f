"""ModelApp scoring service: ONNX models over the Open Inference Protocol and the seeds' /score API."""

from __future__ import annotations

import os
from importlib import metadata

# onnxruntime's official Linux wheels (1.29 and later) send telemetry to Microsoft (1DS): from the first
# session they keep a device id and an event store under ~/.cache/Microsoft and resolve and post to
# mobile.events.data.microsoft.com every few seconds. ORT_DISABLE_TELEMETRY=1, set before onnxruntime
# initializes, is the opt-out the wheel documents (its Privacy.md): no uploader, events or device id for
# the process's life. This module runs before any of ours imports onnxruntime (runtime.py), in `serve`,
# `smoke` and each worker (they import the package afresh and inherit the variable). An explicit value
# set by whoever runs the scorer is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

try:
    __version__ = metadata.version("modelapp")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
