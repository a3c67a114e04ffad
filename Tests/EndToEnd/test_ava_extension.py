"""relay-server as an AVA extension: an AVA sender written from the spec page alone
(Tests/EndToEnd/peers/ava_sender.py) streams RAW and JPG frames, embedded and through shared memory; each
session becomes a camera whose frames consumers read back through the Image API."""
import base64
import os
import time

import numpy
import pytest

import support
from peers import ava_common as common
from peers.ava_sender import AvaSender
from support import image_pb, now_ms

pytestmark = pytest.mark.binaries

W, H = 64, 48


def buffered(stub, device):
    return list(stub.VideoBufferedImage(image_pb.VideoFrameBufferedRequest(device_id=device), timeout=20))


def to_bgr24(frame, pixel_format):
    """The stated conversion of a RAW frame (as RawLayout.decode gives it) to what consumers get."""
    array = numpy.asarray(frame)
    return {"RGB24": lambda a: a[:, :, ::-1], "BGR24": lambda a: a, "BGRA": lambda a: a[:, :, :3],
            "RGBA": lambda a: a[:, :, 2::-1], "ARGB": lambda a: a[:, :, 3:0:-1], "ABGR": lambda a: a[:, :, 1:]}[pixel_format](array)


def send(server, frames, **options):
    options.setdefault("width", W)
    options.setdefault("height", H)
    return AvaSender(server.address, **options).run(frames)


@pytest.mark.parametrize("pixel_format", ["RGB24", "BGR24", "BGRA"])
@pytest.mark.parametrize("shared_memory", [False, True], ids=["embedded", "shared-memory"])
def test_raw_frames_come_back_through_the_image_api(server, consumer, pixel_format, shared_memory):
    frames = [common.pattern_frame(W, H, i, pixel_format) for i in range(8)]
    device = f"ava-{pixel_format.lower()}-{'shm' if shared_memory else 'emb'}"
    result = send(server, frames, pixel_format=pixel_format, shared_memory=shared_memory or None,
                  extension_configuration=device)
    assert result.status[0] == "OK", result.status
    assert len(result.acked) == 8 and not result.timed_out
    assert result.answer_numbers == (1, 1), "our descriptor answer is message 1 and acks the sender's descriptor"
    assert [a.ack_sequence_number for a in result.acks] == list(range(2, 10))
    stored = buffered(consumer(server.address), device)
    assert len(stored) == 8
    for got, want in zip(stored, frames):
        assert (got.width, got.height) == (W, H)
        assert numpy.array_equal(support.image_of(got), to_bgr24(want, pixel_format))


def test_padded_rows_and_stride_zero_are_both_understood(server, consumer):
    frames = [common.pattern_frame(W, H, i) for i in range(3)]
    assert send(server, frames, stride=W * 3 + 20, extension_configuration="ava-padded").status[0] == "OK"
    assert send(server, frames, stride=0, extension_configuration="ava-stride0").status[0] == "OK"
    stub = consumer(server.address)
    for device in ("ava-padded", "ava-stride0"):
        stored = buffered(stub, device)
        assert [numpy.array_equal(support.image_of(g), to_bgr24(w, "RGB24")) for g, w in zip(stored, frames)] == [True] * 3


def test_jpg_frames_equal_ffmpegs_own_decode(server, consumer):
    pictures = [common.pattern_frame(W, H, i) for i in range(4)]
    jpgs = [common.encode_image(p, "JPG") for p in pictures]
    result = send(server, jpgs, encoding="JPG", shared_memory=True, extension_configuration="ava-jpg")
    assert result.status[0] == "OK", result.status
    stored = buffered(consumer(server.address), "ava-jpg")
    assert len(stored) == 4
    for got, jpg in zip(stored, jpgs):
        rc, raw, err = common.run_ffmpeg(["-f", "image2pipe", "-c:v", "mjpeg", "-i", "pipe:0", "-sws_flags", "bicubic",
                                         "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"], jpg)
        assert rc == 0, err
        assert numpy.array_equal(support.image_of(got), numpy.frombuffer(raw, numpy.uint8).reshape(H, W, 3))


@pytest.mark.parametrize("configuration,graph,expected", [
    ("cam-7", "graph-1", "cam-7"),
    ('{"device_id": "lobby", "threshold": 0.5}', "graph-1", "lobby"),
    ('{"threshold": 0.5}', "entrance", "entrance"),
    ("any free text: not an id", "not an id either!", "ava"),
])
def test_the_device_comes_from_configuration_then_graph_then_default(server, consumer, configuration, graph, expected):
    frames = [common.pattern_frame(W, H, 0)]
    assert send(server, frames, extension_configuration=configuration, graph_instance_name=graph).status[0] == "OK"
    assert expected in support.list_streams(consumer(server.address))


def test_zero_timestamps_are_stamped_on_arrival(server, consumer):
    before = now_ms()
    frames = [common.pattern_frame(W, H, i) for i in range(5)]
    assert send(server, frames, zero_timestamps=True, extension_configuration="ava-ts0").status[0] == "OK"
    stamps = [f.timestamp for f in buffered(consumer(server.address), "ava-ts0")]
    assert all(a < b for a, b in zip(stamps, stamps[1:]))
    assert before - 100 <= stamps[0] <= now_ms() + 100


