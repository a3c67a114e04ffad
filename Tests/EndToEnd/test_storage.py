"""Storage (recording): relay-server writes a device's packets, as received, into fragmented MP4 segments
under DATA/recordings/<device>/<YYYYMMDDTHHMMSS.mmmZ>.mp4; checked with ffprobe and FFmpeg's own decode,
plus segmenting, retention, a full disk, and VideoBufferedImage reading from the recordings.
Real processes on loopback."""
import datetime
import json
import os
import re
import subprocess
import time
import urllib.request

import grpc
import numpy
import pytest

import support
from support import (PublishSession, assert_well_formed_image, frame_request, h264_hello, image_of, image_pb,
                     now_ms, wait_for_frame, wait_for_status)

pytestmark = pytest.mark.binaries

PATTERN = ["--test-pattern", "--size", "320x240", "--fps", "30"]  # relay-client: a keyframe every second
SEGMENT_NAME = re.compile(r"^(\d{8}T\d{6}\.\d{3})Z\.mp4$")


# ---------------------------------------------------------------- helpers

class GopClip:
    """Annex-B H.264, 320x240, 60 frames at 30 fps, an IDR every 10 frames, no B-frames (pts = index)."""

    GOP = 10

    def __init__(self, path):
        self.width, self.height = 320, 240
        self.units = support.split_access_units(path.read_bytes())
        self.frames = support.ffmpeg_bgr24_frames(path, self.width, self.height, input_format="h264")
        assert len(self.units) == len(self.frames) == 60


@pytest.fixture(scope="module")
def gop10_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "testsrc2-gop10.h264"
    support.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
                 "-frames:v", "60", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-keyint_min", "10",
                 "-sc_threshold", "0", "-bf", "0", "-bsf:v", "h264_mp4toannexb", "-x264-params", "aud=1",
                 "-f", "h264", path])
    clip = GopClip(path)
    keyframes = [index for index, (_, key) in enumerate(clip.units) if key]
    assert keyframes == list(range(0, 60, 10)), f"unexpected keyframe positions {keyframes}"
    return clip


def start_relay(start_server, data_dir, *args):
    """relay-server with its data in data_dir and metrics on; returns (server, metrics address)."""
    server = start_server("--data-dir", data_dir, "--metrics-listen", "127.0.0.1:0", *args)
    return server, server.metrics_address


def metric(address, name, device=None):
    """The value of `name{device="..."}` (or unlabelled `name`) on GET /metrics; None when it is not shown."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    labels = r'\{device="' + re.escape(device) + r'"\}' if device else r"(?:\{\})?"
    match = re.search(r"^" + re.escape(name) + labels + r"\s+(\S+)\s*$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def storage(stub, device, start):
    return stub.Storage(image_pb.StorageRequest(device_id=device, start=start), timeout=support.CALL_TIMEOUT)


def recordings_dir(data_dir, device):
    return data_dir / "recordings" / device


def segments(data_dir, device):
    """The device's segment files whose names match the pattern, in name order."""
    directory = recordings_dir(data_dir, device)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if SEGMENT_NAME.match(p.name))


def start_time(segment):
    """The UTC start time a segment's name carries."""
    stamp = SEGMENT_NAME.match(segment.name).group(1)
    return datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%S.%f").replace(tzinfo=datetime.timezone.utc)


def ms_since_epoch(moment):
    return int(moment.timestamp() * 1000)


def probe_segment(path):
    """(codec, width, height, decoded frame count) of an MP4 segment, by ffprobe -count_frames."""
    out = support.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                       "stream=codec_name,width,height,nb_read_frames", "-of", "json", path]).stdout
    streams = json.loads(out)["streams"]
    assert len(streams) == 1, f"{path.name}: {len(streams)} video streams"
    s = streams[0]
    return s["codec_name"], s["width"], s["height"], int(s["nb_read_frames"])


