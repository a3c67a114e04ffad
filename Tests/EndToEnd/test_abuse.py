"""gRPC-level abuse against a running relay-server (issue 14, "Hostile input, measured"): each case is
bounded and measured, and while (or after) it runs the server must still answer a good client, a
well-behaved consumer of a live device, within max(10 x its p50 before the abuse, 0.5 s) at p50,
every one of its calls answered with a picture.

1. 1,000 concurrent VideoLatestImage consumers on one device;
2. connections that ask for 6 MB answers with a tiny receive window and never read (HTTP/2 flow
   control must bound what the server buffers);
3. publishers sending maximum-size frames on the maximum number of devices (resident memory within the
   configured bounds plus a stated constant), one device too many, one frame one byte too large;
4. a flood of calls with bad bearer tokens;
5. Publish streams cancelled in the middle of a 4 MB message.
(--max-connections has its own test in test_limits.py.)

Each case prints its figures and appends them as one JSON line to out/abuse.jsonl. The load generators
run in a process of their own (abuse_support.py crowd|flood) so the good client's latency measures the
server, not this process's GIL.
"""
import json
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

import support
from abuse_support import (CANCEL, DATA, HEADERS, LATEST_IMAGE_PATH, MIB, PUBLISH_PATH, GoodClient, RawH2Connection,
                           RssSampler, assert_good_client_served, good_client_figures, grpc_message, grpc_messages,
                           ms, p50, process_cpu_seconds, record, rss_mib)
from support import PublishSession, frame_request, h264_hello, image_pb, relay_pb2

pytestmark = pytest.mark.binaries

PYTHON = sys.executable
ABUSE_SUPPORT = Path(__file__).resolve().parent / "abuse_support.py"
BGR24_1080P = 1920 * 1080 * 3  # 6,220,800 bytes: one 1080p answer


def run_generator(processes, name, argv, ready, timeout=20):
    """Starts a load generator of abuse_support.py and waits for its `ready` line."""
    generator = processes(name, [PYTHON, ABUSE_SUPPORT, *argv])
    generator.wait_for_output(ready, timeout=timeout)
    return generator


def generator_result(generator, timeout):
    code = generator.wait(timeout)
    assert code == 0, f"{generator.name} exited with {code}:\n{generator.tail()}"
    return json.loads(generator.stdout().strip().splitlines()[-1])


