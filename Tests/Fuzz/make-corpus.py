#!/usr/bin/env python3
"""Writes the seed corpora under Tests/Fuzz/Corpus/<harness>/ (small, committed; < 200 KB in all).

Run from the repository root with the venv (the Python stubs come from scripts/generate-python-stubs.sh):
    .venv/bin/python Tests/Fuzz/make-corpus.py
Each seed is in the harness's input format (see the comment at the top of each harness); messages
are separated by MSG, calls by CALL (FuzzSupport's Fuzz.messageSeparator / callSeparator).
"""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "build", "python"))

from framerelay.v1 import relay_pb2 as fr  # noqa: E402
from ava import extension_pb2 as ava  # noqa: E402
from ava import media_pb2 as ava_media  # noqa: E402
from simple import video_pb2 as simple  # noqa: E402
from chrysalis import video_streaming_pb2 as chrys  # noqa: E402

MSG = bytes([0xF7, 0x19, 0xF7, 0x19])
CALL = bytes([0xF7, 0x19, 0xF7, 0x1A])
CORPUS = os.path.join(ROOT, "Tests", "Fuzz", "Corpus")


def write(harness, name, data):
    folder = os.path.join(CORPUS, harness)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def calls(*calls):
    return CALL.join(MSG.join(m.SerializeToString() if hasattr(m, "SerializeToString") else m for m in call) for call in calls)


