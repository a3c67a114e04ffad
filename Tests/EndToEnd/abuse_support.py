"""What test_abuse.py shares: a good consumer whose latency is the yardstick, resident-memory sampling,
the figures each case records (printed, and one JSON line per case in out/abuse.jsonl), a hand-written
HTTP/2 client (standard library only: the venv has no h2) for what grpcio will not do (never read,
a tiny receive window, a message cut off mid-way), and the load generators.

The load generators run in a process of their own (`python abuse_support.py crowd|flood ...`), so that
their Python work (the GIL) never slows the good client down: its latency then measures the server.
"""
import argparse
import json
import os
import socket
import statistics
import struct
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import framerelay_support  # noqa: E402
from framerelay_support import REPO, memory_kib, process_cpu_seconds  # noqa: E402,F401

framerelay_support.add_stubs_to_path()
from chrysalis import video_streaming_pb2 as image_pb  # noqa: E402

LATEST_IMAGE_PATH = "/chrys.cloud.videostreaming.v1beta1.Image/VideoLatestImage"
PUBLISH_PATH = "/framerelay.v1.FrameRelay/Publish"
RECEIVE_LIMIT = 50 * 1024 * 1024
MIB = 1024 * 1024
RESULTS = REPO / "out" / "abuse.jsonl"


# ---------------------------------------------------------------- figures

def record(case, **figures):
    """Prints the case's figures (pytest -s shows them) and appends them as one JSON line to out/abuse.jsonl."""
    line = {"case": case, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures}
    text = json.dumps(line, sort_keys=False, default=str)
    print(f"\nabuse figures: {text}")
    RESULTS.parent.mkdir(exist_ok=True)
    with open(RESULTS, "a") as out:
        out.write(text + "\n")
    return line


def rss_mib(pid):
    kib = memory_kib(pid)
    return None if kib is None else round(kib / 1024, 1)


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; `peak_mib` is the largest seen."""

    def __init__(self, pid, interval=0.05):
        self.pid, self.interval = pid, interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            value = rss_mib(self.pid)
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)

    @property
    def peak_mib(self):
        return max(self.samples) if self.samples else None


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 1)


def p50(values):
    return statistics.median(values) if values else None


def p99(values):
    return framerelay_support.percentile(values, 99, nearest_rank=True)


# ---------------------------------------------------------------- the good client

class GoodClient:
    """A well-behaved consumer on a connection of its own: unary-style VideoLatestImage calls, each naming a
    fresh x-consumer-id so that the answer is the device's newest picture at once (no wait for a frame
    newer than a previous call's), checked for its size and device."""

    def __init__(self, address, device, width, height, token=None):
        self.device, self.width, self.height = device, width, height
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", RECEIVE_LIMIT),
                                                               ("grpc.use_local_subchannel_pool", 1)])
        self.call = self.channel.unary_unary(LATEST_IMAGE_PATH,
                                             request_serializer=image_pb.VideoFrameRequest.SerializeToString,
                                             response_deserializer=image_pb.VideoFrame.FromString)
        self.request = image_pb.VideoFrameRequest(device_id=device)
        self.token = token
        self.timeout = 5.0  # of each call the background loop makes
        self.calls = 0
        self.latencies, self.failures = [], []
        self._stop = threading.Event()
        self._thread = None

    def once(self, timeout=None):
        """(seconds, None) for a good answer, (seconds, "what was wrong") otherwise."""
        timeout = timeout or self.timeout
        self.calls += 1
        metadata = [("x-consumer-id", f"good-{os.getpid()}-{id(self)}-{self.calls}")]
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        started = time.monotonic()
        try:
            frame = self.call(self.request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as error:
            return time.monotonic() - started, f"{error.code().name}: {error.details()}"
        elapsed = time.monotonic() - started
        if len(frame.shape.dim) == 0:
            return elapsed, "an empty frame (no picture) for a fresh consumer of a live device"
        if (frame.width, frame.height, len(frame.data), frame.device_id) != (
                self.width, self.height, self.width * self.height * 3, self.device):
            return elapsed, (f"a {frame.width}x{frame.height} frame of {len(frame.data)} bytes of {frame.device_id!r}, "
                             f"not {self.width}x{self.height} bgr24 of {self.device!r}")
        return elapsed, None

    def wait_until_served(self, timeout=20.0):
        """Polls until a good answer (the publisher may still be connecting, the decoder starting)."""
        deadline = time.monotonic() + timeout
        problem = None
        while time.monotonic() < deadline:
            _, problem = self.once()
            if problem is None:
                return
            time.sleep(0.1)
        raise AssertionError(f"the good client got no picture of {self.device} within {timeout}s: {problem}")

    def baseline(self, calls=20):
        """Latencies of `calls` sequential good calls (after three warm-up calls); every one must succeed."""
        for _ in range(3):
            self.once()
        latencies = []
        for _ in range(calls):
            elapsed, problem = self.once()
            assert problem is None, f"good client, before any abuse: {problem}"
            latencies.append(elapsed)
        return latencies

    # In the background while the abuse runs: a call every `interval` seconds.
    def start(self, interval=0.05):
        self._stop.clear()
        self.latencies, self.failures = [], []
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval):
        while not self._stop.is_set():
            elapsed, problem = self.once()
            self.latencies.append(elapsed)
            if problem is not None:
                self.failures.append(problem)
            self._stop.wait(interval)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        return self.latencies, self.failures

    def close(self):
        self.stop()
        self.channel.close()