def metrics_text(address, token=None):
    request = urllib.request.Request(f"http://{address}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    return urllib.request.urlopen(request, timeout=5).read().decode()


def metric_sum(text, name, **labels):
    """The sum of the series `name` whose labels include `labels`."""
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:{{([^}}]*)}})? ([0-9.eE+-]+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def assert_alive(server):
    __tracebackhide__ = True
    assert server.process.alive(), (f"relay-server exited with {server.process.returncode}:\n"
                                    f"{server.process.tail()}")


# ================================================================ 1. a thousand consumers

CROWD_CHANNELS, CROWD_PER_CHANNEL, CROWD_SECONDS = 10, 100, 12
DEBUG_BUILD = support.BIN_DIR.name == "debug" or "/debug" in str(support.BIN_DIR)
CROWD_ANSWER = 320 * 240 * 3
TRIM_INTERVAL_S = 10      # relay-server's MemoryTrimmer
# Once freed memory is back, what may stay of the crowd's growth: pools, caches and pages that still
# hold a live block (measured: 36 MiB of 361 debug, 68 of 262 release); without trimming all of it stays.
TRIMMED_SLACK_MIB = 64


def test_a_thousand_concurrent_consumers_on_one_device(start_server, start_client, processes):
    server = start_server()
    pid = server.process.pid
    start_client(server.address, "crowd-cam", "--test-pattern", "--size", "320x240", "--fps", "30")
    good = GoodClient(server.address, "crowd-cam", 320, 240)
    if DEBUG_BUILD:
        good.timeout = 30.0  # see the assertions below
    try:
        good.wait_until_served()
        baseline = good.baseline()
        rss_before = rss_mib(pid)
        cpu_before = process_cpu_seconds(pid)
        crowd = run_generator(processes, "crowd", ["crowd", server.address, "crowd-cam",
                                                   "--channels", str(CROWD_CHANNELS),
                                                   "--per-channel", str(CROWD_PER_CHANNEL),
                                                   "--seconds", str(CROWD_SECONDS)], r"^crowd started")
        with RssSampler(pid) as rss:
            good.start()
            time.sleep(CROWD_SECONDS - 3)
            during, failures = good.stop()
            result = generator_result(crowd, CROWD_SECONDS + 40)
        server_cpu = (process_cpu_seconds(pid) - cpu_before) / result["seconds"]
        time.sleep(1)
        rss_after = rss_mib(pid)
        after_crowd = good.baseline(5)  # still served once the crowd has gone
        # The crowd's answers were freed into malloc's arenas; relay-server trims them every 10 s.
        deadline = time.monotonic() + TRIM_INTERVAL_S + 5
        rss_trimmed = rss_mib(pid)
        kept_bound = max(TRIMMED_SLACK_MIB, (rss.peak_mib - rss_before) / 2)
        while rss_trimmed - rss_before > kept_bound and time.monotonic() < deadline:
            time.sleep(0.5)
            rss_trimmed = rss_mib(pid)
    finally:
        good.close()

    consumers = CROWD_CHANNELS * CROWD_PER_CHANNEL
    # What the server may hold for the crowd: one answer per call in flight, twice (message and its frame).
    rss_bound = 64 + consumers * 2 * CROWD_ANSWER / MIB
    record("1k-consumers", consumers=consumers, seconds=result["seconds"], calls_ok=result["ok"],
           served_per_second=result["served_per_second"], frames=result["frames"], empty=result["empty"],
           mbytes=round(result["bytes"] / 1e6, 1), errors=result["errors"], error_examples=result["error_examples"],
           crowd_call_p50_ms=result["call_p50_ms"], crowd_call_p99_ms=result["call_p99_ms"],
           server_cpu_cores=round(server_cpu, 2), rss_before_mib=rss_before, rss_peak_mib=rss.peak_mib, rss_after_mib=rss_after,
           rss_trimmed_mib=rss_trimmed, rss_kept_bound_mib=round(rss_before + kept_bound, 1),
           rss_peak_bound_mib=round(rss_before + rss_bound, 1), **good_client_figures(baseline, during, failures))

    assert_alive(server)
    assert result["unfinished"] == 0, f"{result['unfinished']} crowd consumers never got their last answer"
    assert result["errors"] == {}, (f"crowd calls failed: {result['errors']} ({result['error_examples']}); no "
                                    "bound on consumers is documented, so every call must be served")
    assert result["ok"] >= consumers, f"only {result['ok']} answers for {consumers} consumers"
    assert result["frames"] >= consumers, f"only {result['frames']} pictures for {consumers} consumers"
    assert rss.peak_mib - rss_before <= rss_bound, (
        f"server RSS grew {rss.peak_mib - rss_before:.0f} MiB under the crowd (bound {rss_bound:.0f} MiB)")
    assert rss_trimmed - rss_before <= kept_bound, (
        f"server RSS stayed {rss_trimmed - rss_before:.0f} MiB above its level before the crowd "
        f"{TRIM_INTERVAL_S + 5} s after it (peak {rss.peak_mib:.0f} MiB, bound {kept_bound:.0f} MiB): freed "
        "memory was not given back")
    if DEBUG_BUILD:
        # Measured with perf: a debug build's NIO spends about a millisecond of CPU per 16 KiB HTTP/2 DATA
        # frame (unspecialised generic integer packing), so serving the crowd's ~30 MB/s takes both cores
        # and any other consumer queues behind it for seconds. The latency bound holds for optimized builds
        # (RELAY_BIN_DIR=.build/release); a debug build must still serve the good client, every call.
        assert not failures, f"the good client was failed during the crowd: {failures[:3]}"
        assert during, "the good client made no call during the crowd"
    else:
        assert_good_client_served(baseline, during, failures, "the crowd of 1,000 consumers")
    assert len(after_crowd) == 5


# ================================================================ 2. connections that never read

STALLED_CONNECTIONS = 50
STALL_WINDOW = 4096       # SETTINGS_INITIAL_WINDOW_SIZE of the stalled connections; no WINDOW_UPDATE ever
STALL_REQUESTS = 8        # requests per stalled stream, one every 0.2 s (a new 1080p frame each time at 5 fps)
# What one stalled stream may pin: its pending answer in the HTTP/2 flow-control buffer and the next one
# waiting in the writer (measured: 13.4 to 15.3 MiB a stream, 2.2 to 2.6 answers, with 2, 8 or 16 requests
# queued), with allocator slack: 3 answers; never one per request queued behind them.
ANSWERS_PER_STALLED_STREAM = 3


def read_whole_answer(host, port, device):
    """A raw connection that does read (windows opened wide): the check that the requests the stalled
    connections send are ones the server answers. Returns the VideoFrame."""
    connection = RawH2Connection(host, port, initial_window=(1 << 31) - 1)
    try:
        connection.handshake()
        connection._send(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + ((1 << 31) - 1 - 65535).to_bytes(4, "big"))
        sid = connection.open_stream(LATEST_IMAGE_PATH)
        connection.send_data(sid, grpc_message(image_pb.VideoFrameRequest(device_id=device).SerializeToString()),
                             end_stream=True)
        connection.read_until(lambda f: f[2] == sid and f[0] == HEADERS and f[1] & 0x1, timeout=15)
        messages = grpc_messages(connection.data_of(sid))
        assert len(messages) == 1, f"{len(messages)} messages in the answer of a raw VideoLatestImage call"
        return image_pb.VideoFrame.FromString(messages[0])
    finally:
        connection.close()


def stall_round(server, good, name, steady_calls=20):
    """STALLED_CONNECTIONS connections, one VideoLatestImage stream each with STALL_REQUESTS requests, a
    receive window of STALL_WINDOW, never a WINDOW_UPDATE and no read until the end (the server's frames are
    only peeked at, MSG_PEEK, to know when every stream's answer has started).

    The good client runs twice: during the burst (the server serializing an answer for every stalled
    stream, as it would for 50 consumers asking at once; recorded) and then, for the assertion, while the
    streams sit stalled with their answers pending."""
    request = grpc_message(image_pb.VideoFrameRequest(device_id="big-cam").SerializeToString())
    stalled = []
    try:
        with RssSampler(server.process.pid) as rss:
            good.start()
            started = time.monotonic()
            connections = [RawH2Connection(server.host, server.port, initial_window=STALL_WINDOW)
                           for _ in range(STALLED_CONNECTIONS)]
            for i, connection in enumerate(connections):
                connection.handshake()
                stalled.append((connection, connection.open_stream(LATEST_IMAGE_PATH,
                                                                   metadata=[("x-consumer-id", f"{name}-{i}")])))
            for connection, sid in stalled:
                connection.send_data(sid, request)
            for _ in range(STALL_REQUESTS - 1):  # more requests on the same streams; nothing read
                time.sleep(0.2)
                for connection, sid in stalled:
                    connection.send_data(sid, request)
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:  # until every stalled stream's answer has started
                started_answers = sum(1 for connection, sid in stalled
                                      if any(f[0] == DATA and f[2] == sid for f in connection.peek_frames()))
                if started_answers == len(stalled):
                    break
                time.sleep(0.2)
            time.sleep(1)  # and the answers queued behind them (if any) are made
            burst_seconds = time.monotonic() - started
            burst, burst_failures = good.stop()
            during, failures = [], []
            if steady_calls:
                good.start()
                deadline = time.monotonic() + 15
                while len(good.latencies) < steady_calls and time.monotonic() < deadline:
                    time.sleep(0.1)
                during, failures = good.stop()
        for connection, _ in stalled:
            connection.drain_available()  # what the server sent them all this time, read only now
        sent = [len(connection.data_of(sid)) for connection, sid in stalled]
        return {"rss": rss, "during": during, "failures": failures, "burst": burst, "burst_failures": burst_failures,
                "burst_seconds": round(burst_seconds, 1),
                "answered": sum(1 for connection, sid in stalled if connection.stream_frames(sid, HEADERS)),
                "sent_max": max(sent), "sent_min": min(sent),
                "goaways": sum(1 for connection, _ in stalled if any(f[0] == 0x7 for f in connection.frames))}
    finally:
        good.stop()
        for connection, _ in stalled:
            connection.close()


def test_connections_that_never_read_are_bounded_by_flow_control(start_server, start_client):
    server = start_server()
    pid = server.process.pid
    start_client(server.address, "big-cam", "--synthetic", "1920x1080:bgr24", "--fps", "5")
    good = GoodClient(server.address, "big-cam", 1920, 1080)
    try:
        good.wait_until_served()
        baseline = good.baseline()
        frame = read_whole_answer(server.host, server.port, "big-cam")
        assert (frame.width, frame.height, len(frame.data)) == (1920, 1080, BGR24_1080P)
        time.sleep(0.5)
        rss_idle = rss_mib(pid)
        first = stall_round(server, good, "first")
        time.sleep(1)
        rss_closed = rss_mib(pid)
        # The same again: what the first left must be reused (the good client only during its burst).
        second = stall_round(server, good, "second", steady_calls=0)
        time.sleep(1)
        rss_closed_again = rss_mib(pid)
        good.start()
        time.sleep(1)
        after, after_failures = good.stop()
    finally:
        good.close()

    streams = STALLED_CONNECTIONS
    growth_bound = 64 + streams * ANSWERS_PER_STALLED_STREAM * BGR24_1080P / MIB
    unbounded_would_be = streams * STALL_REQUESTS * BGR24_1080P / MIB
    growth = first["rss"].peak_mib - rss_idle
    during, failures = first["during"], first["failures"]
    record("never-read", connections=STALLED_CONNECTIONS, streams=streams, requests_per_stream=STALL_REQUESTS,
           receive_window=STALL_WINDOW, answer_bytes=BGR24_1080P,
           streams_answered=[first["answered"], second["answered"]],
           data_bytes_sent_max=max(first["sent_max"], second["sent_max"]),
           data_bytes_sent_min=min(first["sent_min"], second["sent_min"]), goaways=first["goaways"] + second["goaways"],
           rss_idle_mib=rss_idle, rss_peak_mib=first["rss"].peak_mib, rss_after_close_mib=rss_closed,
           rss_second_peak_mib=second["rss"].peak_mib, rss_after_second_close_mib=rss_closed_again,
           growth_mib=round(growth, 1), growth_per_stream_mib=round(growth / streams, 2),
           growth_bound_mib=round(growth_bound, 1), growth_if_every_request_buffered_mib=round(unbounded_would_be),
           burst_seconds=[first["burst_seconds"], second["burst_seconds"]],
           good_burst_calls=[len(first["burst"]), len(second["burst"])],
           good_burst_p50_ms=[ms(p50(first["burst"])), ms(p50(second["burst"]))],
           good_burst_max_ms=[ms(max(first["burst"], default=None)), ms(max(second["burst"], default=None))],
           good_burst_failures=first["burst_failures"] + second["burst_failures"],
           good_after_close_p50_ms=ms(p50(after)), **good_client_figures(baseline, during, failures))

    assert_alive(server)
    for which, result in (("first", first), ("second", second)):
        assert result["answered"] == streams, (
            f"{which} round: only {result['answered']} of {streams} stalled streams got response headers")
        assert result["sent_max"] <= STALL_WINDOW, (
            f"{which} round: the server sent up to {result['sent_max']} DATA bytes on a stream whose window is "
            f"{STALL_WINDOW}: HTTP/2 flow control not respected")
        assert result["sent_min"] > 0, f"{which} round: a stalled stream got no DATA at all: its answer never started"
    assert growth <= growth_bound, (
        f"server RSS grew {growth:.0f} MiB for {streams} streams that never read (bound {growth_bound:.0f} MiB = "
        f"64 + {ANSWERS_PER_STALLED_STREAM} answers of {BGR24_1080P} bytes per stream; buffering every request's "
        f"answer would be {unbounded_would_be:.0f} MiB)")
    # The allocator keeps what the first round freed (RSS after closing stays high), so the second round's
    # peak shows whether the first round's answers were freed: measured over five rounds, the peak levels
    # off (933, 954, 967, 973, 971 MiB); a leak of one answer per stream would add 300 MiB a round.
    assert second["rss"].peak_mib - rss_idle <= growth_bound, (
        f"the same stalled connections a second time took RSS from {rss_closed:.0f} to {second['rss'].peak_mib:.0f} "
        f"MiB (first peak {first['rss'].peak_mib:.0f} MiB, idle {rss_idle:.0f} MiB, bound idle + "
        f"{growth_bound:.0f} MiB): what the first round held was not freed")
    assert_good_client_served(baseline, during, failures, "50 stalled connections that never read")
    assert not after_failures and after, f"good client after the stalled connections closed: {after_failures[:3]}"


# ================================================================ 3. maximum-size frames on every device

MAX_DEVICES = 8
MAX_FRAME = 4 * MIB
RING_BYTES = 16 * MIB
HTTP2_WINDOW = 16 * MIB   # relay-server's default --http2-window-size, stated explicitly
PUBLISH_SECONDS = 8
IN_FLIGHT = 4             # frames a publisher keeps unacknowledged (the server's window is 32)
RSS_CONSTANT_MIB = 80     # the stated constant over idle + devices x ring


class MaxSizePublisher:
    """A well-behaved publisher whose every frame is exactly --max-frame-bytes: an IDR access unit
    padded with zero bytes (legal trailing zeros in Annex-B), so the pictures still decode."""

    def __init__(self, address, device, frame_data):
        self.device, self.frame_data = device, frame_data
        self.session = PublishSession(address, call_timeout=60)
        self.accepted = self.session.handshake(h264_hello(device, 320, 240))
        self.sent = self.acked = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        try:
            while not self._stop.is_set() or self.acked < self.sent:
                while not self._stop.is_set() and self.sent - self.acked < min(IN_FLIGHT, self.accepted.window):
                    self.sent += 1
                    self.session.send(frame_request(self.sent, self.frame_data, self.sent, True))
                kind, value = self.session._incoming.get(timeout=20)
                if kind != "message" or value.WhichOneof("message") != "ack":
                    self.error = f"{kind}: {value.code().name + ': ' + value.details() if kind == 'error' else value}"
                    return
                self.acked += 1
                if value.ack.sequence != self.acked:
                    self.error = f"ack {value.ack.sequence} where {self.acked} was due"
                    return
        except Exception as error:  # noqa: BLE001: reported by the test
            self.error = f"{type(error).__name__}: {error}"

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)

    def close(self):
        self.stop()
        self.session.close()