def assert_plays_cleanly(path):
    """FFmpeg decodes the whole segment without a single error message."""
    result = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:v:0", "-f", "null", "-"],
                            capture_output=True, timeout=60)
    complaints = result.stderr.decode(errors="replace").strip()
    assert result.returncode == 0 and not complaints, f"{path.name} does not decode cleanly: {complaints}"


def send_frames(session, clip, first, end, window):
    """Sends clip units first..end-1 as sequences first+1..end with pts = index; waits for every ack."""
    acks = []
    sent = first
    while len(acks) < end - first:
        while sent < end and sent - first - len(acks) < window:
            data, keyframe = clip.units[sent]
            session.send(frame_request(sent + 1, data, sent, keyframe))
            sent += 1
        answer = session.next_message()
        assert answer.WhichOneof("message") == "ack", f"expected an ack, got {answer}"
        acks.append(answer.ack.sequence)
    assert acks == list(range(first + 1, end + 1)), "one ack per frame, in order"


def record_pattern(stub, seconds, device="cam", watch=None):
    """Storage(start) for `seconds` (calling watch() every 0.2 s meanwhile), then Storage(stop)."""
    answer = storage(stub, device, True)
    assert (answer.device_id, answer.start) == (device, True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if watch:
            watch()
        time.sleep(0.2)
    answer = storage(stub, device, False)
    assert (answer.device_id, answer.start) == (device, False)


def replay(stub, device, start, end, timeout=30):
    return list(stub.VideoBufferedImage(
        image_pb.VideoFrameBufferedRequest(device_id=device, timestamp_from=start, timestamp_to=end),
        timeout=timeout))


# ---------------------------------------------------------------- statuses

@pytest.mark.parametrize("device_id", ["", "bad id", "../x", "-cam", "a" * 65],
                         ids=["missing", "space", "dot-dot-slash", "leading-dash", "65-chars"])
def test_bad_device_id_is_invalid_argument(start_server, consumer, tmp_path, device_id):
    server = start_server("--data-dir", tmp_path / "data")
    stub = consumer(server.address)
    for start in (True, False):
        with pytest.raises(grpc.RpcError) as error:
            storage(stub, device_id, start)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, \
            f"Storage({device_id!r}, {start}): {error.value.code()}: {error.value.details()}"
    assert not (tmp_path / "data" / "recordings").exists() or not any((tmp_path / "data" / "recordings").iterdir())


def test_unknown_device_is_not_found(start_server, consumer, tmp_path):
    server = start_server("--data-dir", tmp_path / "data")
    stub = consumer(server.address)
    for start in (True, False):
        with pytest.raises(grpc.RpcError) as error:
            storage(stub, "nobody", start)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND, \
            f"Storage('nobody', {start}): {error.value.code()}: {error.value.details()}"


# ---------------------------------------------------------------- what gets recorded

def test_recording_holds_exactly_the_frames_acked_between_start_and_stop(start_server, consumer, tmp_path,
                                                                         gop10_clip):
    clip, gop = gop10_clip, GopClip.GOP
    data = tmp_path / "data"
    server, metrics = start_relay(start_server, data)
    stub = consumer(server.address)
    session = PublishSession(server.address)
    try:
        accepted = session.handshake(h264_hello("cam"))
        send_frames(session, clip, 0, gop, accepted.window)  # GOP 1: before the recording

        started = now_ms()
        for _ in range(2):  # idempotent
            answer = storage(stub, "cam", True)
            assert (answer.device_id, answer.start) == ("cam", True)
        send_frames(session, clip, gop, 4 * gop, accepted.window)  # GOPs 2..4: recorded
        sent = now_ms()
        for _ in range(2):  # idempotent; the segment is closed before the first answer
            answer = storage(stub, "cam", False)
            assert (answer.device_id, answer.start) == ("cam", False)
        send_frames(session, clip, 4 * gop, 6 * gop, accepted.window)  # GOPs 5..6: after the stop
        time.sleep(1)  # anything wrongly recorded after the stop has time to reach the disk
        # Asked while the publisher is still connected (closing the session sets an error of its own).
        assert support.list_streams(stub)["cam"].error == "", "no error after a clean recording"
    finally:
        session.close()

    directory = recordings_dir(data, "cam")
    files = sorted(p.name for p in directory.iterdir())
    assert files, f"no recording in {directory}"
    unexpected = [name for name in files if not SEGMENT_NAME.match(name)]
    assert not unexpected, f"files that are not closed segments: {unexpected}"
    recorded = segments(data, "cam")
    starts = [start_time(s) for s in recorded]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), "names sort by start time"
    assert started - 1000 <= ms_since_epoch(starts[0]) <= sent + 1000, \
        f"the first segment starts at {starts[0]}, not between the Storage call and the last recorded frame"

    expected = clip.frames[gop:4 * gop]
    total = 0
    decoded = []
    for segment in recorded:
        codec, width, height, count = probe_segment(segment)
        assert (codec, width, height) == ("h264", 320, 240), segment.name
        total += count
        decoded += support.ffmpeg_bgr24_frames(segment, 320, 240)
    assert total == len(expected) == 3 * gop, \
        f"ffprobe counts {total} frames in {len(recorded)} segment(s); {3 * gop} were acked while recording"
    assert len(decoded) == len(expected)
    first = support.ffprobe_frames(recorded[0])[0]
    assert first[2], "a recording starts at a keyframe"
    for index, (got, reference) in enumerate(zip(decoded, expected)):
        assert numpy.array_equal(got, reference), \
            f"recorded frame {index} (source frame {gop + index}) differs from FFmpeg's decode of the source"

    assert metric(metrics, "framerelay_recording_on", "cam") == 0
    assert metric(metrics, "framerelay_recording_frames_total", "cam") == 3 * gop
    assert metric(metrics, "framerelay_recording_errors_total", "cam") in (0, None)
    assert metric(metrics, "framerelay_recording_bytes") == sum(p.stat().st_size for p in recorded)


