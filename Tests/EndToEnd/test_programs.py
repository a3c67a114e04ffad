"""The programs' own behaviour: signals, an unreachable server, and the scripts the tests and demo rely on."""
import json
import re
import signal
import subprocess
import sys
import time

import pytest

import support


@pytest.mark.binaries
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_stops_cleanly_on_signal(server, sig):
    assert server.process.stop(timeout=5, sig=sig) == 0, "relay-server should exit 0 on SIGINT/SIGTERM"


@pytest.mark.binaries
def test_client_keeps_retrying_an_unreachable_server(start_client, free_port):
    address = f"127.0.0.1:{free_port}"  # nothing listens there
    client = start_client(address, "lonely-cam", "--test-pattern", "--size", "320x240", "--fps", "30")
    client.wait_for_output(rf"cannot reach relay-server at {re.escape(address)}.*retrying", timeout=10,
                           stream="stderr")
    time.sleep(3)
    assert client.alive(), f"relay-client gave up; stderr:\n{support.tail(client.stderr())}"


def summary_of(client):
    lines = [line for line in client.stdout().splitlines() if line.startswith("{")]
    assert lines, f"relay-client printed no summary; stdout: {client.stdout()!r}"
    return json.loads(lines[-1])


@pytest.mark.binaries
def test_client_stops_on_sigterm_while_server_unreachable(start_client, free_port):
    address = f"127.0.0.1:{free_port}"
    client = start_client(address, "lonely-cam", "--test-pattern", "--size", "320x240", "--fps", "30")
    client.wait_for_output("retrying", timeout=10, stream="stderr")
    # docs/cli.md: on SIGTERM wait for in-flight acks up to 2 s, print the summary, exit 0.
    assert client.stop(timeout=4) == 0, "relay-client did not exit 0 within 4 s of SIGTERM"
    summary = summary_of(client)
    assert summary["frames_acked"] == 0


@pytest.mark.binaries
def test_client_stops_on_sigterm_after_server_went_away(server, start_client):
    client = start_client(server.address, "orphan-cam", "--test-pattern", "--size", "320x240", "--fps", "30")
    client.wait_for_output(r"acked [1-9]", timeout=15, stream="stderr")  # a status line with acked frames
    assert server.process.stop(timeout=5) == 0
    client.wait_for_output("retrying", timeout=10, stream="stderr")
    assert client.stop(timeout=4) == 0, "relay-client did not exit 0 within 4 s of SIGTERM"
    summary = summary_of(client)
    assert 0 < summary["frames_acked"] <= summary["frames_sent"]


@pytest.mark.binaries
def test_consume_latest_script_writes_png(server, start_client, tmp_path):
    start_client(server.address, "png-cam", "--test-pattern", "--size", "320x240", "--fps", "30")
    out = tmp_path / "latest.png"
    result = subprocess.run([sys.executable, support.REPO / "scripts" / "consume-latest.py",
                             "--server", server.address, "--device", "png-cam", "--out", out, "--timeout", "15"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"wrote 320x240 frame of png-cam \(pts -?\d+, timestamp \d+\) to {re.escape(str(out))}\n",
                        result.stdout), result.stdout
    probed = json.loads(support.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
                                     "-of", "json", out]).stdout)["streams"][0]
    assert (probed["codec_name"], probed["width"], probed["height"]) == ("png", 320, 240)


def rtsp_stream_facts(url):
    out = support.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                       "stream=codec_name,width,height", "-of", "json", url]).stdout
    stream = json.loads(out)["streams"][0]
    return stream["codec_name"], stream["width"], stream["height"]


def test_rtsp_server_script_serves_test_pattern(start_rtsp_server):
    _, url = start_rtsp_server("--size", "320x240", "--fps", "30", "--path", "/pattern")
    assert url.startswith("rtsp://127.0.0.1:") and url.endswith("/pattern")
    assert rtsp_stream_facts(url) == ("h264", 320, 240)


def test_rtsp_server_script_serves_a_file(start_rtsp_server, h264_mp4):
    _, url = start_rtsp_server("--file", h264_mp4.path)
    assert rtsp_stream_facts(url) == ("h264", 320, 240)


ALLOCATOR = r'"memory_allocator"\s*:\s*"([^"]*)"'
# docs/performance.md, "Choosing the allocator"
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0,oversize_threshold:0"


def jemalloc_library():
    found = re.search(r"^\s*libjemalloc\.so\.2 .*=> (\S+)$",
                      subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout, re.M)
    assert found, "libjemalloc.so.2 is not installed (Debian's libjemalloc2): run scripts/setup"
    return found.group(1)


@pytest.mark.binaries
def test_server_says_which_allocator_serves_it(start_server):
    server = start_server("--log-format", "json")
    assert server.process.wait_for_output(ALLOCATOR, timeout=5, stream="stderr").group(1) == "glibc malloc"


@pytest.mark.binaries
def test_raw_frames_flow_under_jemalloc_preloaded(processes, tmp_path):
    """Preloading jemalloc is the documented alternative to glibc's malloc: both programs then run on it
    with the settings given, say so, and raw 1080p frames (the path it speeds up) are stored and acked."""
    env = {"LD_PRELOAD": jemalloc_library(), "MALLOC_CONF": JEMALLOC_CONF}
    server = support.relay_server_ready(processes("relay-server", [
        support.RELAY_SERVER, "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), "--log-format", "json",
    ], env=env))
    in_effect = server.process.wait_for_output(ALLOCATOR, timeout=5, stream="stderr").group(1).split()
    assert in_effect[0] == "jemalloc" and in_effect[1].startswith("5."), in_effect
    for setting in JEMALLOC_CONF.split(","):
        assert setting in in_effect, f"{setting} not in effect: {in_effect}"

    frames = 40
    client = processes("relay-client", [
        support.RELAY_CLIENT, "publish", "--server", server.address, "--device", "jemalloc-cam",
        "--synthetic", "1920x1080", "--frames", str(frames), "--log-level", "debug", "--log-format", "json",
    ], env={**env, "MALLOC_CONF": "dirty_decay_ms:1000"})
    assert client.wait(timeout=30) == 0, support.tail(client.stderr())
    in_effect = re.search(ALLOCATOR, client.stderr()).group(1).split()
    assert in_effect[0] == "jemalloc" and "dirty_decay_ms:1000" in in_effect, in_effect
    summary = summary_of(client)
    assert summary["frames_acked"] == summary["frames_sent"] == frames, summary
