"""The Chrysalis Image API as consumers see it: real relay-client publishing, Python grpcio consuming."""
import json
import threading
import time

import grpc
import numpy
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import support
from support import (assert_well_formed_image, collect_frames, image_of, image_pb, is_empty, latest_image,
                     now_ms, psnr, wait_for_frame)

pytestmark = pytest.mark.binaries

PATTERN_ARGS = ["--test-pattern", "--size", "320x240", "--fps", "30"]


class LiveDevice:
    def __init__(self, server, client, device):
        self.server, self.client, self.device = server, client, device


@pytest.fixture
def live_pattern(server, start_client, consumer):
    """A device fed by relay-client's 320x240 30 fps test pattern, already delivering frames."""
    client = start_client(server.address, "pattern-cam", *PATTERN_ARGS)
    wait_for_frame(consumer(server.address), "pattern-cam")
    return LiveDevice(server, client, "pattern-cam")


def strictly_increasing(values):
    return all(a < b for a, b in zip(values, values[1:]))


def client_summary(client):
    lines = [line for line in client.stdout().splitlines() if line.startswith("{")]
    assert lines, f"relay-client printed no summary line; stdout: {client.stdout()!r}"
    summary = json.loads(lines[-1])
    assert summary["event"] == "summary"
    return summary


def test_rtsp_camera_reaches_consumer(server, start_rtsp_server, start_client, consumer):
    _, url = start_rtsp_server("--size", "320x240", "--fps", "30")
    client = start_client(server.address, "rtsp-cam", "--rtsp", url)
    stub = consumer(server.address)

    frames = [wait_for_frame(stub, "rtsp-cam", timeout=20)]

    def seconds_after_first(frame):
        return (frame.pts - frames[0].pts) * frames[0].time_base

    frames += collect_frames(stub, "rtsp-cam", seconds=8,
                             until=lambda got: len(got) >= 30 and any(f.is_keyframe for f in got)
                             and seconds_after_first(got[-1]) >= 2.5)
    now = now_ms()
    for frame in frames:
        assert_well_formed_image(frame, 320, 240, "rtsp-cam")
        assert frame.codec_name == "h264"
        assert frame.frame_type in ("I", "P", "B"), frame.frame_type
        assert not frame.is_keyframe or frame.frame_type == "I"
        assert abs(frame.timestamp - now) < 5000, "timestamps are ms since the Unix epoch on the server clock"
        assert frame.time_base == pytest.approx(1 / 90000), "RTP H.264 counts in a 90 kHz time base"
    assert any(f.is_keyframe for f in frames), "x264enc key-int-max=30: a keyframe every second"
    assert strictly_increasing([f.packet for f in frames]), "a consumer never gets the same frame twice"
    assert strictly_increasing([f.pts for f in frames])
    assert all(a.timestamp <= b.timestamp for a, b in zip(frames, frames[1:]))
    # Timestamps follow the video: the span in ms matches the span in pts (live source, loopback). The
    # first second is left out: FFmpeg's stream probing hands those packets to the client in one burst.
    steady = [f for f in frames if seconds_after_first(f) >= 1.5]
    assert len(steady) >= 2, f"no frames 1.5 s into the stream; pts {[f.pts for f in frames]}"
    span_ms = steady[-1].timestamp - steady[0].timestamp
    span_pts_ms = seconds_after_first(steady[-1]) * 1000 - seconds_after_first(steady[0]) * 1000
    assert abs(span_ms - span_pts_ms) < 300, (span_ms, span_pts_ms)

    streams = [s for s in stub.ListStreams(image_pb.ListStreamRequest(), timeout=support.CALL_TIMEOUT)
               if s.name == "rtsp-cam"]
    assert len(streams) == 1, "ListStreams lists each device once"
    assert streams[0].running and not streams[0].dead
    assert streams[0].pid == client.pid, "ListStreams shows the publishing client's pid"

    assert client.stop() == 0, "SIGTERM stops relay-client cleanly"
    summary = client_summary(client)
    assert summary["device"] == "rtsp-cam"
    assert summary["frames_sent"] > 0
    assert summary["frames_acked"] == summary["frames_sent"], "loopback: every sent frame is acked by exit"