def test_segments_start_at_keyframes_every_segment_seconds(start_server, start_client, consumer, tmp_path):
    data = tmp_path / "data"
    server, metrics = start_relay(start_server, data, "--record-segment-seconds", "1")
    client = start_client(server.address, "cam", *PATTERN)
    stub = consumer(server.address)
    wait_for_frame(stub, "cam")

    record_pattern(stub, 6.5)
    assert client.stop() == 0

    recorded = segments(data, "cam")
    names = sorted(p.name for p in recordings_dir(data, "cam").iterdir())
    assert [p.name for p in recorded] == names, f"files that are not closed segments: {names}"
    assert len(recorded) >= 3, f"6.5 s with 1 s segments (1 s GOPs) made only {len(recorded)} segment(s)"
    starts = [start_time(s) for s in recorded]
    for earlier, later in zip(starts, starts[1:]):
        gap = (later - earlier).total_seconds()
        assert 0.9 <= gap <= 3.5, f"segments start {gap:.3f} s apart ({earlier} -> {later}); asked for 1 s"

    total = 0
    for segment in recorded:
        codec, width, height, count = probe_segment(segment)
        assert (codec, width, height) == ("h264", 320, 240), segment.name
        assert count > 0, f"{segment.name} holds no frame"
        assert support.ffprobe_frames(segment)[0][2], f"{segment.name} does not start at a keyframe"
        assert_plays_cleanly(segment)
        total += count
    # Recording begins at the first keyframe after the call (up to 1 s later) and runs 6.5 s at 30 fps.
    assert 5 * 30 * 0.85 <= total <= 6.5 * 30 * 1.1, f"{total} frames recorded in about 6.5 s at 30 fps"
    assert metric(metrics, "framerelay_recording_frames_total", "cam") == total, \
        "every recorded frame is in exactly one segment"
    assert metric(metrics, "framerelay_recording_bytes") == sum(p.stat().st_size for p in recorded)


