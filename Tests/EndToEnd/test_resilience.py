"""Staying up: the client's bounded queue, a relay-server killed with SIGKILL and replaced, and the
one clear line a bad camera argument gets. Real processes on loopback."""
import json
import re
import signal
import subprocess
import time
import urllib.request

import pytest

import support
from support import pick_port, wait_for_frame

pytestmark = pytest.mark.binaries

PATTERN = ["--test-pattern", "--size", "320x240", "--fps", "30"]


def start_server_on(processes, port, data_dir):
    """relay-server on a fixed port (so a client can find a replacement) with metrics on a free one."""
    process = processes("relay-server", [support.RELAY_SERVER, "--listen", f"127.0.0.1:{port}",
                                         "--metrics-listen", "127.0.0.1:0", "--data-dir", str(data_dir)])
    return process, support.relay_server_ready(process, timeout=15).metrics_address


def metrics_of(address, device):
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    values = {}
    for name, value in re.findall(r'^(framerelay_\w+)\{device="' + re.escape(device) + r'"\} ([0-9.eE+-]+)$', text, re.M):
        values[name] = int(float(value))  # gauges are written as floats
    return values


def summary_after_stop(client):
    assert client.stop(timeout=10) == 0, "relay-client exits 0 on SIGTERM"
    lines = [line for line in client.stdout().splitlines() if line.startswith("{")]
    assert lines, f"no summary line: {client.stdout()!r}"
    return json.loads(lines[-1])


def test_queue_bound_drops_whole_gops_and_tells_the_server(processes, start_client, consumer, tmp_path):
    port = pick_port()
    # Nothing listens yet: frames pile up in a queue bound far smaller than 4 s of video.
    client = start_client(f"127.0.0.1:{port}", "bounded", *PATTERN, "--queue-max-bytes", "40000")
    client.wait_for_output(r"queue bound reached .* dropped \d+ frames", timeout=20, stream="stderr")
    time.sleep(1)
    _, metrics = start_server_on(processes, port, tmp_path / "server-data")
    wait_for_frame(consumer(f"127.0.0.1:{port}"), "bounded", timeout=30)

    summary = summary_after_stop(client)
    figures = metrics_of(metrics, "bounded")
    assert summary["frames_dropped"] > 0
    assert summary["frames_captured"] == summary["frames_acked"] + summary["frames_dropped"], summary
    assert figures["framerelay_frames_lost_total"] == summary["frames_dropped"], "the server learnt of every drop"
    assert figures["framerelay_frames_stored_total"] == summary["frames_acked"]
    assert (figures["framerelay_frames_stored_total"] + figures["framerelay_frames_lost_total"]
            == figures["framerelay_last_sequence"] == summary["frames_captured"]), figures


def test_server_killed_and_replaced_loses_nothing(processes, start_client, consumer, tmp_path):
    port = pick_port()
    first, _ = start_server_on(processes, port, tmp_path / "server-data")
    client = start_client(f"127.0.0.1:{port}", "survivor", *PATTERN)
    wait_for_frame(consumer(f"127.0.0.1:{port}"), "survivor", timeout=20)

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(5)
    time.sleep(3)  # the client keeps capturing into its queue meanwhile
    _, metrics = start_server_on(processes, port, tmp_path / "server-data")
    resent = int(client.wait_for_output(
        r"reconnected to relay-server at 127\.0\.0\.1:\d+ after \d+ ms; resending (\d+) frames",
        timeout=20, stream="stderr").group(1))
    reconnected = time.monotonic()
    wait_for_frame(consumer(f"127.0.0.1:{port}"), "survivor", timeout=20)
    assert time.monotonic() - reconnected < 1.0, "consumers of the new server get pictures within 1 s"

    summary = summary_after_stop(client)
    figures = metrics_of(metrics, "survivor")
    # A new server has no resume point: the client gives it the current GOP again from its keyframe
    # (the frames the dead server acknowledged before it are declared stored elsewhere), so nothing
    # captured is dropped.
    assert summary["frames_dropped"] == 0, summary
    assert summary["frames_captured"] == summary["frames_acked"], summary
    assert resent >= 30, f"only {resent} frames queued during a 3 s outage"
    assert figures["framerelay_frames_lost_total"] == 0, figures
    assert figures["framerelay_frames_stored_total"] >= resent, figures
    assert figures["framerelay_last_sequence"] == summary["frames_captured"]
    assert (figures["framerelay_frames_stored_total"] + figures["framerelay_frames_stored_elsewhere_total"]
            >= figures["framerelay_last_sequence"]), "everything is here or was stored by the dead server"


def test_ten_server_kills_drop_nothing(processes, start_client, consumer, tmp_path):
    port = pick_port()
    server, _ = start_server_on(processes, port, tmp_path / "server-data")
    client = start_client(f"127.0.0.1:{port}", "hardy", *PATTERN)
    wait_for_frame(consumer(f"127.0.0.1:{port}"), "hardy", timeout=20)
    pattern = r"reconnected to relay-server at 127\.0\.0\.1:\d+ after \d+ ms"
    late = []
    for kill in range(1, 11):
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(5)
        time.sleep(0.5)
        server, metrics = start_server_on(processes, port, tmp_path / "server-data")
        deadline = time.monotonic() + 15
        while len(re.findall(pattern, client.stderr())) < kill:
            assert time.monotonic() < deadline, f"no reconnect after kill {kill}"
            time.sleep(0.05)
        reconnected = time.monotonic()
        wait_for_frame(consumer(f"127.0.0.1:{port}"), "hardy", timeout=10)
        if time.monotonic() - reconnected >= 1.0:
            late.append((kill, round(time.monotonic() - reconnected, 2)))
        time.sleep(0.5)
    summary = summary_after_stop(client)
    assert summary["reconnects"] == 10, summary
    assert summary["frames_dropped"] == 0, f"frames dropped across 10 server kills: {summary}"
    assert summary["frames_captured"] == summary["frames_acked"], summary
    assert metrics_of(metrics, "hardy")["framerelay_frames_lost_total"] == 0
    assert not late, f"kills after which the new server's consumers waited 1 s or more: {late}"


def test_bad_rtsp_scheme_is_one_line_and_a_failure():
    run = subprocess.run([str(support.RELAY_CLIENT), "publish", "--device", "x", "--rtsp", "http://camera/stream"],
                         capture_output=True, text=True, timeout=20)
    assert run.returncode == 2, "a bad setting: exit code 2"
    lines = run.stderr.strip().splitlines()
    assert lines == ['relay-client: rtsp (--rtsp): "http://camera/stream" is not an rtsp:// or rtsps:// URL'], lines


def test_unreachable_rtsp_host_is_retried_with_its_address(start_client):
    port = pick_port()
    client = start_client("127.0.0.1:1", "nowhere", "--rtsp", f"rtsp://127.0.0.1:{port}/cam")
    line = client.wait_for_output(r"camera not ready: (.*)$", timeout=20, stream="stderr").group(1)
    assert f"rtsp://127.0.0.1:{port}/cam" in line
    client.wait_for_output(r"camera failed, reopening in [0-9.]+s", timeout=20, stream="stderr")
    assert client.alive(), "a running publisher keeps retrying"
