"""The practical Python ceiling: a bare ASGI app, orjson and onnxruntime, no framework, no checks.

MODEL=path/to/model.onnx uvicorn bench.scorer.bare_asgi:app --loop uvloop --http httptools
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

_opts = ort.SessionOptions()
_opts.intra_op_num_threads = 1
_opts.inter_op_num_threads = 1
_session = ort.InferenceSession(os.environ["MODEL"], _opts, providers=["CPUExecutionProvider"])
_output = _session.get_outputs()[0].name
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = orjson.loads(body)
    tensor = request["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    (y,) = _session.run([_output], {tensor["name"]: x})
    out = orjson.dumps(
        {
            "model_name": "diabetes",
            "outputs": [{"name": _output, "datatype": "FP32", "shape": list(y.shape), "data": y.reshape(-1)}],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_HEADERS, (b"content-length", str(len(out)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": out})
