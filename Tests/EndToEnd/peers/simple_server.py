#!/usr/bin/env python3
"""A server of the minimal "video over gRPC" protocol (shared/specs/simple-video-grpc.md), as the
original teaching project's server behaves, for tests and by hand.

`service video { rpc Analyse(stream MsgRequest) returns (stream MsgReply); }`, path /video/Analyse, no
package. Each request's `img` is raw pixels with no header; the server reshapes it to a configured
shape (the original: (480, 640) grayscale; (480, 640, 3) for colour) and answers every request with
the constant 1, one reply per request, in order. Insecure, gRPC's default 4 MiB receive limit.

Options for tests (defaults are the original's behaviour):
- reply_mode: "constant1" (every reply is 1) or "sequence" (1, 2, 3, ... per call, what relay-server
  answers).
- on_mismatch: what a frame whose length does not match the shape does.
  "original": numpy's reshape raises, so the call ends with UNKNOWN (as the original's does);
  "strict": the call is aborted with INVALID_ARGUMENT;
  "keep": the frame is recorded flat (1-D) and answered like any other.

Library:
    with SimpleVideoServer(shape=(480, 640)) as server:     # starts on 127.0.0.1:0
        port = server.port                                   # or: port = server.start()
        ...
        server.wait_for_frames(10, timeout=5)
        server.frames          # list of numpy uint8 arrays, in arrival order (all calls)
        server.frame_count, server.reply_count, server.calls  # calls: list of CallRecord

Script:
    python simple_server.py --port 50051 --shape 480x640 [--save-dir D] [--reply-mode sequence]
                            [--strict | --keep-mismatched] [--host 0.0.0.0]
It prints "simple-server listening on HOST:PORT" once it accepts calls (the real port when --port 0),
one line per finished call, and stops on SIGINT/SIGTERM.
"""
import argparse
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import numpy

REPLY_MODES = ("constant1", "sequence")
MISMATCH_MODES = ("original", "strict", "keep")
DEFAULT_SHAPE = (480, 640)


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