def test_file_frames_equal_ffmpeg_decode(server, start_client, consumer, h264_mp4):
    client = start_client(server.address, "file-cam", "--file", h264_mp4.path)  # realtime pace: 3 s
    stub = consumer(server.address)
    frames = [wait_for_frame(stub, "file-cam")]
    deadline = time.monotonic() + 8
    last_new_frame = time.monotonic()
    # Collect until the client is done with the file and the server has nothing newer for a while.
    while time.monotonic() < deadline and (client.alive() or time.monotonic() - last_new_frame < 1.0):
        frame = latest_image(stub, "file-cam")
        if not is_empty(frame):
            frames.append(frame)
            last_new_frame = time.monotonic()

    assert len(frames) >= 15, f"only {len(frames)} of 90 frames reached the consumer in 3 s of playback"
    unknown = [f.pts for f in frames if f.pts not in h264_mp4.index_of_pts]
    assert not unknown, f"pts not in the file's time base: {unknown[:10]}"
    assert frames[0].time_base == pytest.approx(float(h264_mp4.time_base), rel=1e-12)
    assert strictly_increasing([f.pts for f in frames])

    worst_psnr = numpy.inf
    mismatched = 0
    for frame in frames:
        assert_well_formed_image(frame, 320, 240, "file-cam")
        index = h264_mp4.index_of_pts[frame.pts]
        _, pict_type, key_frame = h264_mp4.probed[index]
        assert (frame.frame_type, frame.is_keyframe) == (pict_type, key_frame), f"type of pts {frame.pts}"
        reference = h264_mp4.frames[index]
        got = image_of(frame)
        if not numpy.array_equal(got, reference):
            mismatched += 1
            worst_psnr = min(worst_psnr, psnr(got, reference))
    if mismatched == 0:
        print(f"pixels: all {len(frames)} frames byte-exact with FFmpeg's decode")
    else:
        print(f"pixels: {mismatched}/{len(frames)} frames differ from FFmpeg's decode; worst PSNR "
              f"{worst_psnr:.2f} dB")
    assert worst_psnr >= 45, f"worst PSNR {worst_psnr:.2f} dB against FFmpeg's own decode"


def test_latest_image_unary_style(live_pattern, consumer):
    channel = support.consumer_channel(live_pattern.server.address)
    unary = channel.unary_unary(support.LATEST_IMAGE_PATH,
                                request_serializer=image_pb.VideoFrameRequest.SerializeToString,
                                response_deserializer=image_pb.VideoFrame.FromString)
    request = image_pb.VideoFrameRequest(device_id=live_pattern.device)
    frames = [unary(request, timeout=support.CALL_TIMEOUT) for _ in range(10)]
    channel.close()
    got = [f for f in frames if not is_empty(f)]
    assert got, "ten unary calls on a 30 fps device returned only empty frames"
    for frame in got:
        assert_well_formed_image(frame, 320, 240, live_pattern.device)


def test_latest_image_stream_with_one_request(live_pattern, consumer):
    stub = consumer(live_pattern.server.address)
    call = stub.VideoLatestImage(iter([image_pb.VideoFrameRequest(device_id=live_pattern.device)]),
                                 timeout=support.CALL_TIMEOUT)
    answers = list(call)
    assert call.code() == grpc.StatusCode.OK
    assert len(answers) == 1, "exactly one VideoFrame for the one request"
    if not is_empty(answers[0]):
        assert_well_formed_image(answers[0], 320, 240, live_pattern.device)


