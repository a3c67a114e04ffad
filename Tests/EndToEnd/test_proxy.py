"""Proxy (RTMP passthrough): relay-server remuxes a device's H.264 packets, unchanged, to FLV at the RTMP
URL `--rtmp-endpoint` names. The RTMP side is scripts/rtmp-server (nginx-rtmp on loopback); what arrives
there is read back with ffprobe and ffmpeg. Real processes on loopback."""
import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

import support
from support import PublishSession, frame_request, h264_hello, image_pb, pick_port, wait_for_frame

pytestmark = pytest.mark.binaries

RTMP_SERVER_SCRIPT = support.REPO / "scripts" / "rtmp-server"
NGINX_FILES = {"/usr/sbin/nginx": "nginx", "/usr/lib/nginx/modules/ngx_rtmp_module.so": "libnginx-mod-rtmp"}
PATTERN = ["--test-pattern", "--size", "320x240", "--fps", "30"]
PROBE_TIMEOUT = 10.0  # seconds for one ffprobe of a live RTMP stream (about 1-2 s with -analyzeduration 1 s)


# ---------------------------------------------------------------- helpers

@pytest.fixture
def start_rtmp_server(processes):
    """Starts scripts/rtmp-server (on `port`, or a free one); returns (process, rtmp://127.0.0.1:PORT/live, PORT)."""
    missing = [f"{path} (Debian package {package})" for path, package in NGINX_FILES.items() if not Path(path).exists()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/setup", pytrace=False)

    def start(port=0):
        process = processes("rtmp-server", ["/usr/bin/python3", RTMP_SERVER_SCRIPT, "--port", str(port)])
        ready = process.wait_for_output(r"^rtmp-server ready (rtmp://127\.0\.0\.1:(\d+)/live)$", timeout=20)
        return process, ready.group(1), int(ready.group(2))
    return start


def start_relay(start_server, tmp_path, *args):
    """relay-server with its data in tmp_path and metrics on; returns (server, metrics address)."""
    server = start_server("--data-dir", tmp_path / "data", "--metrics-listen", "127.0.0.1:0", *args)
    return server, server.metrics_address


def metric(address, name, device):
    """The value of `name{device="..."}` on GET /metrics, or None when the server does not show it."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    pattern = r"^" + re.escape(name) + r'\{device="' + re.escape(device) + r'"\}\s+(\S+)\s*$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def wait_for_metric(address, name, device, predicate, timeout):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = metric(address, name, device)
        if value is not None and predicate(value):
            return value
        time.sleep(0.2)
    pytest.fail(f'{name}{{device="{device}"}} never reached the expected value within {timeout}s; last {value}')


def proxy(stub, device, on):
    return stub.Proxy(image_pb.ProxyRequest(device_id=device, passthrough=on), timeout=support.CALL_TIMEOUT)


def probe_rtmp(url):
    """ffprobe's view of the live stream's video: (stream dict, None) or (None, why it failed)."""
    try:
        result = subprocess.run(["ffprobe", "-v", "error", "-analyzeduration", "1000000", "-select_streams", "v:0",
                                 "-show_entries", "stream=codec_name,width,height", "-of", "json", url],
                                capture_output=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"ffprobe did not finish within {PROBE_TIMEOUT}s"
    why = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0:
        return None, why or f"ffprobe exited with {result.returncode}"
    streams = json.loads(result.stdout or b"{}").get("streams") or []
    return (streams[0], None) if streams else (None, f"no video stream found; {why}")


def wait_for_rtmp(url, timeout):
    """Retries ffprobe until the stream is published (bounded); returns its video stream."""
    deadline = time.monotonic() + timeout
    while True:
        stream, why = probe_rtmp(url)
        if stream is not None:
            return stream
        if time.monotonic() > deadline:
            pytest.fail(f"ffprobe could not read {url} within {timeout}s; last: {why}")
        time.sleep(0.3)


def wait_for_rtmp_gone(url, timeout):
    """Retries ffprobe until reading the stream fails (bounded); returns ffprobe's complaint."""
    deadline = time.monotonic() + timeout
    while True:
        stream, why = probe_rtmp(url)
        if stream is None:
            return why
        if time.monotonic() > deadline:
            pytest.fail(f"{url} was still readable {timeout}s after passthrough was turned off")
        time.sleep(0.3)


def decoded_frames(url, count, width, height):
    """Decodes `count` frames of the live stream with ffmpeg; returns how many bgr24 frames came out."""
    result = subprocess.run(["ffmpeg", "-v", "error", "-analyzeduration", "1000000", "-i", url, "-map", "0:v:0",
                             "-frames:v", str(count), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                            capture_output=True, timeout=20)
    assert result.returncode == 0, f"ffmpeg could not decode {url}: {result.stderr.decode(errors='replace')}"
    frame_bytes = width * height * 3
    assert len(result.stdout) % frame_bytes == 0, "frames of the probed size"
    return len(result.stdout) // frame_bytes


def publish_one_gop(address, device, units):
    """Makes `device` known to the server: a raw Publish session sends one GOP and waits for its acks."""
    session = PublishSession(address)
    session.handshake(h264_hello(device))
    keyframes = [i for i, (_, key) in enumerate(units) if key]
    gop = units[:keyframes[1]]
    for index, (data, keyframe) in enumerate(gop):
        session.send(frame_request(index + 1, data, index, keyframe))
    acks = [session.next_message().ack.sequence for _ in gop]
    assert acks == list(range(1, len(gop) + 1))
    return session


# ---------------------------------------------------------------- statuses

@pytest.mark.parametrize("device_id", ["", "bad id", "../x", "-cam", "a" * 65],
                         ids=["missing", "space", "dot-dot-slash", "leading-dash", "65-chars"])
def test_bad_device_id_is_invalid_argument(start_server, consumer, tmp_path, device_id):
    server = start_server("--data-dir", tmp_path / "data", "--rtmp-endpoint", "*=rtmp://127.0.0.1:1/live/{device}")
    stub = consumer(server.address)
    for on in (True, False):
        with pytest.raises(grpc.RpcError) as error:
            proxy(stub, device_id, on)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, \
            f"Proxy({device_id!r}, {on}): {error.value.code()}: {error.value.details()}"


def test_unknown_device_and_device_without_endpoint(start_server, consumer, tmp_path, annexb_clip):
    # An endpoint for another device only: "cam" is known but has none, "nobody" is not known at all.
    server = start_server("--data-dir", tmp_path / "data",
                          "--rtmp-endpoint", "other=rtmp://127.0.0.1:1/live/other")
    stub = consumer(server.address)
    session = publish_one_gop(server.address, "cam", annexb_clip.units)
    try:
        with pytest.raises(grpc.RpcError) as unknown:
            proxy(stub, "nobody", True)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND, \
            f"{unknown.value.code()}: {unknown.value.details()}"

        with pytest.raises(grpc.RpcError) as no_endpoint:
            proxy(stub, "cam", True)
        details = no_endpoint.value.details() or ""
        assert no_endpoint.value.code() == grpc.StatusCode.FAILED_PRECONDITION, \
            f"{no_endpoint.value.code()}: {details}"
        assert "--rtmp-endpoint" in details, f"the details should say which flag is missing: {details!r}"
    finally:
        session.close()


def test_unknown_device_is_not_found_even_with_a_wildcard_endpoint(start_server, consumer, tmp_path):
    server = start_server("--data-dir", tmp_path / "data", "--rtmp-endpoint", "*=rtmp://127.0.0.1:1/live/{device}")
    stub = consumer(server.address)
    with pytest.raises(grpc.RpcError) as unknown:
        proxy(stub, "nobody", True)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND, f"{unknown.value.code()}: {unknown.value.details()}"


# ---------------------------------------------------------------- passthrough

@pytest.mark.parametrize("endpoint", ["cam={base}/cam", "*={base}/{{device}}"], ids=["exact", "wildcard"])
def test_passthrough_on_and_off(start_rtmp_server, start_server, start_client, consumer, tmp_path, endpoint):
    _, base, _ = start_rtmp_server()
    url = f"{base}/cam"
    server, metrics = start_relay(start_server, tmp_path, "--rtmp-endpoint", endpoint.format(base=base))
    start_client(server.address, "cam", *PATTERN)
    stub = consumer(server.address)
    wait_for_frame(stub, "cam")

    stream, _ = probe_rtmp(url)
    assert stream is None, "nothing is published to the endpoint before Proxy(passthrough=true)"

    answer = proxy(stub, "cam", True)
    assert (answer.device_id, answer.passthrough) == ("cam", True)
    stream = wait_for_rtmp(url, timeout=20)
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 240), stream
    assert decoded_frames(url, 30, 320, 240) == 30, "frames flow through the RTMP server and decode"

    assert metric(metrics, "framerelay_proxy_on", "cam") == 1
    assert metric(metrics, "framerelay_proxy_connected", "cam") == 1
    sent = metric(metrics, "framerelay_proxy_packets_total", "cam")
    assert sent is not None and sent > 0
    wait_for_metric(metrics, "framerelay_proxy_packets_total", "cam", lambda v: v > sent, timeout=5)

    again = proxy(stub, "cam", True)  # idempotent: still one stream, still readable
    assert (again.device_id, again.passthrough) == ("cam", True)
    assert wait_for_rtmp(url, timeout=10)["codec_name"] == "h264"

    off = proxy(stub, "cam", False)
    assert (off.device_id, off.passthrough) == ("cam", False)
    wait_for_rtmp_gone(url, timeout=10)
    time.sleep(2)  # and it stays gone: no reconnect after the stop
    stream, _ = probe_rtmp(url)
    assert stream is None, "the stream came back after Proxy(passthrough=false)"
    assert metric(metrics, "framerelay_proxy_on", "cam") == 0
    assert metric(metrics, "framerelay_proxy_connected", "cam") == 0

    off_again = proxy(stub, "cam", False)
    assert (off_again.device_id, off_again.passthrough) == ("cam", False)
    assert server.process.alive()


def test_rtmp_server_restart_is_survived_without_a_new_proxy_call(start_rtmp_server, start_server, start_client,
                                                                  consumer, tmp_path):
    port = pick_port()
    first_rtmp, base, _ = start_rtmp_server(port)
    url = f"{base}/cam"
    server, metrics = start_relay(start_server, tmp_path, "--rtmp-endpoint", f"cam={url}")
    start_client(server.address, "cam", *PATTERN)
    stub = consumer(server.address)
    wait_for_frame(stub, "cam")

    assert proxy(stub, "cam", True).passthrough
    assert wait_for_rtmp(url, timeout=20)["codec_name"] == "h264"

    assert first_rtmp.stop(timeout=10) == 0, "scripts/rtmp-server stops cleanly on SIGTERM"
    wait_for_metric(metrics, "framerelay_proxy_connected", "cam", lambda v: v == 0, timeout=10)
    assert metric(metrics, "framerelay_proxy_on", "cam") == 1, "the endpoint going away leaves passthrough on"
    time.sleep(2)  # down for a while: some reconnect attempts fail

    start_rtmp_server(port)  # the same URL again
    stream = wait_for_rtmp(url, timeout=30)
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 240), stream
    assert decoded_frames(url, 15, 320, 240) == 15

    reconnects = metric(metrics, "framerelay_proxy_reconnects_total", "cam")
    assert reconnects is not None and reconnects > 0, f"framerelay_proxy_reconnects_total is {reconnects}"
    assert metric(metrics, "framerelay_proxy_on", "cam") == 1
    assert metric(metrics, "framerelay_proxy_connected", "cam") == 1
    assert server.process.alive()


def test_a_picture_stream_is_passed_through_as_h264(start_server, start_rtmp_server, processes, consumer, tmp_path):
    # Raw pictures (here the minimal protocol's; AVA's take the same road) are encoded to H.264 for FLV.
    _, base, _ = start_rtmp_server()
    server, _ = start_relay(start_server, tmp_path, "--rtmp-endpoint", f"*={base}/{{device}}",
                            "--simple-shape", "240x320x3")
    processes("relay-client", [support.RELAY_CLIENT, "simple", "--server", server.address, "--device", "raw-cam",
                               *PATTERN, "--shape", "240x320x3"])
    stub = consumer(server.address)
    wait_for_frame(stub, "raw-cam")
    proxy(stub, "raw-cam", True)
    stream = wait_for_rtmp(f"{base}/raw-cam", timeout=20)
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 240)
    assert decoded_frames(f"{base}/raw-cam", 10, 320, 240) == 10