def parse_shape(text):
    """"480x640" -> (480, 640); "480x640x3" -> (480, 640, 3)."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape {text!r}: expected dimensions joined by x, e.g. 480x640 or 480x640x3")
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"shape {text!r}: every dimension must be positive")
    return shape


class CallRecord:
    """One Analyse call as the server saw it."""

    def __init__(self, index, peer, metadata):
        self.index = index
        self.peer = peer
        self.metadata = metadata  # dict of the invocation metadata (last value wins for repeated keys)
        self.frames = 0           # requests received on this call
        self.replies = 0          # replies yielded on this call
        self.status = None        # None while running; "OK", or the status code name it ended with
        self.details = ""

    def __repr__(self):
        return (f"CallRecord(index={self.index}, frames={self.frames}, replies={self.replies}, "
                f"status={self.status!r}, metadata={self.metadata!r})")


class SimpleVideoServer:
    def __init__(self, shape=DEFAULT_SHAPE, reply_mode="constant1", on_mismatch="original",
                 strict=False, host="127.0.0.1", port=0, save_dir=None, keep_frames=True,
                 max_receive_message_length=None, reply_delay=0.0, max_workers=16, log=None):
        """shape: a tuple or "480x640"; strict=True is on_mismatch="strict". keep_frames: keep the frames
        in memory (False keeps counts only, for long runs). max_receive_message_length: None is gRPC's
        default (4 MiB), as the original. reply_delay: seconds to sleep before each reply (a slow
        analysis). log: a callable taking one line (e.g. print), or None for silence."""
        self.shape = parse_shape(shape) if isinstance(shape, str) else tuple(int(d) for d in shape)
        if reply_mode not in REPLY_MODES:
            raise ValueError(f"reply_mode must be one of {REPLY_MODES}, not {reply_mode!r}")
        if strict:
            on_mismatch = "strict"
        if on_mismatch not in MISMATCH_MODES:
            raise ValueError(f"on_mismatch must be one of {MISMATCH_MODES}, not {on_mismatch!r}")
        self.reply_mode = reply_mode
        self.on_mismatch = on_mismatch
        self.host = host
        self.requested_port = int(port)
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.keep_frames = keep_frames
        self.max_receive_message_length = max_receive_message_length
        self.reply_delay = float(reply_delay)
        self.max_workers = max_workers
        self.log = log
        self.frame_size = int(numpy.prod(self.shape))
        self.port = None
        self._server = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._frames = []
        self._calls = []
        self._frame_count = 0
        self._reply_count = 0
        self._mismatch_count = 0

    # ------------------------------------------------------------ lifecycle

    def start(self):
        """Starts serving; returns the bound port (the real one when port 0 was asked for)."""
        if self._server is not None:
            return self.port
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        options = []
        if self.max_receive_message_length is not None:
            options.append(("grpc.max_receive_message_length", int(self.max_receive_message_length)))
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers), options=options)
        video_pb2_grpc.add_videoServicer_to_server(_Servicer(self), server)
        port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        if port == 0:
            raise RuntimeError(f"could not bind {self.host}:{self.requested_port}")
        server.start()
        self._server, self.port = server, port
        return port

    def stop(self, grace=None):
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def wait_for_termination(self, timeout=None):
        return self._server.wait_for_termination(timeout)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def address(self):
        host = "127.0.0.1" if self.host in ("0.0.0.0", "[::]", "") else self.host
        return f"{host}:{self.port}"

    # ------------------------------------------------------------ what was received (thread-safe)

    @property
    def frames(self):
        """Received frames as numpy uint8 arrays of the configured shape, in arrival order (a copy of
        the list; the arrays are read-only views of the received bytes)."""
        with self._lock:
            return list(self._frames)

    @property
    def frame_count(self):
        with self._lock:
            return self._frame_count

    @property
    def reply_count(self):
        with self._lock:
            return self._reply_count

    @property
    def mismatch_count(self):
        with self._lock:
            return self._mismatch_count

    @property
    def calls(self):
        with self._lock:
            return list(self._calls)

    def wait_for_frames(self, count, timeout=5.0):
        """Waits until at least `count` frames arrived; returns whether they did."""
        with self._changed:
            return self._changed.wait_for(lambda: self._frame_count >= count, timeout)

    def wait_for_calls_ended(self, count=1, timeout=5.0):
        """Waits until at least `count` calls have ended (any status); returns whether they did."""
        with self._changed:
            return self._changed.wait_for(
                lambda: sum(1 for c in self._calls if c.status is not None) >= count, timeout)

    def clear(self):
        with self._lock:
            self._frames.clear()

    # ------------------------------------------------------------ internals

    def _begin_call(self, context):
        metadata = {key: value for key, value in (context.invocation_metadata() or ())}
        with self._changed:
            call = CallRecord(len(self._calls), context.peer(), metadata)
            self._calls.append(call)
            self._changed.notify_all()
        return call

    def _end_call(self, call, status, details=""):
        with self._changed:
            if call.status is not None:
                return  # the first ending counts (an abort also reaches the termination callback)
            call.status, call.details = status, details
            self._changed.notify_all()
        if self.log:
            self.log(f"call {call.index} from {call.peer} ended {call.status}: "
                     f"{call.frames} frames, {call.replies} replies {call.details}".rstrip())

    def _record(self, call, frame, matched):
        with self._changed:
            self._frame_count += 1
            call.frames += 1
            if not matched:
                self._mismatch_count += 1
            number = self._frame_count
            if self.keep_frames:
                self._frames.append(frame)
            self._changed.notify_all()
        if self.save_dir is not None:
            numpy.save(self.save_dir / f"frame-{number:06d}.npy", frame)

    def _replied(self, call):
        with self._changed:
            self._reply_count += 1
            call.replies += 1
            self._changed.notify_all()


class _Servicer(video_pb2_grpc.videoServicer):
    def __init__(self, owner):
        self.owner = owner

    def Analyse(self, request_iterator, context):
        owner = self.owner
        call = owner._begin_call(context)
        # Runs when the RPC terminates; a call that neither finished nor failed here was cancelled.
        context.add_callback(lambda: owner._end_call(call, "CANCELLED"))
        sequence = 0
        try:
            for request in request_iterator:
                img = request.img
                matched = len(img) == owner.frame_size
                if matched:
                    frame = numpy.frombuffer(img, dtype=numpy.uint8).reshape(owner.shape)
                elif owner.on_mismatch == "strict":
                    details = (f"frame {call.frames + 1} has {len(img)} bytes; shape {owner.shape} "
                               f"needs {owner.frame_size}")
                    owner._end_call(call, "INVALID_ARGUMENT", details)
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, details)
                elif owner.on_mismatch == "keep":
                    frame = numpy.frombuffer(img, dtype=numpy.uint8)
                else:  # "original": numpy raises, the call ends with UNKNOWN
                    frame = numpy.frombuffer(img, dtype=numpy.uint8).reshape(owner.shape)
                owner._record(call, frame, matched)
                sequence += 1
                if owner.reply_delay:
                    threading.Event().wait(owner.reply_delay)
                reply = 1 if owner.reply_mode == "constant1" else sequence
                yield video_pb2.MsgReply(reply=reply)
                owner._replied(call)
        except Exception as error:  # noqa: BLE001  (recorded, then re-raised: gRPC makes it UNKNOWN)
            owner._end_call(call, "UNKNOWN", repr(error))  # no-op when already ended (strict abort)
            raise
        owner._end_call(call, "OK")


def main(argv=None):
    parser = argparse.ArgumentParser(description="A server of the minimal video-over-gRPC protocol "
                                     "(/video/Analyse), as the original teaching project's server.")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port (printed)")
    parser.add_argument("--shape", default="480x640", help="e.g. 480x640 (gray) or 480x640x3 (colour)")
    parser.add_argument("--save-dir", help="save every frame as DIR/frame-NNNNNN.npy")
    parser.add_argument("--reply-mode", choices=REPLY_MODES, default="constant1")
    mismatch = parser.add_mutually_exclusive_group()
    mismatch.add_argument("--strict", action="store_true",
                          help="abort the call with INVALID_ARGUMENT on a frame of the wrong length")
    mismatch.add_argument("--keep-mismatched", action="store_true",
                          help="record frames of the wrong length flat and answer them")
    parser.add_argument("--max-receive-message-length", type=int, default=None,
                        help="bytes; default gRPC's 4 MiB, as the original")
    parser.add_argument("--reply-delay", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args(argv)
    try:
        shape = parse_shape(args.shape)
    except ValueError as error:
        parser.error(str(error))
    on_mismatch = "strict" if args.strict else "keep" if args.keep_mismatched else "original"
    server = SimpleVideoServer(shape=shape, reply_mode=args.reply_mode, on_mismatch=on_mismatch,
                               host=args.host, port=args.port, save_dir=args.save_dir, keep_frames=False,
                               max_receive_message_length=args.max_receive_message_length,
                               reply_delay=args.reply_delay, log=lambda line: print(line, flush=True))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"simple-server listening on {args.host}:{server.port}", flush=True)
    stop.wait()
    server.stop(grace=1)
    print(f"simple-server stopped: {server.frame_count} frames, {server.reply_count} replies", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
