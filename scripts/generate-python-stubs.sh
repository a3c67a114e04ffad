#!/usr/bin/env bash
# Generates Python grpcio stubs from protos/ into build/python (git-ignored), for tests and tools.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/python
mkdir -p "$out"
.venv/bin/python -m grpc_tools.protoc -I protos --python_out="$out" --grpc_python_out="$out" \
  framerelay/v1/relay.proto chrysalis/video_streaming.proto simple/video.proto
# grpc.health.v1 is not generated here: a local "grpc" package would shadow grpcio; Python code uses
# grpcio-health-checking's grpc_health.v1 instead (the same wire contract).
# Make the generated folders importable packages.
find "$out" -type d -exec touch {}/__init__.py \;