def test_latest_image_stream_with_several_requests(live_pattern, consumer):
    stub = consumer(live_pattern.server.address)
    requests = [image_pb.VideoFrameRequest(device_id=live_pattern.device) for _ in range(3)]
    call = stub.VideoLatestImage(iter(requests), timeout=support.CALL_TIMEOUT)
    answers = list(call)  # ends without an exception only if the status is OK
    assert call.code() == grpc.StatusCode.OK
    assert len(answers) == 3, "exactly one VideoFrame per request"
    got = [f for f in answers if not is_empty(f)]
    assert got, "three requests on a 30 fps device returned only empty frames"
    assert strictly_increasing([f.packet for f in got]), "one stream never gets the same frame twice"


def test_latest_image_answers_each_request_before_half_close(live_pattern, consumer):
    stub = consumer(live_pattern.server.address)
    pending = []
    ready = threading.Condition()

    def requests():
        # Hands out requests one at a time, as the test releases them; None ends the stream (half-close).
        while True:
            with ready:
                ready.wait_for(lambda: pending, timeout=support.CALL_TIMEOUT)
                item = pending.pop(0) if pending else None
            if item is None:
                return
            yield item

    def release(item):
        with ready:
            pending.append(item)
            ready.notify()

    call = stub.VideoLatestImage(requests(), timeout=support.CALL_TIMEOUT)
    request = image_pb.VideoFrameRequest(device_id=live_pattern.device)
    release(request)
    first = next(call)  # must come while the stream is still open
    release(request)
    second = next(call)
    release(None)
    assert list(call) == [], "no extra answers after the last request"
    assert call.code() == grpc.StatusCode.OK
    for frame in (first, second):
        if not is_empty(frame):
            assert_well_formed_image(frame, 320, 240, live_pattern.device)


