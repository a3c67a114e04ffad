"""Short forms of the benchmark scripts (scripts/bench/*.py, docs/performance.md): each runs end to end on a
tiny load against the binaries under test, relay-transport-floor included, so the scripts and their tables
keep working. Timings from these runs mean nothing (debug builds, tiny loads) and are not checked; the
counts are: every frame asked for acked, every case run, no frame lost, the floor measured beside relay-server.
"""
import json
import re
import subprocess
import sys

import pytest

import support

pytestmark = pytest.mark.binaries

BENCH = support.REPO / "scripts" / "bench"
RUN_LIMIT = 240  # seconds for one script: a clip to encode, fresh servers per case, debug binaries


@pytest.fixture(autouse=True)
def time_limit():
    """conftest's 60 s limit, replaced by one that fits a whole benchmark script."""
    with support.time_limit(RUN_LIMIT + 30):
        yield


def run_bench(script, *args):
    """Runs scripts/bench/SCRIPT with ARGS on the binaries under test; returns (exit status, stdout, report)."""
    run = subprocess.run([sys.executable, BENCH / script, "--bin-dir", support.BIN_DIR, *map(str, args)],
                         capture_output=True, text=True, timeout=RUN_LIMIT, cwd=support.REPO)
    report = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr tail:\n{support.tail(run.stderr, 30)}"
    return run.returncode, run.stdout, report


def row(table, title):
    """The numbers after TITLE on its row of a table, or None when the row is missing."""
    match = re.search(rf"^{re.escape(title)}\s+(.*)$", table, re.M)
    return None if match is None else [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", match.group(1))]


def test_ingest_short_form_runs_every_case_and_the_floor(tmp_path):
    sys.path.insert(0, str(BENCH))
    from clips import make_clip
    clip = make_clip(640, 360, fps=30, seconds=2, gop=30, bitrate=400_000, directory=str(tmp_path / "clips"))
    status, table, report = run_bench(
        "ingest.py", "--runs", 1, "--frames-1080p", 6, "--frames-100k", 200, "--iperf-seconds", 1,
        "--h264-file", clip.mp4, "--out", tmp_path / "ingest.txt")
    assert status == 0, report
    # The frames column: every frame asked for, acked, by relay-server, the grpcio peer and the floor.
    for size, frames in (("(a) 1080p bgr24 6.2 MB", 6), ("(b) 100 KB gray", 200)):
        for server in ("relay", "grpcio", "floor"):
            numbers = row(table, f"{size:<25}{server}")
            assert numbers is not None and numbers[0] == frames, f"{size} {server}\n{report}"
    assert row(table, "(c) H.264 1080p30, fast  relay")[0] == clip.frames, report
    assert "note:" not in table and "failed" not in table, report
    # The ratios against the floor are printed with a value (not "n/a").
    for name in ("(a) floor / grpcio GB/s", "(b) floor / grpcio GB/s", "(a) relay / floor GB/s",
                 "(b) relay / floor GB/s"):
        assert re.search(rf"^{re.escape(name)}\s+\d+\.\d\dx", table, re.M), f"{name}\n{report}"


def test_annotate_short_form_measures_relay_server_and_the_floor(tmp_path):
    status, table, report = run_bench(
        "annotate.py", "--runs", 1, "--calls", 200, "--threads", 2, "--warmup-calls", 10,
        "--dir", tmp_path, "--out", tmp_path / "annotate.txt")
    assert status == 0, report
    for title in ("relay-server Annotate, 2 threads", "floor (no work), 2 threads", "sqlite3 1 fsync/call (baseline)"):
        numbers = row(table, title)
        assert numbers is not None and numbers[0] == 200, f"{title}: 200 calls answered OK\n{report}"
    # No note: relay-server's stored counter matched the calls it answered OK, no call failed.
    assert "note:" not in table, report
    assert re.search(r"^relay / floor: \d+\.\d\dx the calls/s, \d+\.\d\dx the server CPU per call", table, re.M), report


def test_cameras_short_form_loses_nothing_and_measures_the_floor(tmp_path):
    result = tmp_path / "cameras.json"
    status, table, report = run_bench(
        "cameras.py", "--cameras", 2, "--seconds", 3, "--warmup", 1, "--separate-max", 0, "--baseline-copies", 1,
        "--clip-seconds", 4, "--floor", "--json", result, "--out", tmp_path / "cameras.txt")
    assert status == 0, report
    figures = json.loads(result.read_text())
    [relay] = figures["results"]
    assert relay["cameras"] == 2 and relay["frames_lost"] == 0 and relay["frames_captured"] > 0, report
    assert relay["frames_acked"] == relay["frames_stored"], report
    [floor] = figures["floors"]
    assert floor["cameras"] == 2 and floor["frames_acked"] > 0, report
    assert floor["acks_per_s_per_camera"] > 0 and floor["server_cpu_pct"] > 0, report
    assert re.search(r"^frames lost \(captured - stored\)\s+2\s+0\s+0\s+PASS$", table, re.M), report
    assert re.search(r"^\s+2\s+\d+\.\d\s+\d+\.\d{3}\s+\d+\.\d{3}\s+\d+\.\d\d", table, re.M), f"the floor's row\n{report}"


def test_latency_short_form_delivers_frames_and_times_ffmpeg_both_ways(tmp_path):
    result = tmp_path / "latency.json"
    status, table, report = run_bench(
        "latency.py", "--sizes", "320x180", "--publishers", "file,timed", "--seconds", 3, "--warmup", 1,
        "--json", result, "--out", tmp_path / "latency.txt")
    assert status == 0, report
    figures = json.loads(result.read_text())
    assert not figures["failures"], report
    assert [r["publisher"] for r in figures["results"]] == ["file", "timed"], report
    for case in figures["results"]:
        assert case["frames_delivered"] > 0 and case["out_of_order"] == 0, case
    decode = figures["ffmpeg_decode"]["320x180"]
    assert decode["decode_ms"] > 0 and decode["decode_paced_ms"] > 0, decode
    assert re.search(r"^320x180 \(file\)\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+\.\d\d  (PASS|FAIL)",
                     table, re.M), f"the live decode goal's row\n{report}"


def test_publishers_short_form_measures_relay_client_beside_a_minimal_publisher(tmp_path):
    result = tmp_path / "publishers.json"
    status, table, report = run_bench(
        "publishers.py", "--minimal", "--cameras", 2, "--windows", 1, "--seconds", 3, "--warmup", 1,
        "--clip-seconds", 4, "--json", result, "--out", tmp_path / "publishers.txt")
    assert status == 0, report
    figures = json.loads(result.read_text())
    [window] = figures["windows"]
    # Both sides published all their cameras into relay-server in the window, each with CPU measured.
    for side in ("base", "new"):
        assert window[side]["fps_per_camera"] > 0 and window[side]["ms_per_frame"] > 0, f"{side}\n{report}"
    assert re.search(r"^median new/base over 1 window\(s\): \d+\.\d{3}", table, re.M), report
