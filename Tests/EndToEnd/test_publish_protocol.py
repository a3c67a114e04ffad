"""The native Publish protocol, driven by a raw grpcio client: the happy path and every kind of bad input."""
import re
import threading
import time

import grpc
import pytest

import support
from support import (PublishSession, frame_request, h264_hello, image_of, image_pb, is_empty, latest_image,
                     psnr)

pytestmark = pytest.mark.binaries

SEQUENCE_ERRORS = (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION,
                   grpc.StatusCode.INVALID_ARGUMENT)


@pytest.fixture
def sessions():
    opened = []

    def open_session(address):
        session = PublishSession(address)
        opened.append(session)
        return session
    yield open_session
    for session in opened:
        session.close()


def publish(session, units, window, pace_seconds=0.0):
    """Sends units as frames 1..N with pts = index, at most `window` unacked; returns the acks in order."""
    acks = []
    sent = 0
    while len(acks) < len(units):
        while sent < len(units) and sent - len(acks) < window:
            data, keyframe = units[sent]
            session.send(frame_request(sent + 1, data, sent, keyframe))
            sent += 1
            time.sleep(pace_seconds)
        answer = session.next_message()
        assert answer.WhichOneof("message") == "ack", f"expected an ack, got {answer}"
        acks.append(answer.ack.sequence)
    return acks


def frames_in_buffer(address, device):
    with support.consumer_channel(address) as channel:
        probe = support.image_grpc.ImageStub(channel).VideoProbe(image_pb.VideoProbeRequest(device_id=device),
                                                                 timeout=support.CALL_TIMEOUT)
    return probe.buffer.frames


def test_hello_frames_acks(server, sessions, annexb_clip):
    session = sessions(server.address)
    before = support.now_ms()
    accepted = session.handshake(h264_hello("raw-cam"))
    assert accepted.resume_after == 0, "a new session holds nothing yet"
    assert accepted.window > 0
    assert accepted.max_frame_bytes == 16 * 1024 * 1024, "docs/cli.md: --max-frame-bytes defaults to 16 MiB"
    assert before - 1000 <= accepted.server_time_ms <= support.now_ms() + 1000

    acks = publish(session, annexb_clip.units, accepted.window)
    assert acks == list(range(1, len(annexb_clip.units) + 1)), "one ack per frame, its sequence, in order"
    session.half_close()
    kind, value = session.next_event()
    assert kind == "end", f"half-close should end Publish with OK, got {kind} {value}"
    assert frames_in_buffer(server.address, "raw-cam") == len(annexb_clip.units)


def test_frame_before_hello_is_failed_precondition(server, sessions, annexb_clip):
    session = sessions(server.address)
    data, keyframe = annexb_clip.units[0]
    session.send(frame_request(1, data, 0, keyframe))
    code, details, acked = session.expect_error()
    assert code == grpc.StatusCode.FAILED_PRECONDITION, f"{code}: {details}"
    assert acked == []


@pytest.mark.parametrize("device_id", ["", "bad id", "../x", "-cam", "a" * 65, "cam/1", "kamera-ü"],
                         ids=["missing", "space", "dot-dot-slash", "leading-dash", "65-chars", "slash",
                              "non-ascii"])
def test_malformed_device_id_is_invalid_argument(server, sessions, device_id):
    session = sessions(server.address)
    session.send(h264_hello(device_id))
    code, details, acked = session.expect_error()
    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code}: {details}"


@pytest.mark.parametrize("device_id", ["a", "Cam-1.front_2", "9" + "x" * 63], ids=["1-char", "mixed", "64-chars"])
def test_well_formed_device_id_is_accepted(server, sessions, device_id):
    session = sessions(server.address)
    accepted = session.handshake(h264_hello(device_id))
    assert accepted.resume_after == 0


def test_frame_over_limit_is_resource_exhausted(start_server, sessions, annexb_clip):
    server = start_server("--max-frame-bytes", "1000000")
    session = sessions(server.address)
    accepted = session.handshake(h264_hello("limit-cam"))
    assert accepted.max_frame_bytes == 1_000_000
    assert publish(session, annexb_clip.units[:2], accepted.window) == [1, 2]

    session.send(frame_request(3, b"\x00" * 1_000_001, 2, False))
    code, details, acked = session.expect_error()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{code}: {details}"
    assert "1000000" in re.sub(r"[,_ ']", "", details), f"details should name the limit: {details!r}"
    assert acked == []
    assert frames_in_buffer(server.address, "limit-cam") == 2, "frames acked before the bad one are kept"


def test_frame_at_limit_is_accepted(start_server, sessions, annexb_clip):
    server = start_server("--max-frame-bytes", "1000000")
    session = sessions(server.address)
    accepted = session.handshake(h264_hello("limit-cam"))
    data, keyframe = annexb_clip.units[0]
    # An IDR access unit padded to exactly the limit (trailing zero bytes are legal in Annex-B).
    assert publish(session, [(data + b"\x00" * (1_000_000 - len(data)), keyframe)], accepted.window) == [1]


