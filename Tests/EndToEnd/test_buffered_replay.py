"""VideoBufferedImage: frames decoded from the device's ring for a time range (ms, server clock),
compared with FFmpeg's own decode of the file the client published."""
import threading
import time

import grpc
import numpy
import pytest

import support
from support import image_of, image_pb, now_ms

pytestmark = pytest.mark.binaries


def replay(stub, device, start, end, timeout=30):
    return list(stub.VideoBufferedImage(
        image_pb.VideoFrameBufferedRequest(device_id=device, timestamp_from=start, timestamp_to=end),
        timeout=timeout))


@pytest.fixture
def published_clip(server, start_client, consumer, h264_mp4):
    """The 90-frame clip published in real time (3 s) and fully acked; returns (stub, probe)."""
    client = start_client(server.address, "clip", "--file", h264_mp4.path)
    assert client.process.wait(30) == 0, "relay-client sends the whole file and exits"
    stub = consumer(server.address)
    probe = stub.VideoProbe(image_pb.VideoProbeRequest(device_id="clip"), timeout=5)
    assert probe.buffer.frames == 90
    return stub, probe


def assert_pixels_match_ffmpeg(frames, clip):
    for frame in frames:
        index = clip.index_of_pts[frame.pts]
        assert numpy.array_equal(image_of(frame), clip.frames[index]), f"pts {frame.pts} differs from FFmpeg"


def test_whole_buffer_replays_every_frame_in_order(published_clip, h264_mp4):
    stub, probe = published_clip
    frames = replay(stub, "clip", 0, probe.buffer.end_time)  # from = 0: the start of the buffer
    assert len(frames) == 90, "none skipped"
    assert sorted(f.packet for f in frames) == list(range(1, 91))
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == 90, "presentation order, no duplicates"
    assert all(probe.buffer.start_time <= f.timestamp <= probe.buffer.end_time for f in frames)
    assert_pixels_match_ffmpeg(frames, h264_mp4)


def test_a_middle_range_starts_decoding_at_the_keyframe_before_it(published_clip, h264_mp4):
    stub, probe = published_clip
    everything = replay(stub, "clip", 0, probe.buffer.end_time)
    by_packet = sorted(everything, key=lambda f: f.packet)
    start, end = by_packet[40].timestamp, by_packet[50].timestamp  # inside the second GOP (keyframe 31)
    frames = replay(stub, "clip", start, end)
    expected = [f.packet for f in everything if start <= f.timestamp <= end]
    assert [f.packet for f in frames] == expected, "exactly the frames in the range, in order"
    assert 31 not in {f.packet for f in frames}, "the keyframe before the range is decoded, not sent"
    assert all(start <= f.timestamp <= end for f in frames), "none outside the range"
    # P- and B-frames decode to FFmpeg's pixels only if decoding began at their GOP's keyframe.
    assert_pixels_match_ffmpeg(frames, h264_mp4)


def test_range_errors_and_empty_ranges(published_clip, server, consumer):
    stub, probe = published_clip
    with pytest.raises(grpc.RpcError) as backwards:
        replay(stub, "clip", probe.buffer.end_time, probe.buffer.start_time)
    assert backwards.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "timestamp_from" in backwards.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        replay(stub, "nobody", 0, now_ms())
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    future = now_ms() + 3_600_000
    assert replay(stub, "clip", future, future + 1000) == [], "a range with nothing in it: zero frames, OK"


def test_slow_cancelling_and_concurrent_replays(published_clip, h264_mp4):
    stub, probe = published_clip
    end = probe.buffer.end_time
    results = {}

    def slow():
        frames = []
        for frame in stub.VideoBufferedImage(
                image_pb.VideoFrameBufferedRequest(device_id="clip", timestamp_from=0, timestamp_to=end), timeout=60):
            frames.append(frame)
            time.sleep(0.02)  # the consumer sets the pace
        results["slow"] = frames

    def cancelling():
        call = stub.VideoBufferedImage(
            image_pb.VideoFrameBufferedRequest(device_id="clip", timestamp_from=0, timestamp_to=end), timeout=60)
        taken = [next(call), next(call)]
        call.cancel()
        results["cancelled"] = taken

    threads = [threading.Thread(target=slow), threading.Thread(target=cancelling)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results["slow"]) == 90
    assert_pixels_match_ffmpeg(results["slow"], h264_mp4)
    assert len(results["cancelled"]) == 2
    # The server is unharmed: another replay runs to the end.
    assert len(replay(stub, "clip", 0, end)) == 90


def test_a_looped_file_is_published_as_the_same_frames_round_after_round(server, start_client, consumer, h264_mp4):
    """--loop goes back to the file's start at its end (MediaInput.rewind): three rounds of the 90-frame clip,
    timestamps increasing across rounds, each round decoding to the same pictures as FFmpeg's."""
    client = start_client(server.address, "looped", "--file", h264_mp4.path, "--loop", "--pace", "fast",
                          "--frames", "270")
    assert client.process.wait(30) == 0, client.tail(lines=10)
    stub = consumer(server.address)
    probe = stub.VideoProbe(image_pb.VideoProbeRequest(device_id="looped"), timeout=5)
    assert probe.buffer.frames == 270
    frames = replay(stub, "looped", 0, probe.buffer.end_time)
    assert sorted(f.packet for f in frames) == list(range(1, 271)), "every frame of every round"
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == 270, "pts keep increasing from round to round"
    first = [f for f in frames if f.packet <= 90]
    assert_pixels_match_ffmpeg(first, h264_mp4)
    pictures = {f.packet: image_of(f) for f in frames}
    for packet in range(91, 271):
        assert numpy.array_equal(pictures[packet], pictures[(packet - 1) % 90 + 1]), f"packet {packet}"