def ffmpeg_packets(args, suffix):
    """Packets of a short ffmpeg-made stream, as ffprobe sees them: [(keyframe, bytes)]."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stream" + suffix)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args, path], check=True)
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_packets", "-show_data", "-of", "json", path],
            check=True, capture_output=True, text=True).stdout
    packets = []
    for packet in json.loads(out)["packets"]:
        hexdigits = "".join(re.findall(r"^[0-9a-f]{8}: ((?:[0-9a-f]{2,4} ?)+)", packet["data"], re.M))
        packets.append((packet["flags"].startswith("K"), bytes.fromhex(hexdigits.replace(" ", ""))))
    return packets


# --- native -------------------------------------------------------------------------------------

def hello(device="cam1", session="s1", name="h264", width=64, height=48, pix_fmt="yuv420p", extradata=b""):
    return fr.PublishRequest(hello=fr.Hello(
        device_id=device, session_id=session, source_kind=fr.SOURCE_KIND_TEST_PATTERN, source="test",
        client=fr.ClientInfo(host="edge", pid=7, version="1"), client_time_ms=1_700_000_000_000,
        codec=fr.CodecDescription(name=name, width=width, height=height, pix_fmt=pix_fmt, extradata=extradata,
                                  time_base_num=1, time_base_den=90000, frame_rate=30)))


def frame(sequence, key=False, data=b"\x00\x00\x00\x01\x65\x88", capture=0):
    return fr.PublishRequest(frame=fr.Frame(sequence=sequence, data=data, pts=sequence * 3000, dts=sequence * 3000,
                                            keyframe=key, capture_time_ms=capture))


def native():
    write("native", "frames", calls([hello()] + [frame(i, key=i == 1) for i in range(1, 6)]))
    write("native", "drop-then-keyframe", calls([
        hello(), frame(1, key=True), frame(2),
        fr.PublishRequest(frames_dropped=fr.FramesDropped(first=3, last=9)), frame(10, key=True), frame(11),
        fr.PublishRequest(frames_dropped=fr.FramesDropped(first=12, last=12, stored_elsewhere=True)), frame(13, key=True)]))
    write("native", "clock-and-status", calls([
        hello(), fr.PublishRequest(clock_sync=fr.ClockSync(offset_ms=-250, round_trip_ms=3)),
        frame(1, key=True, capture=1_700_000_000_100), frame(2, capture=1_700_000_000_133),
        fr.PublishRequest(capture_status=fr.CaptureStatus(state=fr.CaptureStatus.STATE_RECONNECTING,
                                                          last_error="rtsp timeout", failing_streak=2)),
        frame(3, capture=1_700_000_000_166)]))
    write("native", "resume-same-session", calls(
        [hello(session="run-a"), frame(1, key=True), frame(2), frame(3)],
        [hello(session="run-a"), frame(4), frame(5, key=True)],
        [hello(session="run-b"), frame(1, key=True)]))
    write("native", "raw-and-errors", calls(
        [hello(device="raw.cam-2", name="rawvideo", width=4, height=2, pix_fmt="gray"),
         frame(1, key=True, data=bytes(8)), frame(1, key=True, data=bytes(8)), frame(3, data=bytes(8))],
        [frame(1)],
        [hello(device="-bad")],
        [hello(), hello()]))


# --- AVA ----------------------------------------------------------------------------------------

SHM = "framerelay-fuzz-ava"
JPEG_BYTES = 421  # the JPEG at offset 0 of the harness's shared memory


def descriptor(encoding, pixel_format=0, width=16, height=16, stride=0, shm=False, configuration="", graph=None):
    d = ava.MediaStreamDescriptor(extension_configuration=configuration)
    if graph:
        d.graph_identifier.graph_instance_name = graph
    d.media_descriptor.timescale = 90000
    fmt = d.media_descriptor.video_frame_sample_format
    fmt.encoding = encoding
    fmt.pixel_format = pixel_format
    fmt.dimensions.width = width
    fmt.dimensions.height = height
    fmt.stride_bytes = stride
    if shm:
        d.shared_memory_buffer_transfer_properties.handle_name = SHM
        d.shared_memory_buffer_transfer_properties.length_bytes = 64 << 10
    return ava.MediaStreamMessage(sequence_number=1, media_stream_descriptor=d)


def sample(sequence, timestamp, content=None, offset=None, length=None):
    s = ava.MediaSample(timestamp=timestamp)
    if content is not None:
        s.content_bytes.bytes = content
    else:
        s.content_reference.address_offset = offset
        s.content_reference.length_bytes = length
    return ava.MediaStreamMessage(sequence_number=sequence, media_sample=s)


def ava_seeds():
    RAW, JPG = ava_media.VideoFrameSampleFormat.RAW, ava_media.VideoFrameSampleFormat.JPG
    BGR24 = ava_media.VideoFrameSampleFormat.BGR24
    YUV420P = ava_media.VideoFrameSampleFormat.YUV420P
    write("ava", "raw-bytes", calls([b"", descriptor(RAW, BGR24, 4, 4, configuration="cam-ava")]
                                    + [sample(i + 2, 3000 * i, content=bytes([i]) * 48) for i in range(3)]))
    write("ava", "jpeg-shared-memory", calls([b"", descriptor(JPG, 0, 16, 16, shm=True, configuration='{"device_id": "cam-7"}'),
                                              sample(2, 9000, offset=0, length=JPEG_BYTES),
                                              sample(3, 12000, offset=0, length=JPEG_BYTES),
                                              ava.MediaStreamMessage(sequence_number=4, ack_sequence_number=1)]))
    write("ava", "yuv-shared-memory", calls([b"", descriptor(RAW, YUV420P, 8, 8, shm=True, graph="graph-1"),
                                             sample(2, 0, offset=1024, length=96), sample(3, 0, offset=4096, length=96),
                                             sample(4, 0, offset=65536 - 96, length=96)]))
    write("ava", "padded-rows-and-auth", calls(
        [b"Basic ZnV6ejpmdXp6", descriptor(RAW, BGR24, 2, 2, stride=8), sample(2, 1, content=bytes(16)), sample(3, 2, content=bytes(14))],
        [b"Basic bm9wZTpub3Bl", descriptor(RAW, BGR24, 2, 2)],
        [b"", sample(1, 1, content=b"x")],
        [b"", descriptor(JPG, 0, 16, 16), sample(2, 1, offset=0, length=10)]))


# --- simple -------------------------------------------------------------------------------------

def simple_seeds():
    write("simple", "gray-frames", calls([b"cam1"] + [simple.MsgRequest(img=bytes([i]) * 24) for i in range(3)]))
    write("simple", "two-calls", calls([b""] + [simple.MsgRequest(img=bytes(24))],
                                       [b"cam1", simple.MsgRequest(img=bytes(18)), simple.MsgRequest(img=bytes(18))]))
    write("simple", "wrong-size", calls([b"bad/id", simple.MsgRequest(img=bytes(24))],
                                        [b"cam2", simple.MsgRequest(img=bytes(5))]))


# --- Image API ------------------------------------------------------------------------------------

def image_seeds():
    first = 1_700_000_000_000
    req = chrys.VideoFrameRequest
    seeds = {
        "latest": (0, 0, 1, MSG.join(req(device_id="cam1", key_frame_only=k).SerializeToString() for k in (False, True, False))),
        "latest-unknown": (0, 1, 0, req(device_id="cam2").SerializeToString() + MSG + req(device_id="nope").SerializeToString()),
        "buffered": (1, 0, 0, chrys.VideoFrameBufferedRequest(device_id="cam1", timestamp_from=first + 40, timestamp_to=first + 120).SerializeToString()),
        "buffered-open-end": (1, 1, 0, chrys.VideoFrameBufferedRequest(device_id="cam1", timestamp_from=1).SerializeToString()),
        "probe": (2, 0, 0, chrys.VideoProbeRequest(device_id="cam1").SerializeToString()),
        "probe-denied": (2, 1, 0, chrys.VideoProbeRequest(device_id="cam2").SerializeToString()),
        "list": (3, 1, 0, chrys.ListStreamRequest().SerializeToString()),
        "time": (4, 0, 0, chrys.SystemTimeRequest().SerializeToString()),
        "annotate": (5, 2, 0, chrys.AnnotateRequest(device_name="cam1", type="person", start_timestamp=first, end_timestamp=first + 40).SerializeToString()),
        "proxy": (6, 2, 0, chrys.ProxyRequest(device_id="cam1", passthrough=True).SerializeToString()),
        "storage": (7, 0, 0, chrys.StorageRequest(device_id="cam1", start=True).SerializeToString()),
        "storage-stop": (7, 0, 0, chrys.StorageRequest(device_id="cam1", start=False).SerializeToString()),
    }
    # cam3, published by the input itself: a hello's codec and one packet, then the request.
    codec = fr.CodecDescription(name="rawvideo", width=4, height=2, pix_fmt="gray", time_base_num=1, time_base_den=1000, frame_rate=25)
    seeds["cam3-probe"] = (2, 0, 2, MSG.join([codec.SerializeToString(), bytes(8), chrys.VideoProbeRequest(device_id="cam3").SerializeToString()]))
    seeds["cam3-latest"] = (0, 0, 2, MSG.join([codec.SerializeToString(), bytes(range(8)), req(device_id="cam3").SerializeToString()]))
    seeds["cam3-buffered"] = (1, 0, 2, MSG.join([codec.SerializeToString(), bytes(8), chrys.VideoFrameBufferedRequest(device_id="cam3", timestamp_from=1).SerializeToString()]))
    for name, (method, grant, flags, body) in seeds.items():
        write("image-api", name, bytes([method, grant, flags]) + body)


# --- auth ---------------------------------------------------------------------------------------

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def auth_seeds():
    tokens = b"# edge cameras\nfuzz-token publish,consume cam-*\nsha256:" + b"ab" * 32 + b" consume\ncert:camera-1 publish cam1\nops control,annotate,metrics\n"
    claims = json.dumps({"sub": "analytics", "exp": 4_000_000_000, "nbf": 1, "roles": ["consume", "publish"], "devices": ["cam-*"]}).encode()
    expired = json.dumps({"sub": "old", "exp": 1, "roles": ["consume"]}).encode()
    unsigned = b".".join([b64(b'{"alg":"ES256","typ":"JWT"}'), b64(claims), b64(bytes(64))])
    write("auth", "token-file", MSG.join([tokens, b"Bearer fuzz-token", b"cam-3", b"", b"", b"ipv4:10.0.0.1:5000", b"video/Analyse"]))
    write("auth", "signed-claims", MSG.join([b"", b"bearer " + unsigned, b"cam-9", claims, b"", b"ipv6:[::1]:1", b"chrys.cloud.videostreaming.v1beta1.Image/Proxy"]))
    write("auth", "expired-claims", MSG.join([b"x publish\nx consume\n", b"Bearer", b"camera-1", expired, b'{"alg":"ES256","typ":"JWT","kid":"k"}', b"unix:/tmp/s", b"grpc.health.v1.Health/Check"]))
    write("auth", "bad-lines", MSG.join([b"only-one\nsha256:zz publish\ncert: publish\ntoken nope\na b c d\n", b"Basic abc", b"", b"{}", b"", b"", b"x/y"]))


# --- settings -----------------------------------------------------------------------------------

def settings_seeds():
    shutil.copy(os.path.join(ROOT, "relay-server", "relay-server.yaml"), os.path.join(CORPUS, "settings", "relay-server.yaml"))
    shutil.copy(os.path.join(ROOT, "relay-client", "relay-client.yaml"), os.path.join(CORPUS, "settings", "relay-client.yaml"))
    write("settings", "gateway.yaml", b"""server: 127.0.0.1:50001