def test_two_consumers_get_frames_independently(live_pattern):
    results = {}

    def consume(name):
        channel = support.consumer_channel(live_pattern.server.address)  # separate connections, like processes
        stub = support.image_grpc.ImageStub(channel)
        results[name] = [(f.packet, f.pts) for f in collect_frames(stub, live_pattern.device, seconds=2.5)]
        channel.close()

    threads = [threading.Thread(target=consume, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    a, b = results["a"], results["b"]
    for name, frames in results.items():
        assert len(frames) >= 20, f"consumer {name} got only {len(frames)} frames in 2.5 s of 30 fps"
        assert len(set(frames)) == len(frames), f"consumer {name} got a frame twice"
        assert strictly_increasing([packet for packet, _ in frames]), f"consumer {name}: packets go back"
    # With one shared cursor the two would split the frames between them and see almost none in common.
    shared = set(a) & set(b)
    assert len(shared) >= min(len(a), len(b)) // 2, f"only {len(shared)} frames in common of {len(a)}, {len(b)}"


@pytest.mark.parametrize("source", [["--test-pattern", "--size", "1920x1080", "--fps", "10"],
                                    ["--synthetic", "1920x1080"]], ids=["test-pattern", "synthetic"])
def test_1080p_frames_fit_a_50mb_consumer(server, start_client, consumer, source):
    start_client(server.address, "big-cam", *source)
    stub = consumer(server.address)
    frames = [wait_for_frame(stub, "big-cam", timeout=20)]
    frames += collect_frames(stub, "big-cam", seconds=5, until=lambda got: len(got) >= 3)
    assert len(frames) >= 4, f"only {len(frames)} 1080p frames in 5 s"
    for frame in frames:
        assert_well_formed_image(frame, 1920, 1080, "big-cam")
        assert len(frame.data) == 6_220_800
    assert strictly_increasing([f.packet for f in frames])


def test_unknown_device_is_not_found(server, consumer):
    stub = consumer(server.address)
    with pytest.raises(grpc.RpcError) as latest:
        latest_image(stub, "no-such-cam")
    assert latest.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-cam" in latest.value.details()
    with pytest.raises(grpc.RpcError) as probe:
        stub.VideoProbe(image_pb.VideoProbeRequest(device_id="no-such-cam"), timeout=support.CALL_TIMEOUT)
    assert probe.value.code() == grpc.StatusCode.NOT_FOUND


def test_no_new_frame_gives_empty_frame_with_ok(server, start_client, consumer):
    client = start_client(server.address, "short-cam", *PATTERN_ARGS, "--frames", "30")
    stub = consumer(server.address)
    wait_for_frame(stub, "short-cam")
    client.process.wait(15)
    assert client.process.returncode == 0
    summary = client_summary(client)
    assert summary["frames_sent"] == summary["frames_acked"] == 30

    # Drain whatever this consumer has not seen yet; then the answers must be empty, and quick.
    deadline = time.monotonic() + 5
    while not is_empty(latest_image(stub, "short-cam")):
        assert time.monotonic() < deadline, "frames kept coming after the client stopped"
    for _ in range(3):
        started = time.monotonic()
        frame = latest_image(stub, "short-cam")
        elapsed = time.monotonic() - started
        assert is_empty(frame), "the same frame was delivered twice, or a frame appeared from nowhere"
        assert frame == image_pb.VideoFrame(), "an empty answer has no fields set"
        assert elapsed < 1.0, f"an empty answer took {elapsed:.3f}s; the wait for a new frame is ~48 ms"


def test_video_probe(live_pattern, consumer):
    stub = consumer(live_pattern.server.address)
    time.sleep(1)  # a second of frames in the buffer, so the rate estimate has something to go on
    probe = stub.VideoProbe(image_pb.VideoProbeRequest(device_id=live_pattern.device),
                            timeout=support.CALL_TIMEOUT)
    codec, buffer = probe.video_codec, probe.buffer
    assert (codec.name, codec.width, codec.height, codec.pix_fmt) == ("h264", 320, 240, "yuv420p")
    assert codec.extradata_size == len(codec.extradata)
    now = now_ms()
    assert buffer.start_time <= buffer.end_time
    assert abs(buffer.end_time - now) < 5000, "buffer times are ms since the Unix epoch, server clock"
    assert now - buffer.start_time < 60_000
    assert buffer.frames > 0
    assert 15 <= buffer.approximate_fps <= 45, f"approximate_fps {buffer.approximate_fps} for a 30 fps source"


def test_system_time_is_epoch_milliseconds(server, consumer):
    stub = consumer(server.address)
    before = now_ms()
    current = stub.SystemTime(image_pb.SystemTimeRequest(), timeout=support.CALL_TIMEOUT).current_time
    after = now_ms()
    assert before - 1000 <= current <= after + 1000, (before, current, after)


def test_health_check_serving(server):
    with grpc.insecure_channel(server.address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                           timeout=support.CALL_TIMEOUT)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_consumers_sharing_a_channel_name_themselves_with_x_consumer_id(server, consumer, annexb_clip):
    # One GOP, then nothing new: whoever already got the newest frame gets an empty answer.
    session = support.PublishSession(server.address)
    session.handshake(support.h264_hello("shared-channel"))
    gop = annexb_clip.units[:30]
    for index, (data, keyframe) in enumerate(gop):
        session.send(support.frame_request(index + 1, data, index, keyframe))
    assert [session.next_message().ack.sequence for _ in gop] == list(range(1, 31))
    stub = consumer(server.address)  # one channel for every call below

    def latest(consumer_id=None):
        metadata = (("x-consumer-id", consumer_id),) if consumer_id else None
        request = image_pb.VideoFrameRequest(device_id="shared-channel")
        return next(iter(stub.VideoLatestImage(iter([request]), metadata=metadata, timeout=10)))

    first_a = latest("thread-a")
    assert not is_empty(first_a)
    first_b = latest("thread-b")
    assert not is_empty(first_b), "another named consumer on the same channel has a cursor of its own"
    assert first_b.packet == first_a.packet
    assert is_empty(latest("thread-a")), "a named consumer never gets the same frame twice"
    # Without a name the connection is the consumer, as before.
    assert not is_empty(latest())
    assert is_empty(latest())
    session.close()