@pytest.mark.parametrize("bound", ["max-bytes", "max-age"])
def test_retention_deletes_the_oldest_segments(start_server, start_client, consumer, tmp_path, bound):
    data = tmp_path / "data"
    max_bytes, max_age = 250_000, 2  # the 320x240 pattern makes about 100 kB a second
    limit = ["--record-max-bytes", str(max_bytes)] if bound == "max-bytes" else \
        ["--record-max-age-seconds", str(max_age)]
    server, metrics = start_relay(start_server, data, "--record-segment-seconds", "1", *limit)
    client = start_client(server.address, "cam", *PATTERN)
    stub = consumer(server.address)
    wait_for_frame(stub, "cam")

    seen = {}  # name -> largest size seen while recording

    def watch():
        for segment in segments(data, "cam"):
            try:
                seen[segment.name] = max(seen.get(segment.name, 0), segment.stat().st_size)
            except FileNotFoundError:
                pass  # deleted between listing and stat
    record_pattern(stub, 7, watch=watch)
    stopped = datetime.datetime.now(datetime.timezone.utc)
    assert client.stop() == 0

    remaining = segments(data, "cam")
    names = [p.name for p in remaining]
    sizes = [p.stat().st_size for p in remaining]
    seen_names = sorted(set(seen) | set(names))
    deleted = [name for name in seen_names if name not in names]
    assert len(seen_names) >= 4, f"7 s with 1 s segments made only {seen_names}"
    assert remaining, "retention deleted every segment, even the newest"
    assert deleted, f"nothing was deleted; segments {seen_names}, sizes {sizes}"
    assert max(deleted) < min(names), f"not the oldest were deleted: deleted {deleted}, kept {names}"
    if bound == "max-bytes":
        assert sum(seen.values()) > max_bytes, "the recording should have outgrown the bound"
        assert sum(sizes) <= max_bytes, f"{sum(sizes)} bytes of segments kept with --record-max-bytes {max_bytes}"
    else:
        oldest_kept = (stopped - start_time(remaining[0])).total_seconds()
        # Checked when a segment closes (about every second): a kept segment began at most age + a segment
        # length + a check interval (plus slack) before the stop.
        assert oldest_kept <= max_age + 3.5, \
            f"a segment that began {oldest_kept:.1f} s before the stop is kept with --record-max-age-seconds {max_age}"
    for segment in remaining:
        assert probe_segment(segment)[3] > 0, f"{segment.name} holds no frame"
    assert metric(metrics, "framerelay_recording_bytes") == sum(sizes), "the metric counts what is on disk"


# ---------------------------------------------------------------- a full disk

@pytest.fixture
def tiny_tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a 1 MiB tmpfs as the data directory (run the tests as root)")
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mountpoint)],
                            capture_output=True, timeout=10)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode(errors='replace').strip()}")
    yield mountpoint
    # The test stops its processes before this; an unmount that still finds the mount busy detaches it.
    if subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=10).returncode != 0:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=10)


def test_full_disk_stops_the_recording_but_not_ingest(tiny_tmpfs, start_server, start_client, consumer):
    server, metrics = start_relay(start_server, tiny_tmpfs)
    # 640x480 at 30 fps is some 300 kB a second: the 1 MiB tmpfs is full within a few seconds.
    client = start_client(server.address, "cam", "--test-pattern", "--size", "640x480", "--fps", "30")
    try:
        stub = consumer(server.address)
        wait_for_frame(stub, "cam")
        assert storage(stub, "cam", True).start

        entry = wait_for_status(stub, "cam", lambda s: s.error.startswith("recording stopped:"), timeout=30)
        assert len(entry.error) > len("recording stopped:") + 1, f"the error should say why: {entry.error!r}"
        stopped_at = now_ms()
        assert metric(metrics, "framerelay_recording_errors_total", "cam") >= 1
        assert metric(metrics, "framerelay_recording_on", "cam") == 0, "the recording stopped"
        log = server.process.stderr()
        assert any("cam" in line and "record" in line.lower() for line in log.splitlines()), \
            f"no log line about the device's recording error:\n{support.tail(log)}"

        # Ingest goes on: new frames are acked, stored and decoded after the recording stopped.
        stored = metric(metrics, "framerelay_frames_stored_total", "cam")
        first = wait_for_frame(stub, "cam")
        time.sleep(1.5)
        later = wait_for_frame(stub, "cam")
        assert later.packet > first.packet and later.timestamp > stopped_at, \
            f"no new frame after the recording stopped (packets {first.packet} -> {later.packet})"
        assert metric(metrics, "framerelay_frames_stored_total", "cam") > stored
        entry = support.list_streams(stub)["cam"]
        assert entry.running and not entry.dead, entry
        assert entry.error.startswith("recording stopped:"), f"the error went away: {entry.error!r}"
        assert client.alive() and server.process.alive()

        # What was written before the disk filled is fragmented MP4: its complete fragments play.
        recorded = segments(tiny_tmpfs, "cam")
        assert recorded, "no segment was written before the disk filled"
        assert probe_segment(recorded[0])[3] > 0, f"{recorded[0].name} holds no playable frame"
    finally:
        client.stop()
        server.process.stop()


