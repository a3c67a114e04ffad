"""Prometheus metrics through swift-metrics and swift-prometheus, on both programs: counters counted
where things happen (compared with the client's own summary), histograms, gauges read at scrape."""
import json
import re
import time
import urllib.request

import support


def scrape(address):
    return urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()


def series(text, name, **labels):
    """The value of the series `name` whose labels include `labels`; None when there is none."""
    for match in re.finditer(rf"^{re.escape(name)}(?:{{([^}}]*)}})?[ \t]+(\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(2))
    return None


def test_server_and_client_metrics_agree_with_the_summary(start_server, processes, consumer):
    server = start_server("--metrics-listen", "127.0.0.1:0")
    client = processes("relay-client", [support.RELAY_CLIENT, "publish", "--server", server.address, "--device", "m-1",
                                        "--size", "160x120", "--fps", "30", "--duration", "4",
                                        "--metrics-listen", "127.0.0.1:0"])
    client_metrics = client.wait_for_output(r"^relay-client metrics on (\S+)$", timeout=15).group(1)
    stub = consumer(server.address)
    support.wait_for_frame(stub, "m-1", timeout=15)
    for _ in range(5):
        support.latest_image(stub, "m-1")
    time.sleep(1)
    live = scrape(client_metrics)
    assert series(live, "framerelay_client_queued_bytes", device="m-1") is not None
    assert series(live, "framerelay_client_ack_round_trip_seconds_count", device="m-1") > 0
    text = scrape(server.metrics_address)
    assert series(text, "framerelay_consumers", device="m-1") == 1
    assert series(text, "framerelay_consumer_wait_seconds_count") >= 5
    assert series(text, "framerelay_consumer_response_seconds_count") >= 5
    assert series(text, "framerelay_decode_duration_seconds_count") > 0
    # The server's share of live latency: each picture answered was stored, decoded, then written.
    answered = series(text, "framerelay_consumer_frame_age_seconds_count")
    assert answered >= 5
    assert 0 < series(text, "framerelay_consumer_frame_age_seconds_sum") / answered < 2
    assert series(text, "framerelay_decode_lag_seconds_count") >= answered
    assert series(text, "framerelay_consumer_frame_age_seconds_bucket", le="0.003") is not None  # ours, not the default
    assert series(text, "framerelay_ack_latency_seconds_count", protocol="native") > 0
    assert client.wait(20) == 0, client.tail()
    summary = json.loads([l for l in client.stdout().splitlines() if '"event":"summary"' in l][-1])
    text = scrape(server.metrics_address)
    acked = summary["frames_acked"]
    assert series(text, "framerelay_frames_stored_total", device="m-1") == acked
    assert series(text, "framerelay_frames_in_total", protocol="native", device="m-1") == acked
    assert series(text, "framerelay_frames_acked_total", protocol="native", device="m-1") == acked
    assert series(text, "framerelay_sessions_total", device="m-1") == 1 + summary["reconnects"]
    assert series(text, "framerelay_frames_lost_total", device="m-1") == 0
    assert series(text, "process_resident_memory_bytes") > 10_000_000
    assert re.search(r"^# TYPE framerelay_ack_latency_seconds histogram$", text, re.M)


def test_frame_times_are_not_in_the_servers_future(start_server, processes, consumer):
    """The client re-measures the clock offset from every ack and keeps the sample with the smallest round
    trip, so a slow first exchange cannot push frame times ahead of the server's clock."""
    server = start_server("--metrics-listen", "127.0.0.1:0")
    processes("relay-client", [support.RELAY_CLIENT, "publish", "--server", server.address, "--device", "clock-1",
                               "--size", "160x120", "--fps", "30"])
    stub = consumer(server.address)
    support.wait_for_frame(stub, "clock-1", timeout=15)
    time.sleep(2)  # acks have given their samples
    ahead = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        frame = support.latest_image(stub, "clock-1")
        now = stub.SystemTime(support.image_pb.SystemTimeRequest(), timeout=5).current_time
        if frame.timestamp:
            ahead.append(frame.timestamp - now)
    device = json.loads(urllib.request.urlopen(f"http://{server.metrics_address}/api/devices/clock-1", timeout=5).read())
    best_rtt = device["ack_round_trip_ms"]
    assert ahead, "no frames"
    assert best_rtt <= 5, f"the best round trip on loopback is a few ms at most, got {best_rtt}"
    assert max(ahead) <= best_rtt / 2 + 1, f"a frame {max(ahead)} ms in the server's future (best round trip {best_rtt} ms)"
