"""AVA ingest benchmark: 1920x1080 BGR24 frames from a lean Python grpcio AVA sender into relay-server, through shared memory and embedded, side by side with relay-client's
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
import threading
import time

import numpy

import framerelay_support
from framerelay_support import ManagedProcess, start_relay_server

REPO = framerelay_support.REPO
framerelay_support.add_stubs_to_path()

W, H = 1920, 1080
FRAME_BYTES = W * H * 3


class LeanSender:
    """A minimal AVA sender for measuring the relay, not Python: the spec's session (descriptor first,
    samples 2, 3, ..., at most `window` in flight, an ack for n acknowledging everything up to n). With
    shared memory, `regions` distinct frames are written into the file once and the samples cycle
    through them; a region is referenced again only `regions` samples later, when at most `window` are
    in flight, so it is never reused before its ack (and its bytes never change)."""

    def __init__(self, address, frames, shared_memory, window, regions=16):
        self.address, self.frames, self.shared_memory, self.window = address, frames, shared_memory, window
        self.regions = regions

    def run(self, count):
        import grpc
        from ava import extension_pb2, extension_pb2_grpc
        payloads = [numpy.ascontiguousarray(f).tobytes() for f in self.frames]
        handle = None
        if self.shared_memory:
            handle = f"bench-ava-{os.getpid()}-{time.monotonic_ns()}"
            path = f"/dev/shm/{handle}"
            with open(path, "wb") as shm:
                for i in range(self.regions):
                    shm.write(payloads[i % len(payloads)])
        try:
            window = threading.Semaphore(self.window)
            answered = threading.Event()
            acked = [0]
            done = threading.Event()

            def requests():
                descriptor = extension_pb2.MediaStreamMessage(sequence_number=1)
                d = descriptor.media_stream_descriptor
                d.graph_identifier.graph_instance_name = "bench-ava"
                d.extension_configuration = "bench-ava"
                d.media_descriptor.timescale = 90000
                fmt = d.media_descriptor.video_frame_sample_format
                fmt.encoding = fmt.Encoding.Value("RAW")
                fmt.pixel_format = fmt.PixelFormat.Value("BGR24")
                fmt.dimensions.width, fmt.dimensions.height = W, H
                fmt.stride_bytes = W * 3
                if handle:
                    d.shared_memory_buffer_transfer_properties.handle_name = handle
                    d.shared_memory_buffer_transfer_properties.length_bytes = self.regions * FRAME_BYTES
                yield descriptor
                answered.wait(10)
                for i in range(count):
                    window.acquire()
                    message = extension_pb2.MediaStreamMessage(sequence_number=i + 2)
                    message.media_sample.timestamp = (i + 1) * 3000
                    if handle:
                        region = i % self.regions
                        message.media_sample.content_reference.address_offset = region * FRAME_BYTES
                        message.media_sample.content_reference.length_bytes = FRAME_BYTES
                    else:
                        message.media_sample.content_bytes.bytes = payloads[i % len(payloads)]
                    yield message
                done.wait(60)

            channel = grpc.insecure_channel(self.address, options=[("grpc.max_send_message_length", 64 << 20)])
            stub = extension_pb2_grpc.MediaGraphExtensionStub(channel)
            started = None
            highest = 1
            for message in stub.ProcessMediaStream(requests()):
                if message.WhichOneof("payload") == "media_stream_descriptor" and not answered.is_set():
                    answered.set()
                    started = time.monotonic()
                    continue
                newly = message.ack_sequence_number - highest
                if newly > 0:
                    highest = message.ack_sequence_number
                    acked[0] += newly
                    for _ in range(newly):
                        window.release()
                if acked[0] >= count:
                    seconds = time.monotonic() - started
                    done.set()
                    break
            channel.close()
            if acked[0] < count:
                raise RuntimeError(f"only {acked[0]} of {count} samples acked")
            return count / seconds
        finally:
            if handle:
                os.unlink(f"/dev/shm/{handle}")


def ava_rate(address, frames, shared_memory, window, count):
    return LeanSender(address, frames, shared_memory, window).run(count)


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
                        rates[case].append(ava_rate(server.address, distinct, case == "shm", args.window, args.frames))
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
    shm_line, shm = row("AVA shared memory (grpcio sender)", rates["shm"])
    embedded_line, embedded = row("AVA embedded content_bytes (grpcio sender)", rates["embedded"])
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