def test_basic_authentication_when_configured(start_server, tmp_path, consumer):
    credentials = tmp_path / "ava-users"
    credentials.write_text("# who may send\ngraph:s3cret\n")
    server = start_server("--ava-basic-credentials", str(credentials))
    frames = [common.pattern_frame(W, H, 0)]
    missing = send(server, frames)
    assert missing.status[0] == "UNAUTHENTICATED" and "x-ms-authentication" in missing.status[1]
    wrong = send(server, frames, auth=("graph", "guess"))
    assert wrong.status[0] == "UNAUTHENTICATED"
    assert send(server, frames, auth=("graph", "s3cret"), extension_configuration="ava-auth").status[0] == "OK"


def test_the_header_is_ignored_without_credentials(server):
    assert send(server, [common.pattern_frame(W, H, 0)], auth=("anyone", "anything")).status[0] == "OK"


@pytest.mark.parametrize("fault,code,words", [
    ("sample_before_descriptor", "FAILED_PRECONDITION", "first message"),
    ("second_descriptor", "FAILED_PRECONDITION", "one media_stream_descriptor"),
    ("shm_outside", "INVALID_ARGUMENT", "outside the shared memory"),
    ("missing_shm", "FAILED_PRECONDITION", "No such file"),
    ("stride_too_small", "INVALID_ARGUMENT", "stride_bytes"),
    ("zero_dimensions", "INVALID_ARGUMENT", "dimensions 0x0"),
    ("unknown_pixel_format", "INVALID_ARGUMENT", "pixel_format"),
    ("wrong_content_length", "INVALID_ARGUMENT", "bytes"),
    ("empty_sample", "INVALID_ARGUMENT", "neither content_bytes nor content_reference"),
])
def test_bad_input_gets_a_specific_status(server, fault, code, words):
    shm = fault in ("shm_outside", "missing_shm") or None
    result = send(server, [common.pattern_frame(W, H, i) for i in range(3)], fault=fault, shared_memory=shm)
    assert result.status[0] == code, result.status
    assert words in result.status[1], result.status


def test_a_jpg_that_does_not_decode(server):
    result = send(server, [common.pattern_frame(W, H, 0)], encoding="JPG", fault="bad_jpg")
    assert result.status[0] == "INVALID_ARGUMENT", result.status
    assert "JPG" in result.status[1]


def test_dimensions_over_the_frame_limit(start_server):
    server = start_server("--max-frame-bytes", "100000")
    result = send(server, [common.pattern_frame(1920, 1080, 0)], width=1920, height=1080)
    assert result.status[0] == "INVALID_ARGUMENT" and "--max-frame-bytes" in result.status[1]


@pytest.mark.parametrize("limit,code,words", [
    ((), "INVALID_ARGUMENT", "sample content is"),
    (("--max-frame-bytes", "10000"), "RESOURCE_EXHAUSTED", "over the server's limit of 10000 bytes"),
])
def test_a_reference_longer_than_the_frame(start_server, limit, code, words):
    """Read while fixing what fuzzing found: a reference's length was bounded only by the file, so a
    huge file let one sample be copied out whole. Past --max-frame-bytes it is refused before the copy;
    under it, the content length check answers as before."""
    server = start_server(*limit)
    result = send(server, [common.pattern_frame(W, H, i) for i in range(2)], fault="long_reference", shared_memory=True)
    assert result.status[0] == code, result.status
    assert words in result.status[1], result.status


def test_raw_frames_are_recorded_as_h264(start_server, consumer, tmp_path):
    data_dir = tmp_path / "rec"
    server = start_server("--data-dir", str(data_dir))
    stub = consumer(server.address)
    # Smooth pictures (H.264 at default quality turns random noise to mush).
    ys, xs = numpy.mgrid[0:H, 0:W]
    frames = [numpy.stack([(xs * 4 + i) % 256, ys * 5 % 256, numpy.full_like(xs, 128)], axis=2).astype(numpy.uint8)
              for i in range(30)]
    assert send(server, frames[:1], extension_configuration="ava-rec").status[0] == "OK"
    stub.Storage(image_pb.StorageRequest(device_id="ava-rec", start=True), timeout=5)
    assert send(server, frames, extension_configuration="ava-rec").status[0] == "OK"
    stub.Storage(image_pb.StorageRequest(device_id="ava-rec", start=False), timeout=10)
    segments = sorted((data_dir / "recordings" / "ava-rec").glob("*.mp4"))
    assert segments, "no segment written"
    codec = support.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name",
                         "-of", "csv=p=0", segments[-1]]).stdout.decode().strip()
    assert codec == "h264"
    decoded = support.ffmpeg_bgr24_frames(segments[-1], W, H)
    assert len(decoded) == 30, "every frame stored while recording is in the segment"
    assert support.psnr(decoded[0], to_bgr24(frames[0], "RGB24")) > 25, "the pictures survive the H.264 encode"
