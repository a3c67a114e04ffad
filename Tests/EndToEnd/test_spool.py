"""relay-client --spool: the queue on disk. Frames captured while no server answers survive a SIGKILL of
the client and arrive once when it starts again; the spool's bound drops whole GOPs; an unusable
directory is a clear error at start. Real processes on loopback, a real spool directory."""
import os
import signal
import subprocess
import time

import pytest

import support
from support import pick_port
from test_resilience import PATTERN, metrics_of, start_server_on, summary_after_stop

pytestmark = pytest.mark.binaries


def segment_bytes(spool, device):
    folder = spool / device
    return sum(f.stat().st_size for f in folder.glob("*.seg")) if folder.exists() else 0


def test_frames_spooled_before_a_sigkill_arrive_once_after_a_restart(processes, tmp_path):
    port = pick_port()
    spool = tmp_path / "spool"
    config = tmp_path / "client.yaml"
    # The spool named in the settings file (spool: {dir: …}), as an installation would have it.
    config.write_text(f"server: 127.0.0.1:{port}\ndevice: spooled\nspool:\n  dir: {spool}\n  max_bytes: 268435456\n")
    argv = [support.RELAY_CLIENT, "publish", "--config", str(config), *PATTERN]
    first = processes("relay-client", argv)
    first.wait_for_output(r"status: .* queued (\d{3,})", timeout=30, stream="stderr")  # 100+ frames, no server
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert segment_bytes(spool, "spooled") > 0, "nothing was written to the spool"

    _, metrics = start_server_on(processes, port, tmp_path / "server-data")
    second = processes("relay-client-2", argv)
    match = second.wait_for_output(r"spool \S+: (\d+) frames from an earlier run to send \(sequences 1…(\d+)\)",
                                   timeout=20, stream="stderr")
    restored, first_last = int(match.group(1)), int(match.group(2))
    assert restored == first_last >= 100, match.group(0)
    time.sleep(2)
    summary = summary_after_stop(second)
    figures = metrics_of(metrics, "spooled")
    assert summary["frames_restored"] == restored, summary
    assert summary["frames_dropped"] == 0, summary
    assert summary["frames_acked"] == restored + summary["frames_captured"], summary
    # Every sequence number both runs gave is stored, once, in order.
    assert figures["framerelay_last_sequence"] == first_last + summary["frames_captured"], (figures, summary)
    assert figures["framerelay_frames_stored_total"] == figures["framerelay_last_sequence"], figures
    assert figures["framerelay_frames_lost_total"] == 0, figures


def test_the_spool_bound_drops_whole_gops_and_bounds_the_disk(start_client, tmp_path):
    spool = tmp_path / "spool"
    bound = 1 << 20
    client = start_client(f"127.0.0.1:{pick_port()}", "small", *PATTERN, "--spool", str(spool),
                          "--spool-max-bytes", str(bound), "--queue-max-bytes", "100000")
    client.wait_for_output(r"queue bound reached .* dropped \d+ frames", timeout=60, stream="stderr")
    time.sleep(2)
    summary = summary_after_stop(client)
    assert summary["frames_dropped"] > 0 and summary["frames_dropped"] % 30 == 0, (
        f"whole GOPs of 30 are dropped: {summary}")
    # The files hold the bound plus at most one segment (1 MiB here) and the records' few bytes.
    assert segment_bytes(spool, "small") <= bound + (1 << 20) + 64 * 1024, segment_bytes(spool, "small")


def test_an_unusable_spool_directory_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = subprocess.run([str(a) for a in [support.RELAY_CLIENT, "publish", "--server", f"127.0.0.1:{pick_port()}", "--device", "x",
                             *PATTERN, "--spool", str(blocker)]], capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert "spool directory" in result.stderr and str(blocker) in result.stderr, result.stderr
