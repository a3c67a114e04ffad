"""The minimal "video over gRPC" protocol (/video/Analyse) both ways, against peers written from the spec
page alone (Tests/EndToEnd/peers): its clients publish into relay-server, and relay-client feeds its
original-style server, which answers every frame with the constant 1."""
import json

import grpc
import numpy
import pytest

import support
from peers import simple_client, simple_server
from support import image_pb, latest_image, wait_for_frame

pytestmark = pytest.mark.binaries


def buffered_frames(stub, device):
    return list(stub.VideoBufferedImage(image_pb.VideoFrameBufferedRequest(device_id=device), timeout=20))


def as_bgr24(frames, pixel_format):
    """The stated conversion to what consumers get: gray → three equal channels, rgb24 → bgr24."""
    if pixel_format == "gray":
        return [numpy.repeat(frame[:, :, None], 3, axis=2) for frame in frames]
    if pixel_format == "rgb24":
        return [frame[:, :, ::-1] for frame in frames]
    return frames


@pytest.mark.parametrize("shape,pixel_format", [("120x160", "gray"), ("120x160x3", "bgr24"), ("120x160x3", "rgb24")])
def test_python_client_publishes_frames_that_consumers_read_back(start_server, consumer, shape, pixel_format):
    server = start_server("--simple-shape", shape, "--simple-pixel-format", pixel_format)
    dims = tuple(int(d) for d in shape.split("x"))
    frames = list(simple_client.synthetic_frames(dims, 12, pattern="random", seed=7))

    replies = simple_client.analyse(server.address, frames, metadata={"x-device-id": "simple-cam"}, timeout=20)
    assert replies == list(range(1, 13)), "each frame is answered with its sequence number, in order"

    stub = consumer(server.address)
    stored = buffered_frames(stub, "simple-cam")
    assert len(stored) == 12
    for got, want in zip(stored, as_bgr24(frames, pixel_format)):
        assert (got.height, got.width) == (120, 160)
        assert numpy.array_equal(support.image_of(got), want)
    assert [f.packet for f in stored] == list(range(1, 13))
    latest = latest_image(stub, "simple-cam")
    assert numpy.array_equal(support.image_of(latest), as_bgr24(frames, pixel_format)[-1])


def test_a_call_without_device_metadata_goes_to_the_default_device(start_server, consumer):
    server = start_server("--simple-shape", "48x64", "--simple-default-device", "pi-camera")
    frames = list(simple_client.synthetic_frames((48, 64), 3))
    assert simple_client.analyse(server.address, frames, timeout=20) == [1, 2, 3]
    names = support.list_streams(consumer(server.address))  # by name
    assert "pi-camera" in names


def test_a_frame_of_the_wrong_length_is_refused_and_earlier_frames_stay(start_server, consumer):
    server = start_server("--simple-shape", "48x64")
    good = list(simple_client.synthetic_frames((48, 64), 3))
    short = numpy.zeros((48, 63), numpy.uint8)
    with pytest.raises(simple_client.AnalyseError) as refused:
        simple_client.analyse(server.address, good + [short], metadata={"x-device-id": "wrong-len"}, timeout=20)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    message = refused.value.details()
    for part in ("frame 4", "3024 bytes", "3072", "--simple-shape 48x64"):
        assert part in message, f"{part!r} missing from {message!r}"
    assert refused.value.replies == [1, 2, 3]
    stored = buffered_frames(consumer(server.address), "wrong-len")
    assert len(stored) == 3
    assert all(numpy.array_equal(support.image_of(g), w) for g, w in zip(stored, as_bgr24(good, "gray")))


def test_original_port_and_chrysalis_port_side_by_side(start_server, consumer, free_port):
    # Chrysalis consumers on their port, the minimal protocol's clients on theirs.
    server = start_server("--listen", f"127.0.0.1:{free_port}", "--simple-shape", "48x64")
    frames = list(simple_client.synthetic_frames((48, 64), 2))
    assert simple_client.analyse(f"127.0.0.1:{free_port}", frames, metadata={"x-device-id": "two-ports"}, timeout=20) == [1, 2]
    assert len(buffered_frames(consumer(server.address), "two-ports")) == 2


def test_server_refuses_a_shape_and_pixel_format_that_disagree(processes):
    process = processes("relay-server", [support.RELAY_SERVER, "--listen", "127.0.0.1:0",
                                         "--simple-shape", "480x640x3", "--simple-pixel-format", "gray"])
    assert process.wait(timeout=10) != 0
    assert "--simple-shape" in process.stderr() and "channel" in process.stderr()


def ffmpeg_pictures(path, height, width, pixel_format):
    """FFmpeg's own decode of every frame, scaled to the shape (bicubic, as relay-client scales)."""
    channels = 1 if pixel_format == "gray" else 3
    raw = support.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
                       "-sws_flags", "bicubic", "-s", f"{width}x{height}", "-f", "rawvideo",
                       "-pix_fmt", pixel_format, "-"]).stdout
    size = height * width * channels
    shape = (height, width) if channels == 1 else (height, width, 3)
    return [numpy.frombuffer(raw[i:i + size], numpy.uint8).reshape(shape) for i in range(0, len(raw), size)]


@pytest.mark.parametrize("shape,pixel_format", [("120x160", "gray"), ("120x160x3", "bgr24")])
def test_relay_client_feeds_an_original_style_server(processes, h264_mp4, shape, pixel_format):
    dims = tuple(int(d) for d in shape.split("x"))
    with simple_server.SimpleVideoServer(shape=dims) as original:  # answers every frame with 1
        client = processes("relay-client", [support.RELAY_CLIENT, "simple", "--server", original.address,
                                            "--file", str(h264_mp4.path), "--pace", "fast",
                                            "--shape", shape, "--pixel-format", pixel_format])
        assert client.wait(timeout=40) == 0, client.stderr()
        summary = json.loads([l for l in client.stdout().splitlines() if l.startswith("{")][-1])
        assert summary["frames_captured"] == 90
        assert summary["frames_acked"] == 90, "every constant-1 reply acknowledges the oldest frame in flight"
        assert original.frame_count == 90
        assert all(call.metadata.get("x-device-id") is None for call in original.calls), "the original sends none"
        want = ffmpeg_pictures(h264_mp4.path, dims[0], dims[1], pixel_format)
        got = original.frames
        assert len(got) == len(want) == 90
        worst = max(int(numpy.abs(g.astype(int) - w.astype(int)).max()) for g, w in zip(got, want))
        assert worst <= 1, f"pixels differ from FFmpeg's own scaling by up to {worst}"


def test_relay_client_simple_into_relay_server(start_server, processes, consumer):
    server = start_server("--simple-shape", "120x160x3")
    processes("relay-client", [support.RELAY_CLIENT, "simple", "--server", server.address, "--device", "edge-simple",
                               "--test-pattern", "--size", "320x240", "--fps", "15", "--shape", "120x160x3"])
    frame = wait_for_frame(consumer(server.address), "edge-simple")
    assert (frame.height, frame.width) == (120, 160)