# ---------------------------------------------------------------- VideoBufferedImage from recordings

def test_buffered_image_reads_recordings_before_the_ring(start_server, start_client, consumer, tmp_path):
    data = tmp_path / "data"
    server, _ = start_relay(start_server, data, "--ring-max-seconds", "2")
    client = start_client(server.address, "cam", *PATTERN)
    stub = consumer(server.address)
    wait_for_frame(stub, "cam")

    recording_from = now_ms()
    assert storage(stub, "cam", True).start
    time.sleep(6.5)
    assert client.stop() == 0, "the client stops; the ring keeps its last 2 s"
    assert not storage(stub, "cam", False).start
    probe = stub.VideoProbe(image_pb.VideoProbeRequest(device_id="cam"), timeout=support.CALL_TIMEOUT)
    ring_start, ring_end = probe.buffer.start_time, probe.buffer.end_time
    assert ring_end - ring_start <= 2500, f"--ring-max-seconds 2 holds {ring_end - ring_start} ms"
    assert ring_start - recording_from >= 3500, "the recording reaches well before the ring"

    def check(frames, start, end, what):
        expected = (end - start) / 1000 * 30
        assert 0.75 * expected <= len(frames) <= 1.25 * expected, \
            f"{what}: {len(frames)} frames in {end - start} ms of a 30 fps device"
        stamps = [f.timestamp for f in frames]
        outside = [t for t in stamps if not start <= t <= end]
        assert not outside, f"{what}: timestamps outside [{start}, {end}]: {outside[:5]}"
        assert all(a < b for a, b in zip(stamps, stamps[1:])), f"{what}: timestamps not increasing: {stamps}"
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        assert max(gaps) <= 250, f"{what}: a {max(gaps)} ms hole in a 30 fps stream"
        for frame in frames:
            assert_well_formed_image(frame, 320, 240, "cam")
            assert frame.codec_name == "h264"
            assert not frame.is_corrupt, f"{what}: corrupt frame at {frame.timestamp}"

    # Entirely before the ring: only the recording has these frames.
    start, end = recording_from + 1500, ring_start - 300
    older = replay(stub, "cam", start, end)
    check(older, start, end, "recording only")
    pts = [f.pts for f in older]
    assert all(a < b for a, b in zip(pts, pts[1:])), "presentation order"

    # Across the ring's start: the recording first, then the ring, nothing twice and no hole at the seam.
    start, end = ring_start - 1000, ring_start + 1000
    across = replay(stub, "cam", start, end)
    check(across, start, end, "recording then ring")
    from_ring = replay(stub, "cam", ring_start, end)
    tail = [f for f in across if f.timestamp >= ring_start]
    assert [(f.timestamp, f.pts) for f in tail] == [(f.timestamp, f.pts) for f in from_ring], \
        "the part of the range the ring covers comes from the ring"
    for a, b in zip(tail, from_ring):
        assert numpy.array_equal(image_of(a), image_of(b)), f"frame at {a.timestamp} differs between calls"
