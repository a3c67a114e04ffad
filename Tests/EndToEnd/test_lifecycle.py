"""Issue 8's behaviour seen from outside: the cold VideoLatestImage call, IPv6 listening, and a graceful
shutdown that leaves complete recordings and exits 0 while publishers and consumers are attached."""
import socket
import time

import grpc
import pytest

import support
from support import image_pb, is_empty, latest_image, wait_for_frame

pytestmark = pytest.mark.binaries

PATTERN_ARGS = ["--test-pattern", "--size", "320x240", "--fps", "30"]


def system_time(stub):
    return stub.SystemTime(image_pb.SystemTimeRequest(), timeout=5).current_time


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_first_call_on_a_cold_device_gets_the_newest_frame(start_server, start_client, consumer):
    # As Chrysalis' basic_usage.py --device does: wait until the decoder went idle, then call once.
    server = start_server("--decoder-idle-seconds", "1")
    start_client(server.address, "cold-cam", *PATTERN_ARGS)
    stub = consumer(server.address)
    wait_for_frame(stub, "cold-cam")                       # warm once: the decoder runs
    server.process.wait_for_output(r"live decoder stopped", timeout=10, stream="stderr")
    time.sleep(1.5)                                        # the ring moves on while the decoder is cold

    # A fresh channel is a fresh consumer (its own cursor), as a new analytics process would be.
    fresh = consumer(server.address)
    before = system_time(fresh)
    frame = latest_image(fresh, "cold-cam", timeout=5)
    assert not is_empty(frame), "a cold device with stored frames answered an empty frame"
    age_ms = system_time(fresh) - frame.timestamp
    # 30 fps: the newest stored frame is at most a frame interval older than the call, plus the
    # decode of one GOP of 320x240; a frame left from the earlier decoder run is seconds old.
    assert age_ms < 700, f"cold call answered a frame {age_ms} ms old (SystemTime {before} → frame {frame.timestamp})"
    assert frame.timestamp >= before - 200, "the frame predates the call: decoded by an earlier decoder run?"


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback_available(), reason="this machine has no IPv6 loopback")
def test_server_listens_on_ipv6_and_a_client_publishes_there(processes, tmp_path, consumer):
    process = processes("relay-server", [support.RELAY_SERVER, "--listen", "[::1]:0", "--data-dir", str(tmp_path / "d")])
    ready = process.wait_for_output(r"^relay-server listening on (\[::1\]:\d+)$", timeout=15)
    address = ready.group(1)
    client = processes("relay-client", [support.RELAY_CLIENT, "publish", "--server", address, "--device", "v6-cam",
                                        *PATTERN_ARGS])
    frame = wait_for_frame(consumer(f"ipv6:{address}"), "v6-cam")
    assert frame.width == 320 and frame.height == 240
    assert client.alive


def test_server_serves_every_listen_address(start_server, start_client, consumer, free_port):
    server = start_server("--listen", f"127.0.0.1:{free_port}")
    start_client(f"127.0.0.1:{free_port}", "two-ports", *PATTERN_ARGS)
    # Published on the second address, consumed on the first.
    assert not is_empty(wait_for_frame(consumer(server.address), "two-ports"))


def test_sigterm_with_publisher_consumer_and_recording_exits_0_with_complete_segments(start_server, start_client, consumer, tmp_path):
    data_dir = tmp_path / "data"
    server = start_server("--data-dir", str(data_dir))
    client = start_client(server.address, "rec-cam", *PATTERN_ARGS)
    stub = consumer(server.address)
    wait_for_frame(stub, "rec-cam")
    stub.Storage(image_pb.StorageRequest(device_id="rec-cam", start=True), timeout=5)
    time.sleep(2)
    started = time.monotonic()
    assert server.process.stop(timeout=12) == 0, "relay-server did not exit 0 after SIGTERM"
    assert time.monotonic() - started < 10, "graceful shutdown took longer than its bound"
    stderr = server.process.stderr()
    for part in ("recording stopped", "annotations outbox closed"):
        assert part in stderr, f"shutdown did not log {part!r}"
    segments = sorted((data_dir / "recordings" / "rec-cam").glob("*.mp4"))
    assert segments, "no recording segment"
    frames = len(support.ffprobe_frames(segments[-1]))
    assert frames > 30, f"the last segment holds {frames} frames: not closed cleanly?"
    # The publisher sees the server go and keeps retrying rather than failing.
    wait_until(lambda: "cannot reach relay-server" in client.stderr(), 10, "the client's retry line")
    assert client.alive