def test_maximum_size_frames_on_the_maximum_number_of_devices(start_server, annexb_clip):
    server = start_server("--max-devices", str(MAX_DEVICES), "--max-frame-bytes", str(MAX_FRAME),
                          "--ring-max-bytes", str(RING_BYTES), "--http2-window-size", str(HTTP2_WINDOW))
    pid = server.process.pid
    idr, keyframe = annexb_clip.units[0]
    assert keyframe
    frame_data = idr + b"\x00" * (MAX_FRAME - len(idr))
    devices = [f"max-{n}" for n in range(MAX_DEVICES)]
    publishers = []
    good = GoodClient(server.address, devices[0], 320, 240)
    try:
        time.sleep(1)
        rss_idle = rss_mib(pid)
        with RssSampler(pid) as rss:
            publishers.append(MaxSizePublisher(server.address, devices[0], frame_data).start())
            good.wait_until_served()
            baseline = good.baseline()
            publishers += [MaxSizePublisher(server.address, device, frame_data).start() for device in devices[1:]]
            good.start()
            time.sleep(PUBLISH_SECONDS)
            during, failures = good.stop()

            # One device more: refused, naming the limit.
            extra = PublishSession(server.address)
            extra.send(h264_hello("max-one-too-many", 320, 240))
            extra_code, extra_details, _ = extra.expect_error()
            extra.close()
            for publisher in publishers:
                publisher.stop()
        rss_end = rss_mib(pid)
        acked = {p.device: p.acked for p in publishers}
        errors = {p.device: p.error for p in publishers if p.error}

        # One byte over --max-frame-bytes on a device that is within the bound: refused, naming the limit.
        over = publishers[-1]
        over.session.send(frame_request(over.sent + 1, frame_data + b"\x00", over.sent + 1, True))
        over_code, over_details, over_acked = over.session.expect_error(timeout=10)
        after, problem = good.once()
    finally:
        for publisher in publishers:
            publisher.close()
        good.close()

    bound = rss_idle + MAX_DEVICES * RING_BYTES / MIB + RSS_CONSTANT_MIB
    record("max-frames-max-devices", devices=MAX_DEVICES, max_frame_bytes=MAX_FRAME, ring_max_bytes=RING_BYTES,
           http2_window_size=HTTP2_WINDOW, in_flight_per_publisher=IN_FLIGHT, publish_seconds=PUBLISH_SECONDS,
           frames_acked=acked, mbytes_acked=round(sum(acked.values()) * MAX_FRAME / 1e6),
           publisher_errors=errors, rss_idle_mib=rss_idle, rss_peak_mib=rss.peak_mib, rss_end_mib=rss_end,
           rss_bound_mib=round(bound, 1), rss_constant_mib=RSS_CONSTANT_MIB,
           extra_device=f"{extra_code.name}: {extra_details}", over_limit_frame=f"{over_code.name}: {over_details}",
           **good_client_figures(baseline, during, failures))

    assert_alive(server)
    assert not errors, f"publishers within the bounds failed: {errors}"
    assert all(count >= 2 * RING_BYTES // MAX_FRAME for count in acked.values()), (
        f"every device should have cycled its ring at least twice in {PUBLISH_SECONDS}s: acked {acked}")
    assert extra_code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"device {MAX_DEVICES + 1}: {extra_code}: {extra_details}"
    assert "--max-devices" in extra_details and str(MAX_DEVICES) in extra_details, extra_details
    assert over_code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"a frame of max+1 bytes: {over_code}: {over_details}"
    assert "--max-frame-bytes" in over_details and str(MAX_FRAME) in re.sub(r"[,_ ']", "", over_details), over_details
    assert over_acked == [], "the oversized frame must not be acked"
    assert rss.peak_mib <= bound, (
        f"server RSS peaked at {rss.peak_mib:.0f} MiB: over idle {rss_idle:.0f} + {MAX_DEVICES} devices x "
        f"{RING_BYTES // MIB} MiB ring + {RSS_CONSTANT_MIB} MiB = {bound:.0f} MiB")
    assert_good_client_served(baseline, during, failures, f"max-size frames on {MAX_DEVICES} devices")
    assert problem is None, f"good client after the refusals: {problem}"


