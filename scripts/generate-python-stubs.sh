#!/usr/bin/env bash
# Generates Python grpcio stubs from protos/ into build/python (git-ignored), for tests and tools.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/python
mkdir -p "$out"
.venv/bin/python -m grpc_tools.protoc -I protos --python_out="$out" --grpc_python_out="$out" \
  framerelay/v1/relay.proto chrysalis/video_streaming.proto simple/video.proto
# AVA gRPC extension contract (shared/specs/ava-grpc-extension.md): the Python package is "ava"
# (import ava.extension_pb2), named after the folder, not the long proto package, so nothing is shadowed.
.venv/bin/python -m grpc_tools.protoc -I protos --python_out="$out" --grpc_python_out="$out" \
  ava/extension.proto ava/media.proto ava/inferencing.proto
# grpc.health.v1 is not generated here: a local "grpc" package would shadow grpcio; Python code uses
# grpcio-health-checking's grpc_health.v1 instead (the same wire contract).
# Make the generated folders importable packages.
find "$out" -type d -exec touch {}/__init__.py \;
