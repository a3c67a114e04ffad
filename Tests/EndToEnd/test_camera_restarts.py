"""Cameras that come and go: a real RTSP server (GStreamer) stopped, stalled and restarted under a
running relay-client."""
import signal
import time

import pytest

from support import image_pb, is_empty, latest_image, list_streams, pick_port, wait_for_frame, wait_for_status

pytestmark = pytest.mark.binaries


def wait_for_size(stub, device, width, height, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = latest_image(stub, device)
        if not is_empty(frame) and (frame.width, frame.height) == (width, height):
            return frame
    pytest.fail(f"no {width}x{height} frame of {device} within {timeout}s")


def test_rtsp_camera_restart_with_a_new_size(server, start_client, start_rtsp_server, consumer):
    port = pick_port()
    camera, url = start_rtsp_server("--port", str(port), "--size", "320x240", "--fps", "30")
    start_client(server.address, "door", "--rtsp", url)
    stub = consumer(server.address)
    wait_for_frame(stub, "door", timeout=20)
    wait_for_size(stub, "door", 320, 240, timeout=20)

    camera.stop(timeout=5)
    down = wait_for_status(stub, "door", lambda s: s.status == "restarting" and s.failing_streak >= 2, timeout=30)
    assert "rtsp://127.0.0.1" in down.error, f"the error names the camera: {down.error!r}"
    streak = down.failing_streak
    time.sleep(2)
    assert list_streams(stub)["door"].failing_streak >= streak, "the streak counts up while the camera is away"

    start_rtsp_server("--port", str(port), "--size", "640x480", "--fps", "30")
    wait_for_status(stub, "door", lambda s: s.status == "running" and s.failing_streak == 0, timeout=40)
    frame = wait_for_size(stub, "door", 640, 480, timeout=20)
    assert len(frame.data) == 640 * 480 * 3, "consumers get frames of the new size"
    probe = stub.VideoProbe(image_pb.VideoProbeRequest(device_id="door"), timeout=5)
    assert (probe.video_codec.width, probe.video_codec.height) == (640, 480), "a new hello described the new size"


def test_stalled_rtsp_camera_is_reopened(server, start_client, start_rtsp_server, consumer):
    camera, url = start_rtsp_server("--size", "320x240", "--fps", "30")
    start_client(server.address, "stall", "--rtsp", url, "--rtsp-stall-seconds", "2")
    stub = consumer(server.address)
    wait_for_frame(stub, "stall", timeout=20)

    camera.process.send_signal(signal.SIGSTOP)  # no packets, but the connection stays open
    try:
        stalled = wait_for_status(stub, "stall", lambda s: s.status == "restarting", timeout=20)
        assert stalled.error, "the stall is reported with an error"
    finally:
        camera.process.send_signal(signal.SIGCONT)
    wait_for_status(stub, "stall", lambda s: s.status == "running", timeout=40)
    wait_for_frame(stub, "stall", timeout=20)


def test_rtsp_over_udp_on_request(server, start_client, start_rtsp_server, consumer):
    _, url = start_rtsp_server("--size", "320x240", "--fps", "30")
    start_client(server.address, "udp-cam", "--rtsp", url, "--rtsp-transport", "udp")
    stub = consumer(server.address)
    first = wait_for_frame(stub, "udp-cam", timeout=20)
    assert (first.width, first.height) == (320, 240)
    later = []
    deadline = time.monotonic() + 10
    while len(later) < 5 and time.monotonic() < deadline:
        frame = latest_image(stub, "udp-cam")
        if not is_empty(frame):
            later.append(frame.packet)
    assert len(later) == 5 and later == sorted(later) and later[0] > first.packet, "frames keep coming over UDP"