def good_client_figures(baseline, during, failures):
    return {"good_baseline_p50_ms": ms(p50(baseline)), "good_baseline_max_ms": ms(max(baseline)),
            "good_calls_during": len(during), "good_during_p50_ms": ms(p50(during)),
            "good_during_p99_ms": ms(p99(during)), "good_during_max_ms": ms(max(during) if during else None),
            "good_failures": len(failures), "good_bound_ms": ms(good_bound(baseline))}


def good_bound(baseline):
    """The good client's p50 under abuse may be at most max(10 x its p50 before, 0.5 s)."""
    return max(10 * p50(baseline), 0.5)


def assert_good_client_served(baseline, during, failures, what):
    __tracebackhide__ = True
    assert not failures, f"the good client was failed {len(failures)} times during {what}: {failures[:3]}"
    assert during, f"the good client made no call during {what}"
    assert p50(during) <= good_bound(baseline), (
        f"the good client's p50 was {ms(p50(during))} ms during {what} ({len(during)} calls, p99 "
        f"{ms(p99(during))} ms), against {ms(p50(baseline))} ms before it: over the bound of "
        f"{ms(good_bound(baseline))} ms")
    assert len(during) >= 20, f"the good client made only {len(during)} calls during {what} (20 wanted)"


# ---------------------------------------------------------------- hand-written HTTP/2 (RFC 9113, 7541)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
END_STREAM, END_HEADERS, ACK, PADDED = 0x1, 0x4, 0x1, 0x8
SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x2, 0x4, 0x5
CANCEL = 0x8
DEFAULT_WINDOW = 65535
CHUNK = 16384  # the smallest SETTINGS_MAX_FRAME_SIZE a peer may have: always allowed


def h2_frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream & 0x7FFFFFFF) + payload


def hpack_integer(value, prefix_bits):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out, value = [limit], value - limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(out + [value])


def hpack_literal(name, value):
    """A literal header field without indexing, with a literal name, no Huffman (RFC 7541 6.2.2)."""
    name, value = name.encode(), value.encode()
    return b"\x00" + hpack_integer(len(name), 7) + name + hpack_integer(len(value), 7) + value


