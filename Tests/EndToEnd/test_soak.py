"""The short form of scripts/soak (issue 14, "A soak"): 3 minutes, 4 test-pattern cameras through one
relay-client, two consumers per camera, 50 annotations/s, recording on for half of the cameras and a server
restart in the middle. The script's exit status and its JSON summary are checked: every frame captured is
stored by one of the two server processes or declared dropped, every OK'd annotation arrived upstream, both
programs lived. The memory and fd figures are information at this length (the script says so)."""
import json
import re
import subprocess
import sys

import pytest

import support

pytestmark = pytest.mark.binaries

MINUTES, CAMERAS = 3, 4
RUN_LIMIT = MINUTES * 60 + 150  # the run, its start and its end (client drain, annotations, server stop)


@pytest.fixture(autouse=True)
def time_limit():
    """This test runs for minutes: conftest's 60 s limit, replaced by one that fits the soak."""
    with support.time_limit(RUN_LIMIT + 30):
        yield


def test_three_minute_soak_with_a_server_restart_loses_nothing(tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, support.REPO / "scripts" / "soak", "--minutes", str(MINUTES),
                          "--cameras", str(CAMERAS), "--bin-dir", support.BIN_DIR, "--json", out],
                         capture_output=True, text=True, timeout=RUN_LIMIT, cwd=support.REPO)
    report = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr tail:\n{support.tail(run.stderr, 40)}"
    assert out.is_file(), f"no JSON summary written; {report}"
    result = json.loads(out.read_text())
    assert run.returncode == 0, report
    assert result["ok"] is True and not result["problems"], report

    # A line per minute, then the goal line with a verdict per item.
    minutes = re.findall(r"^minute +(\d+): client .* MiB .* fds \| server #(\d) ", run.stdout, re.M)
    assert [int(m) for m, _ in minutes] == list(range(1, MINUTES + 1)), run.stdout
    assert {server for _, server in minutes} == {"1", "2"}, "minute lines from before and after the restart"
    assert re.search(r"^goal: memory flat within \+-5% after the first 5 minutes, no fd growth, 0 frames lost", run.stdout, re.M)
    assert re.search(r"^  PASS  0 frames lost outside declared drops$", run.stdout, re.M), run.stdout
    assert re.search(r"^  PASS  0 OK'd annotations lost$", run.stdout, re.M), run.stdout
    assert re.search(r"^result: PASS$", run.stdout, re.M), run.stdout
    assert len(result["minute_lines"]) == MINUTES and result["table"], "the JSON carries what was printed"

    # Frames: per camera, captured = stored (by the old server + the new one, the resent GOP once) + dropped.
    frames = result["frames"]
    assert len(frames["cameras"]) == CAMERAS
    for camera in frames["cameras"]:
        assert camera["captured"] > 30 * MINUTES, camera  # 15 fps: far more than this
        assert camera["stored_old"] > 0 and camera["stored_new"] > 0, f"stored by both server processes: {camera}"
        assert camera["stored"] + camera["dropped"] == camera["captured"], camera
        assert camera["lost"] == 0 and camera["unacked_at_stop"] == 0, camera
        assert camera["reconnects"] >= 1, f"the client reconnected to the new server by itself: {camera}"
        if camera["recorded"]:
            assert camera["recording_frames"] > 0 and camera["recording_on"] == 1, camera
        else:
            assert camera["recording_frames"] == 0, camera
    assert frames["lost"] == 0 and not frames["holes"]
    assert frames["captured"] == sum(c["captured"] for c in frames["cameras"])

    # Annotations: about 50/s for 3 minutes, a few failing while the server is away; every OK'd one upstream.
    annotations = result["annotations"]
    assert annotations["ok"] >= 0.8 * 50 * MINUTES * 60, annotations
    assert annotations["failed_otherwise"] == 0, annotations
    assert annotations["ok_lost"] == 0 and annotations["arrived_ok"] == annotations["ok"], annotations
    assert annotations["upstream_refused"] == 0, annotations

    # The restart: a clean exit, a new server on the same port, consumers served again.
    restart = result["restart"]
    assert restart["old_exit"] == 0 and restart["down_s"] < 30, restart
    consumers = result["consumers"]
    assert consumers["count"] == 2 * CAMERAS
    assert not consumers["without_pictures"] and not consumers["without_pictures_after_restart"], consumers
    assert consumers["errors_otherwise"] == 0, consumers
    assert result["client_exit"] == 0 and result["server_exit"] == 0

    # Memory and fds are measured (and only reported at this length).
    for name in ("client", "server_old", "server_new"):
        segment = result["memory"][name]
        assert segment is not None and segment["baseline_mib"] > 0 and segment["fds_last"] > 0, (name, segment)
    decides = {goal["item"]: goal["decides"] for goal in result["goals"]}
    assert decides["0 frames lost outside declared drops"] and not decides["no fd growth"]
