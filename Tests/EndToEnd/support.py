"""Helpers shared by the end-to-end tests: processes, consumers, a raw Publish client, reference media."""
import contextlib
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path

import grpc
import numpy
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import framerelay_support  # noqa: E402
from framerelay_support import REPO, RelayServer, pick_port, tail  # noqa: E402,F401 (re-exported for the tests)

framerelay_support.add_stubs_to_path()
from chrysalis import video_streaming_pb2 as image_pb  # noqa: E402
from chrysalis import video_streaming_pb2_grpc as image_grpc  # noqa: E402
from framerelay.v1 import relay_pb2  # noqa: E402

BIN_DIR = (REPO / os.environ.get("RELAY_BIN_DIR", ".build/debug")).resolve()
RELAY_SERVER = BIN_DIR / "relay-server"
RELAY_CLIENT = BIN_DIR / "relay-client"
RTSP_SERVER_SCRIPT = REPO / "scripts" / "rtsp-server.py"

RECEIVE_LIMIT = 50 * 1024 * 1024  # what Chrysalis consumers set (a 1080p bgr24 frame is 6.2 MB)
CALL_TIMEOUT = 5.0  # seconds; no single RPC in these tests should take longer
LATEST_IMAGE_PATH = "/chrys.cloud.videostreaming.v1beta1.Image/VideoLatestImage"
PUBLISH_PATH = "/framerelay.v1.FrameRelay/Publish"


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- processes

class ManagedProcess(framerelay_support.ManagedProcess):
    """framerelay_support's ManagedProcess (logs in files, started in the repo root) failing the test with
    pytest.fail, the process's stderr tail in the message, when a wait for its output fails."""

    def fail(self, error):
        __tracebackhide__ = True
        pytest.fail(str(error))


def relay_server_ready(process, timeout=15):
    """RelayServer once the ready line (and the metrics line, with --metrics-listen) is out."""
    __tracebackhide__ = True
    server = framerelay_support.relay_server_ready(process, timeout)
    assert server.port != 0, "the ready line must carry the real port when port 0 was asked for"
    return server


# ---------------------------------------------------------------- consumers

def consumer_channel(address):
    return grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", RECEIVE_LIMIT)])


def latest_image(stub, device, timeout=CALL_TIMEOUT):
    """One VideoLatestImage call in the old style: a stream carrying one request, answered by one frame."""
    answers = list(stub.VideoLatestImage(iter([image_pb.VideoFrameRequest(device_id=device)]), timeout=timeout))
    assert len(answers) == 1, f"one request got {len(answers)} answers"
    return answers[0]


def is_empty(frame):
    return len(frame.shape.dim) == 0  # how real consumers test for "no new frame yet"


def wait_for_frame(stub, device, timeout=15.0):
    """Polls until a non-empty frame arrives. NOT_FOUND is retried: the publisher may still be connecting."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            frame = latest_image(stub, device)
            if not is_empty(frame):
                return frame
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            last_error = f"{error.code().name}: {error.details()}"
        time.sleep(0.02)
    pytest.fail(f"no frame of {device} within {timeout}s (last error: {last_error})")


def collect_frames(stub, device, seconds, until=None):
    """Polls for `seconds` (or until `until(frames)` holds) and returns the non-empty frames in order."""
    frames = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = latest_image(stub, device)
        if not is_empty(frame):
            frames.append(frame)
            if until and until(frames):
                break
    return frames


def list_streams(stub):
    return {s.name: s for s in stub.ListStreams(image_pb.ListStreamRequest(), timeout=5)}


def wait_for_status(stub, device, predicate, timeout):
    """Polls ListStreams until the device's entry satisfies `predicate`; returns that entry."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = list_streams(stub).get(device)
        if last is not None and predicate(last):
            return last
        time.sleep(0.1)
    pytest.fail(f"{device} never reached the expected state; last ListStreams entry: {last}")


def image_of(frame):
    return numpy.frombuffer(frame.data, numpy.uint8).reshape([d.size for d in frame.shape.dim])