# ================================================================ 4. a flood of bad tokens

FLOOD_CALLS, FLOOD_IN_FLIGHT = 2000, 250


def test_a_flood_of_bad_tokens(start_server, start_client, processes, tmp_path):
    import secrets
    consume, publish, scrape = (secrets.token_hex(20) for _ in range(3))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{consume} consume\n{publish} publish\n{scrape} metrics\n")
    publisher_token = tmp_path / "publisher.token"
    publisher_token.write_text(publish + "\n")
    server = start_server("--tokens", tokens, "--metrics-listen", "127.0.0.1:0")
    pid = server.process.pid
    start_client(server.address, "guarded-cam", "--test-pattern", "--size", "320x240", "--fps", "30",
                 "--token-file", publisher_token)
    good = GoodClient(server.address, "guarded-cam", 320, 240, token=consume)
    try:
        good.wait_until_served()
        baseline = good.baseline()
        rss_before = rss_mib(pid)
        failures_before = metric_sum(metrics_text(server.metrics_address, scrape), "framerelay_auth_failures_total")
        flood = run_generator(processes, "flood", ["flood", server.address, "guarded-cam", "--calls", str(FLOOD_CALLS),
                                                   "--in-flight", str(FLOOD_IN_FLIGHT)], r"^flood started")
        with RssSampler(pid) as rss:
            good.start()
            code = None
            deadline = time.monotonic() + 40
            while code is None and time.monotonic() < deadline:
                code = flood.wait(0.5)
            during, failures = good.stop()
        result = generator_result(flood, 5)
        text = metrics_text(server.metrics_address, scrape)
    finally:
        good.close()
    counted = metric_sum(text, "framerelay_auth_failures_total") - failures_before
    unauthenticated = metric_sum(text, "framerelay_auth_failures_total", reason="unauthenticated")
    record("bad-token-flood", calls=FLOOD_CALLS, in_flight=FLOOD_IN_FLIGHT, finished=result["finished"],
           seconds=result["seconds"], codes=result["codes"], examples=result["examples"],
           refused_per_second=result["refused_per_second"], refusal_delay_p50_ms=result["delay_p50_ms"],
           refusal_delay_p99_ms=result["delay_p99_ms"], refusal_delay_max_ms=result["delay_max_ms"],
           auth_failures_counted=counted, rss_before_mib=rss_before, rss_peak_mib=rss.peak_mib,
           **good_client_figures(baseline, during, failures))

    assert_alive(server)
    assert result["finished"] == FLOOD_CALLS, f"only {result['finished']} of {FLOOD_CALLS} bad calls were answered"
    # docs/security.md: an unknown token is UNAUTHENTICATED; refusals are slowed down (at most 2 s each),
    # never answered with anything else.
    assert result["codes"] == {"UNAUTHENTICATED": FLOOD_CALLS}, (result["codes"], result["examples"])
    assert not result["token_leaks"], f"a refusal repeated the token: {result['token_leaks']}"
    assert counted >= FLOOD_CALLS and unauthenticated >= FLOOD_CALLS, (counted, unauthenticated)
    assert rss.peak_mib - rss_before <= 64, f"server RSS grew {rss.peak_mib - rss_before:.0f} MiB during the flood"
    assert_good_client_served(baseline, during, failures, "the flood of bad tokens")