def grpc_message(payload):
    """gRPC's length-prefixed message: not compressed, 4-byte big-endian length, the bytes."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def grpc_messages(data):
    """The complete length-prefixed messages in `data` (a stream's DATA payloads joined)."""
    messages, offset = [], 0
    while offset + 5 <= len(data):
        length = struct.unpack(">I", data[offset + 1:offset + 5])[0]
        if offset + 5 + length > len(data):
            break
        messages.append(bytes(data[offset + 5:offset + 5 + length]))
        offset += 5 + length
    return messages


class RawH2Connection:
    """One HTTP/2 connection driven by hand over a plain socket.

    It reads only when told to (handshake, read_until, drain, or waiting for send window), so a caller
    can stop reading for good. What it reads it answers as a client must (SETTINGS ACK, PING ACK) and
    keeps: `frames` is every frame received, `(type, flags, stream, payload)`.
    """

    def __init__(self, host, port, initial_window=DEFAULT_WINDOW, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.authority = framerelay_support.join_host_port(host, port)
        self.timeout = timeout
        self.buffer = bytearray()
        self.frames = []
        self.closed = False
        self.send_window = DEFAULT_WINDOW  # the connection's, for what we send
        self.peer_initial_window = DEFAULT_WINDOW
        self.stream_windows = {}
        self.next_stream = 1
        settings = struct.pack(">HI", SETTINGS_ENABLE_PUSH, 0) + struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE,
                                                                             initial_window)
        self.sock.sendall(PREFACE + h2_frame(SETTINGS, 0, 0, settings))

    def handshake(self):
        """Reads until the server's SETTINGS have come (and are acknowledged). Window updates sent after
        them are read when a send needs them (send_data)."""
        self.read_until(lambda f: f[0] == SETTINGS and not f[1] & ACK)
        return self

    # -- reading
    def _recv(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        return True

    def _next_buffered(self):
        if len(self.buffer) < 9:
            return None
        length = int.from_bytes(self.buffer[:3], "big")
        if len(self.buffer) < 9 + length:
            return None
        kind, flags = self.buffer[3], self.buffer[4]
        stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
        payload = bytes(self.buffer[9:9 + length])
        del self.buffer[:9 + length]
        frame = (kind, flags, stream, payload)
        self._handle(frame)
        return frame

    def _handle(self, frame):
        kind, flags, stream, payload = frame
        self.frames.append(frame)
        if kind == SETTINGS and not flags & ACK:
            for offset in range(0, len(payload) - 5, 6):
                key, value = struct.unpack(">HI", payload[offset:offset + 6])
                if key == SETTINGS_INITIAL_WINDOW_SIZE:
                    delta = value - self.peer_initial_window
                    self.peer_initial_window = value
                    for sid in self.stream_windows:
                        self.stream_windows[sid] += delta
            self._send(h2_frame(SETTINGS, ACK, 0))
        elif kind == WINDOW_UPDATE and len(payload) == 4:
            increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if stream == 0:
                self.send_window += increment
            elif stream in self.stream_windows:
                self.stream_windows[stream] += increment
        elif kind == PING and not flags & ACK:
            self._send(h2_frame(PING, ACK, 0, payload))

    def read_frame(self, deadline):
        """The next frame, or None at the deadline or at the end of the connection."""
        while True:
            frame = self._next_buffered()
            if frame is not None:
                return frame
            if self.closed or not self._recv(deadline):
                return None

    def read_until(self, predicate, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            frame = self.read_frame(deadline)
            if frame is None:
                got = [(k, f, s, len(p)) for k, f, s, p in self.frames[-8:]]
                raise TimeoutError(f"no awaited HTTP/2 frame within the deadline (closed={self.closed}); "
                                   f"last frames (type, flags, stream, length): {got}")
            if predicate(frame):
                return frame

    def drain(self, quiet=0.2):
        """Reads (and handles) frames until none has come for `quiet` seconds or the connection ended."""
        while self.read_frame(time.monotonic() + quiet) is not None:
            pass

    def drain_available(self):
        """Reads what the kernel holds for us right now, without waiting."""
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    chunk = self.sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closed = True
                    break
                self.buffer += chunk
        finally:
            self.sock.setblocking(True)
        while self._next_buffered() is not None:
            pass

    def peek_frames(self):
        """The frames the kernel holds for us (after any already buffered), looked at with MSG_PEEK: nothing
        is consumed, so a connection that "never reads" stays unread. [(type, flags, stream, length)]."""
        try:
            data = bytes(self.buffer) + self.sock.recv(1 << 22, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            data = bytes(self.buffer)
        except OSError:
            return []
        frames, offset = [], 0
        while offset + 9 <= len(data):
            length = int.from_bytes(data[offset:offset + 3], "big")
            if offset + 9 + length > len(data):
                break
            frames.append((data[offset + 3], data[offset + 4],
                           int.from_bytes(data[offset + 5:offset + 9], "big") & 0x7FFFFFFF, length))
            offset += 9 + length
        return frames

    # -- writing
    def _send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def open_stream(self, path, metadata=(), end_stream=False):
        sid = self.next_stream
        self.next_stream += 2
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", self.authority),
                   ("content-type", "application/grpc"), ("te", "trailers"), *metadata]
        block = b"".join(hpack_literal(name, value) for name, value in headers)
        self.stream_windows[sid] = self.peer_initial_window
        self._send(h2_frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block))
        return sid

    def send_data(self, sid, payload, end_stream=False):
        """Sends payload on stream sid in DATA frames within the peer's flow-control windows (reading its
        WINDOW_UPDATEs when they are short)."""
        deadline = time.monotonic() + self.timeout
        offset = 0
        while True:
            chunk = payload[offset:offset + CHUNK]
            while min(self.send_window, self.stream_windows[sid]) < len(chunk):
                if self.read_frame(deadline) is None:
                    raise TimeoutError(f"no send window for {len(chunk)} bytes on stream {sid} (connection "
                                       f"{self.send_window}, stream {self.stream_windows[sid]}, closed={self.closed})")
            self.send_window -= len(chunk)
            self.stream_windows[sid] -= len(chunk)
            offset += len(chunk)
            last = offset >= len(payload)
            self._send(h2_frame(DATA, END_STREAM if (last and end_stream) else 0, sid, chunk))
            if last:
                return

    def reset(self, sid, code=CANCEL):
        self._send(h2_frame(RST_STREAM, 0, sid, struct.pack(">I", code)))

    def close(self):
        """Closes the socket at once: no GOAWAY, no RST_STREAM."""
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # -- what came back
    def stream_frames(self, sid, kind=None):
        return [f for f in self.frames if f[2] == sid and (kind is None or f[0] == kind)]

    def data_of(self, sid):
        """The DATA payload bytes received on stream sid (padding removed)."""
        out = bytearray()
        for _, flags, _, payload in self.stream_frames(sid, DATA):
            if flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            out += payload
        return bytes(out)


# ---------------------------------------------------------------- load generators (separate processes)

def crowd(args):
    """`args.channels` connections x `args.per_channel` VideoLatestImage calls always in flight, for
    `args.seconds`: consumer i (x-consumer-id crowd-i) makes its next call as soon as its last one ends."""
    channels = [grpc.insecure_channel(args.address, options=[("grpc.max_receive_message_length", RECEIVE_LIMIT),
                                                             ("grpc.use_local_subchannel_pool", 1)])
                for _ in range(args.channels)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=10)
    # Raw bytes both ways: the Python side must stay cheap; an empty VideoFrame is zero bytes.
    calls = [channel.unary_unary(LATEST_IMAGE_PATH) for channel in channels]
    request = image_pb.VideoFrameRequest(device_id=args.device).SerializeToString()
    lock = threading.Lock()
    stats = Counter()
    codes = Counter()
    examples = {}
    latencies = []
    consumers = args.channels * args.per_channel
    outstanding = [consumers]
    done = threading.Event()
    started_at = time.monotonic()
    deadline = started_at + args.seconds

    def start(i):
        began = time.monotonic()
        future = calls[i % args.channels].future(request, metadata=(("x-consumer-id", f"crowd-{i}"),),
                                                 timeout=args.call_timeout)
        future.add_done_callback(lambda f: finished(i, f, began))

    def finished(i, future, began):
        now = time.monotonic()
        error = future.exception()
        with lock:
            latencies.append(now - began)
            if error is None:
                answer = future.result()
                stats["ok"] += 1
                stats["frames" if answer else "empty"] += 1
                stats["bytes"] += len(answer)
            else:
                codes[error.code().name] += 1
                examples.setdefault(error.code().name, error.details())
        if now < deadline:
            start(i)
        else:
            with lock:
                outstanding[0] -= 1
                if outstanding[0] == 0:
                    done.set()

    for i in range(consumers):
        start(i)
    print(f"crowd started {consumers} consumers", flush=True)
    done.wait(args.seconds + args.call_timeout + 10)
    elapsed = time.monotonic() - started_at
    for channel in channels:
        channel.close()
    print(json.dumps({"consumers": consumers, "seconds": round(elapsed, 2), "ok": stats["ok"],
                      "frames": stats["frames"], "empty": stats["empty"], "bytes": stats["bytes"],
                      "errors": dict(codes), "error_examples": examples, "unfinished": outstanding[0],
                      "served_per_second": round(stats["ok"] / elapsed, 1),
                      "call_p50_ms": ms(p50(latencies)), "call_p99_ms": ms(p99(latencies))}), flush=True)


def flood(args):
    """`args.calls` VideoLatestImage calls, each with a bearer token of its own that the server does not
    know, `args.in_flight` at a time over `args.channels` connections."""
    import secrets
    channels = [grpc.insecure_channel(args.address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(args.channels)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=10)
    calls = [channel.unary_unary(LATEST_IMAGE_PATH) for channel in channels]
    request = image_pb.VideoFrameRequest(device_id=args.device).SerializeToString()
    lock = threading.Lock()
    codes = Counter()
    examples = {}
    leaks = []
    latencies = []
    issued = [0]
    finished_count = [0]
    done = threading.Event()
    started_at = time.monotonic()

    def start():
        with lock:
            if issued[0] >= args.calls:
                return
            issued[0] += 1
            n = issued[0]
        token = secrets.token_hex(20)
        began = time.monotonic()
        future = calls[n % args.channels].future(request, metadata=(("authorization", f"Bearer {token}"),),
                                                 timeout=args.call_timeout)
        future.add_done_callback(lambda f: finished(f, began, token))

    def finished(future, began, token):
        now = time.monotonic()
        error = future.exception()
        code = "OK" if error is None else error.code().name
        details = "" if error is None else (error.details() or "")
        with lock:
            latencies.append(now - began)
            codes[code] += 1
            examples.setdefault(code, details)
            if token in details or token[-16:] in details:
                leaks.append(details)
            finished_count[0] += 1
            if finished_count[0] >= args.calls:
                done.set()
        start()

    for _ in range(min(args.in_flight, args.calls)):
        start()
    print(f"flood started {args.in_flight} in flight", flush=True)
    done.wait(args.calls * 2.0 / max(1, args.in_flight) + args.call_timeout + 30)
    elapsed = time.monotonic() - started_at
    for channel in channels:
        channel.close()
    ordered = latencies[:]
    print(json.dumps({"calls": args.calls, "finished": finished_count[0], "seconds": round(elapsed, 2),
                      "codes": dict(codes), "examples": examples, "token_leaks": leaks[:3],
                      "refused_per_second": round(finished_count[0] / elapsed, 1),
                      "delay_p50_ms": ms(p50(ordered)), "delay_p99_ms": ms(p99(ordered)),
                      "delay_max_ms": ms(max(ordered) if ordered else None)}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("crowd")
    c.add_argument("address")
    c.add_argument("device")
    c.add_argument("--channels", type=int, default=10)
    c.add_argument("--per-channel", type=int, default=100)
    c.add_argument("--seconds", type=float, default=10)
    c.add_argument("--call-timeout", type=float, default=30)
    f = sub.add_parser("flood")
    f.add_argument("address")
    f.add_argument("device")
    f.add_argument("--calls", type=int, default=2000)
    f.add_argument("--in-flight", type=int, default=250)
    f.add_argument("--channels", type=int, default=8)
    f.add_argument("--call-timeout", type=float, default=30)
    args = parser.parse_args()
    {"crowd": crowd, "flood": flood}[args.mode](args)


if __name__ == "__main__":
    main()
