#!/usr/bin/env bash
# Regenerates Sources/RelayProtocol from protos/ with Debian's protoc and the Swift plugins built from
# the mirrored packages (scripts/protoc-plugins). `--check` regenerates into a temp dir and fails if the
# committed code differs.
set -euo pipefail
cd "$(dirname "$0")/.."

plugins=scripts/protoc-plugins
swift build -c release --package-path "$plugins" --product protoc-gen-swift >&2
swift build -c release --package-path "$plugins" --product protoc-gen-grpc-swift-2 >&2
bin=$(swift build -c release --package-path "$plugins" --show-bin-path)

out=Sources/RelayProtocol/Generated
target=$out
if [ "${1:-}" = "--check" ]; then target=$(mktemp -d); fi
rm -rf "$target"; mkdir -p "$target"

protos=(framerelay/v1/relay.proto chrysalis/video_streaming.proto grpc/health/v1/health.proto simple/video.proto
  ava/extension.proto ava/media.proto ava/inferencing.proto)
protoc -I protos \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
  --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  --grpc-swift_opt=Visibility=Public,Server=true,Client=true,FileNaming=PathToUnderscores \
  --swift_out="$target" --grpc-swift_out="$target" \
  "${protos[@]}"

if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$out" "$target" >&2; then
    echo "generate-protos: Sources/RelayProtocol is out of date; run scripts/generate-protos.sh" >&2
    exit 1
  fi
  echo "generate-protos: committed code matches protos/"
  rm -rf "$target"
fi
