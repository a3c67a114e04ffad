"""V4L2 cameras, through a STAND-IN device: these kernels have no V4L2 and cannot load modules, so
Tests/Fixtures/fake-v4l2 (an LD_PRELOAD library, preloaded only into the spawned relay-client) answers
FFmpeg's V4L2 calls for /dev/video-fake0 with a known moving pattern. Everything else is real: FFmpeg's
v4l2 input, libx264, relay-server, a Python grpcio consumer."""
import os
import subprocess
import sys
import time

import pytest

import support
from support import image_of, image_pb, is_empty, latest_image, wait_for_frame, wait_for_status

sys.path.insert(0, str(support.REPO / "Tests" / "Fixtures" / "fake-v4l2"))
import pattern  # noqa: E402

pytestmark = pytest.mark.binaries

FAKE_PATH = "/dev/video-fake0"
# Encoding loss allowed when comparing with the pattern: libx264 (ultrafast) at 2 Mbit/s keeps these
# pictures (flat bars, big blocks) nearly exact; a frame compared with its neighbour scores ~17 dB.
MIN_PSNR_DB = 35.0


@pytest.fixture(scope="session")
def fake_v4l2_library():
    built = subprocess.run(["bash", str(support.REPO / "Tests/Fixtures/fake-v4l2/build.sh")],
                           capture_output=True, text=True, check=True, cwd=support.REPO)
    return built.stdout.strip().splitlines()[-1]


def stand_in_env(library, size, **extra):
    return {"LD_PRELOAD": library, "FAKE_V4L2_PATH": FAKE_PATH, "FAKE_V4L2_SIZE": size, **extra}


def test_devices_lists_the_stand_in_camera(fake_v4l2_library):
    listed = subprocess.run([str(support.RELAY_CLIENT), "devices", FAKE_PATH], capture_output=True, text=True,
                            timeout=20, env={**os.environ, **stand_in_env(fake_v4l2_library, "640x480")})
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    assert "FrameRelay test camera" in out and "driver fake-v4l2" in out
    assert "YUYV" in out
    for size in ("640x480", "1920x1080", "320x240"):
        assert f"{size} @ 30 fps" in out, out


def test_devices_names_a_missing_path():
    listed = subprocess.run([str(support.RELAY_CLIENT), "devices", "/dev/video-missing9"], capture_output=True,
                            text=True, timeout=20)
    assert listed.returncode != 0
    assert "/dev/video-missing9" in listed.stderr and "No such file" in listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1, "one clear line"


@pytest.mark.parametrize("width,height", [(640, 480), (1920, 1080)], ids=["640x480", "1920x1080"])
def test_stand_in_yuyv_camera_is_encoded_relayed_and_shows_the_pattern(
        fake_v4l2_library, server, start_client, consumer, width, height):
    size = f"{width}x{height}"
    start_client(server.address, "usb-cam", "--v4l2", FAKE_PATH, "--input-format", "yuyv422", "--size", size,
                 "--fps", "30", "--bitrate", "2000000", env=stand_in_env(fake_v4l2_library, size))
    stub = consumer(server.address)
    first = wait_for_frame(stub, "usb-cam", timeout=30)
    assert (first.width, first.height) == (width, height)
    probe = stub.VideoProbe(image_pb.VideoProbeRequest(device_id="usb-cam"), timeout=5)
    assert probe.video_codec.name == "h264", "raw YUYV is encoded to H.264 on the edge"
    assert (probe.video_codec.width, probe.video_codec.height) == (width, height)

    checked = []
    deadline = time.monotonic() + 20
    while len(checked) < 5 and time.monotonic() < deadline:
        frame = latest_image(stub, "usb-cam")
        if is_empty(frame):
            continue
        picture = image_of(frame)
        number = pattern.read_frame_number(picture)
        score = pattern.psnr(picture, pattern.expected_bgr(width, height, number))
        neighbour = pattern.psnr(picture, pattern.expected_bgr(width, height, number + 1))
        checked.append((number, score, neighbour))
    assert len(checked) == 5, f"only {len(checked)} frames in 20 s"
    numbers = [number for number, _, _ in checked]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5, f"the pattern moves forward: {numbers}"
    for number, score, neighbour in checked:
        assert score >= MIN_PSNR_DB, f"frame {number}: {score:.1f} dB against the pattern"
        assert neighbour < score - 10, f"frame {number}: the check must tell neighbouring frames apart"


def test_stand_in_unplugged_camera_is_reported_then_recovers(
        fake_v4l2_library, server, start_client, consumer, tmp_path):
    unplugged = tmp_path / "unplugged"
    # After 45 frames the stand-in "unplugs" itself (creates the file) and DQBUF fails with EIO.
    env = stand_in_env(fake_v4l2_library, "640x480", FAKE_V4L2_FAIL_AFTER="45",
                       FAKE_V4L2_UNPLUG_FILE=str(unplugged))
    start_client(server.address, "flaky-cam", "--v4l2", FAKE_PATH, "--input-format", "yuyv422", env=env)
    stub = consumer(server.address)
    wait_for_frame(stub, "flaky-cam", timeout=30)

    failing = wait_for_status(stub, "flaky-cam", lambda s: s.status == "restarting" and s.failing_streak >= 2,
                              timeout=20)
    assert failing.restarting and not failing.running
    assert FAKE_PATH in failing.error, f"the error names the device: {failing.error!r}"
    assert unplugged.exists()

    unplugged.unlink()  # plug it back in
    recovered = wait_for_status(stub, "flaky-cam", lambda s: s.status == "running", timeout=20)
    assert recovered.failing_streak == 0 and recovered.running
    # Frames flow again, counting from 0 on the replugged camera.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        frame = latest_image(stub, "flaky-cam")
        if not is_empty(frame) and pattern.read_frame_number(image_of(frame)) < 45:
            return
    pytest.fail("no frame from the replugged camera")


def test_stand_in_format_the_camera_does_not_offer_is_named(fake_v4l2_library, start_client):
    client = start_client("127.0.0.1:1", "wrong-format", "--v4l2", FAKE_PATH, "--input-format", "mjpeg",
                          env=stand_in_env(fake_v4l2_library, "640x480"))
    line = client.wait_for_output(r"camera failed, reopening in .*$", timeout=20, stream="stderr").group(0)
    assert "does not offer mjpeg; it offers YUYV (640x480, 1920x1080, 320x240)" in line
    assert client.alive(), "a running publisher retries with back-off"
