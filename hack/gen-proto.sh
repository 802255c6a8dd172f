#!/usr/bin/env bash
# Regenerates the scorer's protobuf modules (message classes and their type stubs) from the .proto
# beside them, with the pinned grpcio-tools (dev extra). The generated files are committed: the
# image installs no grpcio-tools. No *_pb2_grpc.py: grpc_server.py registers the service by name.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/scoring-service/scoring_service/proto"
"$repo/.venv/bin/python" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. grpc_predict_v2.proto
