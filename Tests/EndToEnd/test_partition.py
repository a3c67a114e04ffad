"""Network partitions between relay-client and relay-server: `scripts/partition-test --short`, and
store-and-forward through an outage with the client SIGKILLed in it: `scripts/partition-test --outage 20`.

The script puts the two programs in network namespaces of their own joined by a veth pair, cuts the link
(iptables DROP 1 s and 5 s, REJECT with tcp-reset, link down) and reports what arrived. It needs root;
without it (or without `ip`/`iptables`) it exits 77 with the reason and this test skips.
"""
import json
import sys

import pytest

import support

SCRIPT = support.REPO / "scripts" / "partition-test"
SCRIPT_LIMIT = 240  # seconds: ~45 s normally; each partition that never recovers adds up to 30 s
SKIPPED = 77


@pytest.fixture(autouse=True)
def time_limit():
    """Replaces conftest's 60 s limit: this test runs for about 45 s and bounds the script itself."""
    yield


def run_script(tmp_path, *args):
    """The script's JSON result and its output, or a skip when it cannot make namespaces here."""
    __tracebackhide__ = True
    out = tmp_path / "partition.json"
    argv = [sys.executable, str(SCRIPT), *args, "--bin-dir", str(support.BIN_DIR), "--json", str(out)]
    script = support.ManagedProcess("partition-test", argv, tmp_path, merge_output=True)
    try:
        if script.wait(SCRIPT_LIMIT) is None:
            script.stop(timeout=30)  # SIGTERM: it stops its processes and removes its namespaces
            pytest.fail(f"scripts/partition-test {' '.join(args)} ran longer than {SCRIPT_LIMIT} s:\n{script.stdout()}")
    finally:
        script.stop(timeout=30)
    output = script.stdout()
    if script.returncode == SKIPPED:
        pytest.skip(output.strip().splitlines()[-1] if output.strip() else "partition-test skipped")
    assert out.exists(), f"no JSON from scripts/partition-test (exit {script.returncode}):\n{output}"
    result = json.loads(out.read_text())
    context = f"\n{output}"
    assert "error" not in result, f"partition-test failed: {result.get('error')}{context}"
    return result, context, script.returncode


@pytest.mark.binaries
def test_partitions_lose_no_frame_and_store_none_twice(tmp_path):
    result, context, returncode = run_script(tmp_path, "--short")
    kinds = [(p["kind"], p["seconds"]) for p in result["partitions"]]
    assert kinds == [("drop", 1), ("drop", 5), ("reject", 3), ("link-down", 3)], f"partitions {kinds}{context}"
    for number, partition in enumerate(result["partitions"], 1):
        assert partition["reconnect_s"] is not None or partition["uninterrupted"], (
            f"partition #{number} ({partition['kind']} {partition['seconds']} s) was followed by neither a "
            f"reconnect nor an uninterrupted stream: {partition}{context}")
    assert result["frames_stored"] and result["frames_stored"] > 0, f"nothing stored{context}"
    assert result["lost"] == 0, f"lost {result['lost']} frames{context}"
    assert result["stored_twice"] == 0, f"stored twice: {result['stored_twice']}{context}"
    assert returncode == 0, f"partition-test exited {returncode}; problems {result['problems']}{context}"


@pytest.mark.binaries
def test_an_outage_with_the_client_killed_in_it_loses_nothing_with_a_spool(tmp_path):
    result, context, returncode = run_script(tmp_path, "--outage", "20")
    assert [(p["kind"], p["seconds"]) for p in result["partitions"]] == [("drop", 20)], context
    # The first client captured about 10 s at 30 fps before its SIGKILL, none of it acknowledged.
    assert result["first_run_last_sequence"] and result["first_run_last_sequence"] >= 200, context
    assert result["frames_restored"] and result["frames_restored"] >= 200, context
    assert result["frames_captured"] > result["first_run_last_sequence"], context
    assert result["frames_lost_total"] == 0, f"frames declared dropped within the bound{context}"
    assert result["lost"] == 0, f"lost {result['lost']} frames{context}"
    assert result["stored_twice"] == 0, f"stored twice: {result['stored_twice']}{context}"
    assert returncode == 0, f"partition-test exited {returncode}; problems {result['problems']}{context}"
