#!/usr/bin/env python3
"""A client of the minimal "video over gRPC" protocol (shared/specs/simple-video-grpc.md), as the
original teaching project's client behaves, for tests and by hand.

It opens one `/video/Analyse` stream, sends each frame's raw pixels as `MsgRequest.img` (no header:
a numpy uint8 array's bytes, e.g. 480x640 grayscale = 307,200 bytes, or 480x640x3) and collects the
integer `MsgReply.reply` of each. Insecure, gRPC's default channel limits. Like the original it streams
freely (no waiting for replies) unless max_in_flight bounds the frames sent but not yet answered.

Library:
    replies = analyse("127.0.0.1:50051", frames)                       # list of ints
    replies = analyse(target, frames, metadata={"x-device-id": "cam-1"}, max_in_flight=4, timeout=5)

    client = SimpleVideoClient(target, metadata=..., max_in_flight=..., timeout=...)
    replies = client.analyse(frames)     # also: client.sent, client.replies, client.max_in_flight_seen
    client.close()

`frames` is any iterable (a generator works: frames are pulled as they are sent) of numpy uint8 arrays
or bytes. A call that ends with a non-OK status raises AnalyseError, a grpc.RpcError with code(),
details() and the replies received before the failure (.replies) and frames sent (.sent).

Script:
    python simple_client.py --target 127.0.0.1:50051 [--shape 480x640] [--frames 30] [--fps 30]
                            [--pattern random|gradient|zeros] [--input DIR_OF_NPY] [--metadata k=v ...]
                            [--max-in-flight N] [--timeout S]
It prints one line per reply ("reply N: VALUE") and a summary "sent N frames, M replies"; it exits 0
when the call ended OK, 1 with the status on stderr when it did not.
"""
import argparse
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy


def _load_stubs():
    """Imports the simple/video stubs that scripts/generate-python-stubs.sh generates into build/python,
    through scripts/framerelay_support.py's add_stubs_to_path() when the repository has it."""
    repo = Path(__file__).resolve().parents[3]
    stubs = repo / "build" / "python"
    scripts = repo / "scripts"
    if (scripts / "framerelay_support.py").is_file():
        if str(scripts) not in sys.path:
            sys.path.insert(0, str(scripts))
        import framerelay_support  # noqa: E402
        stubs = framerelay_support.add_stubs_to_path()
    elif str(stubs) not in sys.path:
        sys.path.insert(0, str(stubs))
    if not (Path(stubs) / "simple" / "video_pb2_grpc.py").is_file():
        raise RuntimeError(f"no simple/video stubs in {stubs}: run scripts/generate-python-stubs.sh")
    from simple import video_pb2, video_pb2_grpc  # noqa: E402
    return video_pb2, video_pb2_grpc


video_pb2, video_pb2_grpc = _load_stubs()

ANALYSE_PATH = "/video/Analyse"