def psnr(a, b):
    mse = numpy.mean((a.astype(numpy.float64) - b.astype(numpy.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def assert_well_formed_image(frame, width, height, device):
    assert (frame.width, frame.height) == (width, height)
    assert [d.size for d in frame.shape.dim] == [height, width, 3]
    assert [d.name for d in frame.shape.dim] == ["0", "1", "2"]
    assert len(frame.data) == width * height * 3, "bgr24 is packed: height x width x 3 bytes, no padding"
    assert frame.device_id == device


@contextlib.contextmanager
def time_limit(seconds):
    """Fails the test (TimeoutError) when the block runs past `seconds`: a hung test must not stall the run."""
    def expire(signum, frame):
        raise TimeoutError(f"test ran longer than {seconds}s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

# ---------------------------------------------------------------- raw Publish client

def h264_hello(device_id, width=320, height=240, session_id=None):
    return relay_pb2.PublishRequest(hello=relay_pb2.Hello(
        device_id=device_id,
        session_id=session_id or uuid.uuid4().hex,
        codec=relay_pb2.CodecDescription(name="h264", width=width, height=height, pix_fmt="yuv420p",
                                         time_base_num=1, time_base_den=30, frame_rate=30.0),
        source_kind=relay_pb2.SOURCE_KIND_FILE,
        source="pytest",
        client=relay_pb2.ClientInfo(host="localhost", pid=os.getpid(), version="e2e-test"),
        client_time_ms=now_ms()))


def frame_request(sequence, data, pts, keyframe):
    return relay_pb2.PublishRequest(frame=relay_pb2.Frame(
        sequence=sequence, data=data, pts=pts, dts=pts, keyframe=keyframe, capture_time_ms=now_ms()))


class PublishSession:
    """A Publish stream driven step by step: send messages, read answers with a timeout each.

    A reader thread moves answers into a queue so that no read can block a test past its timeout.
    """

    def __init__(self, address, call_timeout=20.0):
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", RECEIVE_LIMIT)])
        self._outgoing = queue.Queue()
        self._incoming = queue.Queue()
        publish = self.channel.stream_stream(PUBLISH_PATH,
                                             request_serializer=relay_pb2.PublishRequest.SerializeToString,
                                             response_deserializer=relay_pb2.PublishResponse.FromString)
        self.call = publish(self._requests(), timeout=call_timeout)
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self):
        while True:
            message = self._outgoing.get()
            if message is None:  # half-close
                return
            yield message

    def _read(self):
        try:
            for response in self.call:
                self._incoming.put(("message", response))
            self._incoming.put(("end", None))
        except grpc.RpcError as error:
            self._incoming.put(("error", error))

    def send(self, message):
        self._outgoing.put(message)

    def half_close(self):
        self._outgoing.put(None)

    def close(self):
        self.half_close()
        self.call.cancel()
        self.channel.close()

    def next_event(self, timeout=CALL_TIMEOUT):
        """("message", PublishResponse) | ("error", RpcError) | ("end", None)."""
        try:
            return self._incoming.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no answer on the Publish stream within {timeout}s")

    def next_message(self, timeout=CALL_TIMEOUT):
        kind, value = self.next_event(timeout)
        if kind == "error":
            pytest.fail(f"Publish failed: {value.code().name}: {value.details()}")
        assert kind == "message", "Publish ended without an answer"
        return value

    def expect_error(self, timeout=CALL_TIMEOUT):
        """Skips acks until the stream fails; returns (code, details, acked sequences seen on the way)."""
        acked = []
        while True:
            kind, value = self.next_event(timeout)
            if kind == "error":
                return value.code(), value.details() or "", acked
            assert kind == "message", "Publish ended with OK where an error status was expected"
            acked.append(value.ack.sequence)

    def handshake(self, hello):
        """Sends the hello, returns Accepted, sends the clock sync as relay-client does."""
        sent = time.time()
        self.send(hello)
        answer = self.next_message()
        assert answer.WhichOneof("message") == "accepted", f"first answer is not accepted: {answer}"
        round_trip_ms = int((time.time() - sent) * 1000)
        offset = answer.accepted.server_time_ms - int((sent * 1000 + now_ms()) / 2)
        self.send(relay_pb2.PublishRequest(clock_sync=relay_pb2.ClockSync(offset_ms=offset,
                                                                           round_trip_ms=round_trip_ms)))
        return answer.accepted


# ---------------------------------------------------------------- reference media

def run(argv, **kwargs):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=60, **kwargs)


def ffmpeg_bgr24_frames(path, width, height, input_format=None):
    """FFmpeg's own decode of every frame, in presentation order, as bgr24 (the server's conversion)."""
    argv = ["ffmpeg", "-v", "error"] + (["-f", input_format] if input_format else []) + [
        "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough", "-sws_flags", "bicubic",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
    raw = run(argv).stdout
    frame_bytes = width * height * 3
    assert len(raw) % frame_bytes == 0
    return [numpy.frombuffer(raw[i:i + frame_bytes], numpy.uint8).reshape(height, width, 3)
            for i in range(0, len(raw), frame_bytes)]


def ffprobe_frames(path):
    """[(pts, pict_type, key_frame)] of every decoded frame, in the order FFmpeg outputs them."""
    out = run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
               "frame=pts,pict_type,key_frame", "-of", "json", path]).stdout
    return [(f["pts"], f["pict_type"], f["key_frame"] == 1) for f in json.loads(out)["frames"]]


def ffprobe_time_base(path):
    out = run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=time_base",
               "-of", "json", path]).stdout
    return Fraction(json.loads(out)["streams"][0]["time_base"])


NAL_START = re.compile(b"\x00\x00\x01")
ACCESS_UNIT_DELIMITER = b"\x00\x00\x00\x01\x09"


def split_access_units(annexb):
    """Splits an Annex-B stream made with x264's aud=1 at each access unit delimiter.

    Returns [(bytes, keyframe)]; a keyframe is an access unit holding an IDR slice (NAL type 5).
    """
    units = [ACCESS_UNIT_DELIMITER + part for part in annexb.split(ACCESS_UNIT_DELIMITER) if part]
    return [(unit, any(unit[m.end()] & 0x1F == 5 for m in NAL_START.finditer(unit) if m.end() < len(unit)))
            for unit in units]
