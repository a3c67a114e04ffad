"""AVA ingest benchmark: 1920x1080 BGR24 frames from a Python AVA sender (Tests/EndToEnd/peers, written
from the spec) into relay-server, through shared memory and embedded, side by side with relay-client's
native Publish of the same-sized raw frames (--synthetic 1920x1080:bgr24), in the same run. Each figure
is frames acked per second of wall time and GB/s of frame bytes (GB = 1e9). Goals (issue 9): shared
memory >= 3 GB/s; embedded >= native raw ingest.

  scripts/bench-ava [--frames 300] [--runs 3] [--window 8]
Binaries: $RELAY_BIN_DIR, else .build/release."""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import numpy

import framerelay_support
from framerelay_support import ManagedProcess, start_relay_server

REPO = framerelay_support.REPO
sys.path.insert(0, str(REPO / "Tests" / "EndToEnd"))
framerelay_support.add_stubs_to_path()
from peers.ava_sender import AvaSender  # noqa: E402

W, H = 1920, 1080
FRAME_BYTES = W * H * 3


def ava_rate(address, frames, shared_memory, window):
    sender = AvaSender(address, width=W, height=H, pixel_format="BGR24", shared_memory=shared_memory or None,
                       window=window, ack_timeout=10.0, extension_configuration="bench-ava",
                       channel_options=[("grpc.max_send_message_length", 64 << 20)])
    started = time.monotonic()
    result = sender.run(frames)
    seconds = time.monotonic() - started
    if result.status[0] != "OK" or len(result.acked) != len(frames):
        raise RuntimeError(f"AVA run failed: {result.status}, {len(result.acked)} of {len(frames)} acked, {result.errors[:3]}")
    return len(frames) / seconds


def native_rate(bin_dir, address, count, log_dir, window):
    client = ManagedProcess("relay-client", [os.path.join(bin_dir, "relay-client"), "publish", "--server", address,
                                             "--device", "bench-native", "--synthetic", f"{W}x{H}:bgr24",
                                             "--frames", str(count), "--window", str(window)], log_dir)
    if client.wait(timeout=300) != 0:
        raise RuntimeError(f"relay-client failed: {client.tail()}")
    summary = json.loads([l for l in client.stdout().splitlines() if l.startswith("{")][-1])
    return summary["frames_acked"] / summary["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", default=os.environ.get("RELAY_BIN_DIR", str(REPO / ".build" / "release")))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "out" / "bench-ava.txt"))
    args = parser.parse_args()

    generator = numpy.random.default_rng(7)
    distinct = [generator.integers(0, 256, (H, W, 3), dtype=numpy.uint8) for _ in range(4)]
    frames = [distinct[i % 4] for i in range(args.frames)]
    rates = {"shm": [], "embedded": [], "native": []}
    with tempfile.TemporaryDirectory(prefix="bench-ava-") as tmp:
        for run in range(args.runs):
            for case in ("shm", "embedded", "native"):
                print(f"bench-ava: run {run + 1}/{args.runs}: {case}", file=sys.stderr)
                server = start_relay_server(os.path.join(args.bin_dir, "relay-server"), tmp, "--data-dir",
                                            os.path.join(tmp, f"data-{run}-{case}"), name=f"relay-server-{run}-{case}")
                try:
                    if case == "native":
                        rates[case].append(native_rate(args.bin_dir, server.address, args.frames, tmp, args.window))
                    else:
                        rates[case].append(ava_rate(server.address, frames, case == "shm", args.window))
                finally:
                    server.process.stop(timeout=10)

    def row(name, values):
        fps = statistics.median(values)
        return (f"{name:<42} {fps:9.1f} {fps * FRAME_BYTES / 1e9:7.3f}  "
                + " ".join(f"{v:.0f}" for v in values)), fps
    lines = [f"FrameRelay AVA ingest benchmark, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores",
             f"binaries: {args.bin_dir}; {args.frames} frames of {W}x{H} bgr24 ({FRAME_BYTES} bytes) per run, "
             f"window {args.window}; median of {args.runs}; acked frames per second of wall time", "",
             f"{'case':<42} {'frames/s':>9} {'GB/s':>7}  each run (frames/s)"]
    shm_line, shm = row("AVA shared memory (Python sender)", rates["shm"])
    embedded_line, embedded = row("AVA embedded content_bytes (Python sender)", rates["embedded"])
    native_line, native = row("native Publish, raw (relay-client)", rates["native"])
    lines += [shm_line, embedded_line, native_line, "",
              f"goal shared memory >= 3 GB/s: {shm * FRAME_BYTES / 1e9:.2f} GB/s, {'met' if shm * FRAME_BYTES >= 3e9 else 'NOT met'}",
              f"goal embedded >= native raw: {embedded / native:.2f}x, {'met' if embedded >= native else 'NOT met'}"]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        out.write(text)


if __name__ == "__main__":
    main()