def frame_bytes(frame):
    """A frame's raw pixels: bytes as they are, numpy arrays must be uint8 (C order)."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return bytes(frame)
    array = numpy.asarray(frame)
    if array.dtype != numpy.uint8:
        raise ValueError(f"frames are raw 8-bit pixels; got dtype {array.dtype}")
    return numpy.ascontiguousarray(array).tobytes()


class AnalyseError(grpc.RpcError):
    """The Analyse call ended with a status other than OK."""

    def __init__(self, code, details, replies, sent):
        super().__init__(f"Analyse ended {code.name}: {details}")
        self._code, self._details = code, details
        self.replies, self.sent = replies, sent

    def code(self):
        return self._code

    def details(self):
        return self._details

    def __str__(self):
        return f"Analyse ended {self._code.name}: {self._details} ({self.sent} sent, {len(self.replies)} replies)"


class SimpleVideoClient:
    def __init__(self, target, metadata=None, max_in_flight=None, timeout=None, fps=None,
                 channel_options=None, on_reply=None):
        """target: "host:port". metadata: a dict or (key, value) pairs sent with the call (keys lower
        case, e.g. {"x-device-id": "cam-1"}). max_in_flight: None streams freely (the original);
        N sends frame k+N only after reply k arrived. timeout: the call's deadline in seconds (None:
        no deadline, as the original). fps: pace the frames (None: as fast as possible).
        on_reply: called with (index, value) as each reply arrives."""
        self.target = target
        self.metadata = list(metadata.items()) if isinstance(metadata, dict) else list(metadata or ())
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1 (or None for no bound)")
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.fps = fps
        self.on_reply = on_reply
        self.channel = grpc.insecure_channel(target, options=list(channel_options or ()))
        self.stub = video_pb2_grpc.videoStub(self.channel)
        self._lock = threading.Lock()
        self.sent = 0
        self.replies = []
        self.max_in_flight_seen = 0  # the most frames sent and not yet answered, as counted here

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def analyse(self, frames):
        """Sends the frames over one Analyse stream, half-closes, and returns the replies (ints, in order).
        Raises AnalyseError when the call does not end OK."""
        with self._lock:
            self.sent, self.replies, self.max_in_flight_seen = 0, [], 0
        done = threading.Event()
        window = threading.Semaphore(self.max_in_flight) if self.max_in_flight else None
        period = 1.0 / self.fps if self.fps else None

        def requests():
            start = time.monotonic()
            for index, frame in enumerate(frames):
                if window is not None:
                    while not window.acquire(timeout=0.05):
                        if done.is_set():
                            return
                if done.is_set():
                    return
                if period is not None:
                    delay = start + index * period - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                request = video_pb2.MsgRequest(img=frame_bytes(frame))
                with self._lock:
                    self.sent += 1
                    self.max_in_flight_seen = max(self.max_in_flight_seen, self.sent - len(self.replies))
                yield request

        call = self.stub.Analyse(requests(), metadata=self.metadata or None, timeout=self.timeout)
        try:
            for reply in call:
                with self._lock:
                    self.replies.append(reply.reply)
                    index = len(self.replies)
                if window is not None:
                    window.release()
                if self.on_reply is not None:
                    self.on_reply(index, reply.reply)
        except grpc.RpcError as error:
            done.set()
            raise AnalyseError(error.code(), error.details(), list(self.replies), self.sent) from None
        finally:
            done.set()
        return list(self.replies)


def analyse(target, frames, metadata=None, max_in_flight=None, timeout=None, fps=None,
            channel_options=None, on_reply=None):
    """One Analyse call on a channel of its own; returns the replies. See SimpleVideoClient."""
    with SimpleVideoClient(target, metadata=metadata, max_in_flight=max_in_flight, timeout=timeout,
                           fps=fps, channel_options=channel_options, on_reply=on_reply) as client:
        return client.analyse(frames)


def synthetic_frames(shape, count, pattern="random", seed=1):
    """`count` uint8 frames of `shape`: "random" (seeded), "gradient" (moves per frame) or "zeros"."""
    generator = numpy.random.default_rng(seed)
    for index in range(count):
        if pattern == "random":
            yield generator.integers(0, 256, shape, dtype=numpy.uint8)
        elif pattern == "gradient":
            ramp = (numpy.arange(int(numpy.prod(shape)), dtype=numpy.int64) + index) % 256
            yield ramp.astype(numpy.uint8).reshape(shape)
        elif pattern == "zeros":
            yield numpy.zeros(shape, dtype=numpy.uint8)
        else:
            raise ValueError(f"unknown pattern {pattern!r}")


def _parse_shape(text):
    shape = tuple(int(part) for part in text.lower().split("x"))
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(text)
    return shape


def main(argv=None):
    parser = argparse.ArgumentParser(description="A client of the minimal video-over-gRPC protocol "
                                     "(/video/Analyse), as the original teaching project's client.")
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--shape", default="480x640", help="e.g. 480x640 (gray) or 480x640x3 (colour)")
    parser.add_argument("--frames", type=int, default=30, help="how many synthetic frames to send")
    parser.add_argument("--pattern", choices=("random", "gradient", "zeros"), default="random")
    parser.add_argument("--input", help="send DIR/*.npy (sorted by name) instead of synthetic frames")
    parser.add_argument("--fps", type=float, default=None)
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                        help="call metadata, e.g. x-device-id=cam-1 (repeatable)")
    parser.add_argument("--max-in-flight", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None, help="call deadline in seconds")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    try:
        shape = _parse_shape(args.shape)
    except ValueError:
        parser.error(f"--shape {args.shape!r}: expected e.g. 480x640 or 480x640x3")
    metadata = []
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--metadata {item!r}: expected KEY=VALUE")
        metadata.append((key.lower(), value))
    if args.input:
        files = sorted(Path(args.input).glob("*.npy"))
        frames = (numpy.load(path) for path in files)
    else:
        frames = synthetic_frames(shape, args.frames, args.pattern)
    on_reply = None if args.quiet else (lambda index, value: print(f"reply {index}: {value}", flush=True))
    client = SimpleVideoClient(args.target, metadata=metadata, max_in_flight=args.max_in_flight,
                               timeout=args.timeout, fps=args.fps, on_reply=on_reply)
    try:
        replies = client.analyse(frames)
    except AnalyseError as error:
        print(f"sent {error.sent} frames, {len(error.replies)} replies", flush=True)
        print(f"simple-client: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"sent {client.sent} frames, {len(replies)} replies", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
