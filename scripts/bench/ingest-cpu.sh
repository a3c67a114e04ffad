#!/usr/bin/env bash
# One relay-client -> relay-server Publish run on loopback, printing frames/s and relay-server's CPU
# (utime+stime from /proc) per frame: the quick A/B behind docs/performance.md's "Raw ingest" (run it
# with and without MALLOC_MMAP_THRESHOLD_=33554432, or against two --bin-dir builds, alternately).
#
#   scripts/bench/ingest-cpu.sh BIN_DIR [SYNTHETIC [FRAMES]]     # default 1920x1080 (bgr24), 600 frames
set -euo pipefail
bin=${1:?usage: ingest-cpu.sh BIN_DIR [SYNTHETIC [FRAMES]]}
synthetic=${2:-1920x1080}
frames=${3:-600}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/relay-server" --listen 127.0.0.1:0 --data-dir "$work/data" --max-frame-bytes 16777216 \
  --ring-max-bytes 536870912 --window 32 >"$work/server.out" 2>"$work/server.err" &
server=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/server.out" && break; sleep 0.1; done
address=$(awk '/listening on/ {print $4; exit}' "$work/server.out")
[ -n "$address" ] || { echo "ingest-cpu: relay-server did not start: $(tail -3 "$work/server.err")" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
before=$(ticks)
"$bin/relay-client" publish --server "$address" --device ingest-cpu --synthetic "$synthetic" \
  --frames "$frames" --window 32 >"$work/client.out" 2>"$work/client.err"
after=$(ticks)
peak=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
python3 - "$work/client.out" "$before" "$after" "$(getconf CLK_TCK)" "$frames" "$peak" "$bin" "$synthetic" <<'PY'
import json, sys
path, before, after, hz, frames, peak, binary, synthetic = sys.argv[1:]
summary = [json.loads(line) for line in open(path) if line.startswith("{")][-1]
cpu = (float(after) - float(before)) / float(hz)
print(f"{binary} {synthetic}: {summary['fps']:.1f} frames/s, relay-server CPU {cpu:.2f} s = "
      f"{cpu / int(frames) * 1000:.2f} ms per frame, peak RSS {int(peak) // 1024} MiB, "
      f"acked {summary['frames_acked']} of {frames}")
PY