@pytest.mark.parametrize("sequences", [[1, 2, 3, 5], [1, 2, 3, 2]], ids=["skip", "backwards"])
def test_bad_sequence_is_refused_and_acked_frames_kept(server, sessions, annexb_clip, sequences):
    session = sessions(server.address)
    session.handshake(h264_hello("seq-cam"))
    good, bad = sequences[:-1], sequences[-1]
    for index, sequence in enumerate(good):
        data, keyframe = annexb_clip.units[index]
        session.send(frame_request(sequence, data, index, keyframe))
    acks = [session.next_message().ack.sequence for _ in good]
    assert acks == good
    data, keyframe = annexb_clip.units[len(good)]
    session.send(frame_request(bad, data, len(good), keyframe))
    code, details, acked = session.expect_error()
    assert code in SEQUENCE_ERRORS, f"{code}: {details}"
    assert acked == []
    assert frames_in_buffer(server.address, "seq-cam") == len(good), "acked frames must survive"


def test_absurd_clock_offset_and_drop_range_are_answered_not_crashes(server, sessions, annexb_clip):
    """Found by fuzzing (Tests/Fuzz/Regressions/native): a clock offset near 2^63 crashed relay-server on
    the first frame; a drop range ending at 2^64 - 1 would have on the next. The frame gets its arrival
    time, the range is refused by name, and the server goes on serving."""
    relay_pb2 = support.relay_pb2
    session = sessions(server.address)
    session.handshake(h264_hello("absurd-cam"))
    session.send(relay_pb2.PublishRequest(clock_sync=relay_pb2.ClockSync(offset_ms=2**63 - 1, round_trip_ms=1)))
    before = support.now_ms()
    data, keyframe = annexb_clip.units[0]
    session.send(frame_request(1, data, 0, keyframe))
    assert session.next_message().ack.sequence == 1
    session.send(relay_pb2.PublishRequest(frames_dropped=relay_pb2.FramesDropped(first=2, last=2**64 - 1)))
    code, details, acked = session.expect_error()
    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code}: {details}"
    assert "must stay below 9007199254740992" in details and "new session" in details, details
    assert acked == []
    with support.consumer_channel(server.address) as channel:
        probe = support.image_grpc.ImageStub(channel).VideoProbe(
            image_pb.VideoProbeRequest(device_id="absurd-cam"), timeout=support.CALL_TIMEOUT)
    assert probe.buffer.frames == 1, "the acked frame stays stored"
    assert before - 1000 <= probe.buffer.start_time <= support.now_ms() + 1000, "stamped on arrival"


def test_garbage_inside_h264_does_not_stop_the_server(server, sessions, annexb_clip, random_bytes):
    session = sessions(server.address)
    accepted = session.handshake(h264_hello("garbage-cam"))
    corrupted = {10, 15, 20, 40, 41, 45}  # P-frames in the first two GOPs; 60..89 are clean after an IDR
    units = list(annexb_clip.units)
    for index in corrupted:
        data, keyframe = units[index]
        assert not keyframe
        third = len(data) // 3
        units[index] = (data[:third] + random_bytes(third) + data[2 * third:], keyframe)

    received, consumer_errors = [], []
    stop = threading.Event()

    def consume():
        try:
            with support.consumer_channel(server.address) as channel:
                stub = support.image_grpc.ImageStub(channel)
                while not stop.is_set():
                    frame = latest_image(stub, "garbage-cam")
                    if not is_empty(frame):
                        received.append(frame)
                        if frame.pts >= 75:
                            return
        except grpc.RpcError as error:
            consumer_errors.append(f"{error.code().name}: {error.details()}")

    reader = threading.Thread(target=consume)
    reader.start()  # before publishing: the server decodes while someone consumes
    try:
        acks = publish(session, units, accepted.window, pace_seconds=1 / 60)
        reader.join(10)
    finally:
        stop.set()
        reader.join(5)
    assert not consumer_errors, f"the consumer failed: {consumer_errors}"
    assert acks == list(range(1, len(units) + 1)), "garbage inside a packet is still a stored packet"
    assert server.process.alive(), "relay-server died on garbage H.264"

    assert all(0 <= f.pts < len(units) for f in received)
    clean = [f for f in received if f.pts >= 60]
    assert clean, f"no frame after the clean keyframe reached the consumer; got pts {[f.pts for f in received]}"
    for frame in clean:
        quality = psnr(image_of(frame), annexb_clip.frames[frame.pts])
        assert quality >= 45, f"pts {frame.pts}: PSNR {quality:.2f} dB against FFmpeg's decode of the clean clip"