window: 16
queue: {max_bytes: 1_000_000, max_seconds: 30}
cameras:
  - device: cam-1
    rtsp: rtsp://user:pw@10.0.0.5/stream
    rtsp_transport: udp
  - device: cam-2
    test_pattern: true
    size: 640x480
    fps: 15
  - device: cam-1
    file: /tmp/x.mp4
    lop: true
""")
    write("settings", "problems.yaml", b"""listen: [127.0.0.1:1, "nope"]
ring: {max_bytes: -5, max_secnds: 3}
tls: {cert: /missing.pem}
simple: {shape: 480x640x3, pixel_format: gray}
annotations:
  upstream: grpcs://up:443
  retry_max_ms: 0
rtmp: {endpoint: ["cam1=rtmp://h/app/k", "bad"]}
log: {level: loud}
alias: &a 1
again: *a
""")


# --- live decoder -------------------------------------------------------------------------------

def decoder_seed(codec, fmt, width, height, extradata, packets):
    """packets: [(flags, bytes)] with flags bit 0 keyframe, bit 1 after a gap, bit 2 new hello, bit 3 same pts."""
    body = [extradata] + [bytes([int(flags)]) + data for flags, data in packets]
    return bytes([codec, fmt, width - 1, height - 1]) + MSG.join(body)


def decoder_seeds():
    common = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "6", "-pix_fmt", "yuv420p"]
    h264 = ffmpeg_packets(common + ["-c:v", "libx264", "-g", "3", "-bf", "1", "-bsf:v", "filter_units=remove_types=6", "-f", "h264"], ".h264")
    write("live-decoder", "h264", decoder_seed(0, 0, 64, 48, b"", h264))
    # A declared drop: the next keyframe follows a gap (the decoder restarts there); then a new hello.
    write("live-decoder", "h264-gap", decoder_seed(0, 0, 64, 48, b"", h264[:2] + [(3, h264[3][1]), (5, h264[0][1]), (8, h264[1][1])]))
    hevc = ffmpeg_packets(common + ["-c:v", "libx265", "-x265-params", "log-level=none:keyint=3:info=0", "-f", "hevc"], ".hevc")
    write("live-decoder", "hevc", decoder_seed(1, 0, 64, 48, b"", hevc))
    mjpeg = ffmpeg_packets(["-f", "lavfi", "-i", "testsrc=size=32x24:rate=10", "-frames:v", "2", "-q:v", "25", "-c:v", "mjpeg", "-f", "mjpeg"], ".mjpeg")
    write("live-decoder", "mjpeg", decoder_seed(2, 0, 32, 24, b"", mjpeg))
    gray = [(True, bytes([i * 30]) * 64) for i in range(3)]
    write("live-decoder", "rawvideo-gray", decoder_seed(3, 0, 8, 8, b"", gray))
    # bgr24 4x2 with rows padded to 16 bytes (format byte: bgr24, padding flag, 3 extra bytes).
    write("live-decoder", "rawvideo-padded", decoder_seed(3, 0x80 | (3 << 3) | 1, 4, 2, b"", [(True, bytes(16 + 12))]))


if __name__ == "__main__":
    for harness in ["native", "ava", "simple", "image-api", "auth", "settings", "live-decoder"]:
        shutil.rmtree(os.path.join(CORPUS, harness), ignore_errors=True)
        os.makedirs(os.path.join(CORPUS, harness))
    native()
    ava_seeds()
    simple_seeds()
    image_seeds()
    auth_seeds()
    settings_seeds()
    decoder_seeds()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(CORPUS) for f in fs)
    print(f"corpus: {total} bytes")