# ================================================================ 5. streams cancelled mid-message

CANCEL_WARMUP, CANCEL_ROUNDS = 20, 200
ANNOUNCED, SENT_OF_IT = 4_000_000, 100_000


def test_streams_cancelled_mid_message(start_server, start_client):
    server = start_server("--metrics-listen", "127.0.0.1:0")
    pid = server.process.pid
    start_client(server.address, "steady-cam", "--test-pattern", "--size", "320x240", "--fps", "30")
    good = GoodClient(server.address, "steady-cam", 320, 240)
    partial = b"\x00" + ANNOUNCED.to_bytes(4, "big") + bytes(SENT_OF_IT)  # a 4 MB message cut off at 100 KB
    hello = grpc_message(h264_hello("cancel-cam", 320, 240).SerializeToString())
    kinds = {"closed": 0, "reset": 0, "hello-then-reset": 0}
    persistent = []

    def cancel_one(n):
        """Round n: a Publish stream whose message stops after 100 KB of 4 MB, then
        - n % 3 == 0: the socket of a new connection closed (no RST_STREAM, no GOAWAY);
        - n % 3 == 1: RST_STREAM(CANCEL) on a connection that stays;
        - n % 3 == 2: the same after a complete hello and its accepted answer (a live publisher session)."""
        if n % 3 == 0:
            connection = RawH2Connection(server.host, server.port).handshake()
            sid = connection.open_stream(PUBLISH_PATH)
            connection.send_data(sid, partial)
            connection.close()
            kinds["closed"] += 1
            return
        if not persistent or persistent[-1].next_stream > 2 * 20:  # 20 streams per connection, then a new one
            persistent.append(RawH2Connection(server.host, server.port).handshake())
        connection = persistent[-1]
        sid = connection.open_stream(PUBLISH_PATH)
        if n % 3 == 2:
            connection.send_data(sid, hello)
            connection.read_until(lambda f: f[2] == sid and f[0] == DATA and grpc_messages(connection.data_of(sid)))
            answer = relay_pb2.PublishResponse.FromString(grpc_messages(connection.data_of(sid))[0])
            assert answer.WhichOneof("message") == "accepted", f"raw hello answered {answer}"
            kinds["hello-then-reset"] += 1
        else:
            kinds["reset"] += 1
        connection.send_data(sid, partial)
        connection.reset(sid, CANCEL)
        connection.drain(0.002)

    try:
        good.wait_until_served()
        baseline = good.baseline()
        for n in range(CANCEL_WARMUP):
            cancel_one(n)
        for connection in persistent:
            connection.close()
        persistent.clear()
        kinds.update(dict.fromkeys(kinds, 0))
        time.sleep(1)
        connections_before = support.framerelay_support.metric_value(server.metrics_address, "framerelay_connections")
        rss_before = rss_mib(pid)
        good.start()
        started = time.monotonic()
        with RssSampler(pid) as rss:
            for n in range(CANCEL_ROUNDS):
                cancel_one(n)
                if n == CANCEL_ROUNDS // 2 - 1:
                    rss_half = rss_mib(pid)
            seconds = time.monotonic() - started
            open_raw = len(persistent)
            for connection in persistent:
                connection.close()
            persistent.clear()
            time.sleep(0.5)
            during, failures = good.stop()
        deadline = time.monotonic() + 5
        while True:
            connections_after = support.framerelay_support.metric_value(server.metrics_address,
                                                                        "framerelay_connections")
            if connections_after == connections_before or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(1)
        rss_after = rss_mib(pid)
        with support.consumer_channel(server.address) as channel:
            cancel_cam = support.list_streams(support.image_grpc.ImageStub(channel)).get("cancel-cam")
        device = json.loads(urllib.request.urlopen(f"http://{server.metrics_address}/api/devices/cancel-cam",
                                                   timeout=5).read())
    finally:
        for connection in persistent:
            connection.close()
        good.close()

    record("cancelled-mid-message", rounds=CANCEL_ROUNDS, warmup_rounds=CANCEL_WARMUP, kinds=kinds,
           announced_bytes=ANNOUNCED, sent_bytes=SENT_OF_IT, seconds=round(seconds, 1), raw_connections_kept=open_raw,
           connections_gauge_before=connections_before, connections_gauge_after=connections_after,
           rss_before_mib=rss_before, rss_half_mib=rss_half, rss_peak_mib=rss.peak_mib, rss_after_mib=rss_after,
           cancel_cam_connected=device.get("connected"), cancel_cam_sessions=device.get("sessions"),
           cancel_cam_state=cancel_cam.status if cancel_cam else None,
           **good_client_figures(baseline, during, failures))

    assert_alive(server)
    assert connections_after == connections_before, (
        f"framerelay_connections is {connections_after} after every raw connection closed, {connections_before} "
        "before: connections leaked")
    assert device["connected"] is False, f"cancel-cam still has a publisher after its streams were reset: {device}"
    assert cancel_cam is not None and not cancel_cam.running, f"cancel-cam in ListStreams: {cancel_cam}"
    assert rss_after - rss_before <= 32, (
        f"server RSS {rss_before:.0f} MiB before {CANCEL_ROUNDS} cancelled 4 MB messages, {rss_after:.0f} MiB "
        f"after (half-way {rss_half:.0f} MiB): over 32 MiB more")
    assert_good_client_served(baseline, during, failures, "streams cancelled mid-message")
