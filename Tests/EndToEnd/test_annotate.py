"""Annotate: stored durably in the SQLite outbox before OK, then forwarded upstream at least once with a
stable id. Real relay-server processes on loopback; the upstreams are Tests/EndToEnd/upstreams.py
(HttpUpstream, GrpcUpstream), switched between failure modes while the relay forwards.

Every annotation sent here carries custom_meta_1 = "<tag>:<number>" (fixed width), so what arrives upstream
is matched to what was sent by content, whatever id the relay gave it. The contract is
docs/annotations-upstream.md; the flags and statuses are those of relay-server --help.
"""
import errno
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager

import grpc
import pytest

import support
from support import image_grpc, image_pb
from upstreams import GrpcUpstream, HttpUpstream, ID_METADATA_KEY

pytestmark = pytest.mark.binaries

OUTBOX = "annotations.sqlite"
ANNOTATE_TIMEOUT = 20.0  # seconds per call: a debug build under 400 calls in flight on 2 cores
START_MS = 1_700_000_000_000
FAST_RETRIES = ["--annotations-retry-max-ms", "1000", "--annotations-batch-wait-ms", "50"]
OK = grpc.StatusCode.OK


# ---------------------------------------------------------------- annotations

def annotation(tag, number, device="cam-1", **extra):
    """An AnnotateRequest with every kind of field set (int64 past 2**53, doubles, repeated, nested, UTF-8)."""
    fields = dict(
        device_name=device, remote_stream_id=f"rtsp://127.0.0.1:8554/{device}", type="person",
        start_timestamp=START_MS + number, end_timestamp=START_MS + number + 40,
        object_type="human", object_id=f"object-{number}", object_tracking_id=f"track-{number % 7}",
        confidence=0.5 + (number % 50) / 100,
        object_bouding_box=image_pb.BoudingBox(top=number % 100, left=20, width=64, height=128),
        location=image_pb.Location(lat=52.520008, lon=13.404954),
        object_coordinate=image_pb.Coordinate(x=0.25, y=0.5, z=1.5),
        mask=[image_pb.Coordinate(x=0.125, y=0.25), image_pb.Coordinate(x=0.375, y=0.75)],
        object_signature=[0.1, -2.5, 1e-3, float(number)], ml_model="yolo", ml_model_version="8.1",
        width=1920, height=1080, is_keyframe=number % 2 == 0, video_type="h264",
        offset_timestamp=number * 33, offset_duration=33, offset_frame_id=number,
        offset_packet_id=2 ** 60 + number,
        custom_meta_1=f"{tag}:{number:06d}", custom_meta_5="caméra ✓ \"quoted\" \\ back")
    fields.update(extra)
    return image_pb.AnnotateRequest(**fields)


def number_of(request, tag):
    """The number of an annotation of this test (custom_meta_1 "tag:000123"), or None."""
    match = re.fullmatch(re.escape(tag) + r":(\d{6})", request.custom_meta_1)
    return int(match.group(1)) if match else None


def echo_of(request):
    return image_pb.AnnotateResponse(device_name=request.device_name, remote_stream_id=request.remote_stream_id,
                                     type=request.type, start_timestamp=request.start_timestamp)


def metadata_for(annotation_id):
    return [(ID_METADATA_KEY, annotation_id)] if annotation_id else None


def call(stub, request, annotation_id=None, timeout=ANNOTATE_TIMEOUT):
    """(status code, response on OK else the details)."""
    try:
        return OK, stub.Annotate(request, metadata=metadata_for(annotation_id), timeout=timeout)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""


def send_ok(stub, request, annotation_id=None):
    code, value = call(stub, request, annotation_id)
    assert code == OK, f"Annotate {request.custom_meta_1} ({request.device_name}) answered {code.name}: {value}"
    assert value == echo_of(request), f"the answer echoes the request's four fields; got {value}"
    return value


def send_from_threads(address, chunks, in_flight=False, timeout=45.0):
    """Sends each chunk [(request, id or None)] from a thread of its own on a channel (connection) of its own,
    one call after the other, or all of the chunk's calls at once (in_flight). Returns
    [(request, id, code, response or details)] of every call; bounded by `timeout`."""
    results = [None] * len(chunks)
    errors = []

    def outcome(future):
        try:
            return OK, future.result()
        except grpc.RpcError as error:
            return error.code(), error.details() or ""

    def run(index, chunk):
        try:
            with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                stub = image_grpc.ImageStub(channel)
                if in_flight:
                    pending = [(r, i, stub.Annotate.future(r, metadata=metadata_for(i), timeout=ANNOTATE_TIMEOUT))
                               for r, i in chunk]
                    results[index] = [(r, i, *outcome(f)) for r, i, f in pending]
                else:
                    results[index] = [(r, i, *call(stub, r, i)) for r, i in chunk]
        except Exception as error:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(k, c), daemon=True) for k, c in enumerate(chunks)]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"Annotate senders still busy after {timeout}s"
    if errors:
        raise errors[0]
    return [entry for chunk in results for entry in chunk]


def assert_all_ok(results):
    failed = [(r.custom_meta_1, code.name, value) for r, _, code, value in results if code != OK]
    assert not failed, f"{len(failed)} of {len(results)} Annotate calls failed, e.g. {failed[:5]}"
    wrong = [(r.custom_meta_1, value) for r, _, _, value in results if value != echo_of(r)]
    assert not wrong, f"answers that do not echo the request: {wrong[:3]}"


# ---------------------------------------------------------------- relay-server

class Relay:
    def __init__(self, process, address, metrics_address, data_dir):
        self.process, self.address, self.metrics_address, self.data_dir = process, address, metrics_address, data_dir

    def metrics(self):
        """{name: value} of the framerelay_annotations_* metrics (those without labels)."""
        text = urllib.request.urlopen(f"http://{self.metrics_address}/metrics", timeout=5).read().decode()
        return {name: float(value) for name, value in
                re.findall(r"^(framerelay_annotations_\w+)(?:\{\})? (\S+)$", text, re.M)}

    def wait_for_metrics(self, expected, timeout=10.0):
        """Polls until every metric in `expected` has that value; fails showing the last values seen."""
        deadline = time.monotonic() + timeout
        while True:
            values = self.metrics()
            if all(values.get(name) == value for name, value in expected.items()):
                return values
            if time.monotonic() > deadline:
                shown = {name: values.get(name, "missing") for name in expected}
                pytest.fail(f"metrics never reached {expected} within {timeout}s; last seen {shown}")
            time.sleep(0.1)

    def kill(self):
        self.process.process.send_signal(signal.SIGKILL)
        self.process.process.wait(5)


def start_relay(processes, data_dir, *args):
    """relay-server on 127.0.0.1:0 with --data-dir and metrics on a free port."""
    process = processes("relay-server", [support.RELAY_SERVER, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                                         "--metrics-listen", "127.0.0.1:0", *args])
    server = support.relay_server_ready(process, timeout=20)
    return Relay(process, server.address, server.metrics_address, data_dir)


# ---------------------------------------------------------------- what the upstream got

def ids_by_number(upstream, tag):
    """{number: {ids it arrived with}} over everything the upstream accepted (duplicates included)."""
    found = {}
    for received in list(upstream.received):
        number = number_of(received.request, tag)
        assert number is not None, f"the upstream got an annotation nobody sent: {received.request}"
        found.setdefault(number, set()).add(received.annotation_id)
    return found


def wait_for_numbers(upstream, tag, numbers, timeout):
    wanted = set(numbers)
    upstream.wait_until(lambda u: wanted <= {number_of(r.request, tag) for r in u.received}, timeout,
                        f"all of {len(wanted)} annotations (by content) received")


def assert_delivered_once_each(upstream, tag, sent, ids=None):
    """Every sent annotation arrived, unchanged, under one id of its own; repeats only under that same id.
    sent: {number: AnnotateRequest}; ids: {number: the id the test gave it} where it gave one."""
    found = ids_by_number(upstream, tag)
    assert set(found) == set(sent), f"missing {sorted(set(sent) - set(found))[:10]}"
    several = {n: sorted(i) for n, i in found.items() if len(i) != 1}
    assert not several, f"one annotation arrived under several ids (a retry must keep the id): {several}"
    id_of = {n: next(iter(i)) for n, i in found.items()}
    assert all(isinstance(i, str) and i for i in id_of.values()), "every annotation carries a non-empty id"
    assert len(set(id_of.values())) == len(sent), "two annotations share one id"
    assert len(upstream.unique_ids()) == len(sent)
    for received in list(upstream.received):
        number = number_of(received.request, tag)
        assert received.request == sent[number], \
            f"{received.annotation_id} arrived changed:\n{received.request}\nsent:\n{sent[number]}"
    for number, given in (ids or {}).items():
        assert id_of[number] == given, f"{tag}:{number} was sent with {ID_METADATA_KEY} {given}, arrived as {id_of[number]}"
    return id_of


def first_arrival_order(upstream, tag):
    """Numbers in order of their first arrival."""
    return list(dict.fromkeys(number_of(r.request, tag) for r in list(upstream.received)))


# ---------------------------------------------------------------- the outbox file

def assert_wal_header(path):
    """The database header says WAL (bytes 18 and 19 are 2): read as plain bytes, so no SQLite lock is taken."""
    with open(path, "rb") as f:
        header = f.read(100)
    assert header[:16] == b"SQLite format 3\x00", f"{path} is not an SQLite database: {header[:16]!r}"
    assert (header[18], header[19]) == (2, 2), f"{path} is not in WAL mode (header bytes 18/19: {header[18]}/{header[19]})"


def outbox_rows(data_dir, scratch):
    """The outbox of a stopped server, read from a copy (database + WAL, the server's file stays untouched):
    (journal mode, [row as bytes, every column joined])."""
    scratch.mkdir()
    database = data_dir / OUTBOX
    assert database.is_file(), f"no {database}"
    for suffix in ("", "-wal"):
        if os.path.exists(f"{database}{suffix}"):
            shutil.copyfile(f"{database}{suffix}", scratch / f"{OUTBOX}{suffix}")
    connection = sqlite3.connect(scratch / OUTBOX)
    try:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        rows = []
        for row in connection.execute("SELECT * FROM outbox"):
            rows.append(b"\x00".join(v if isinstance(v, bytes) else str(v).encode() for v in row))
        return mode, rows
    finally:
        connection.close()


def numbers_in_rows(rows, tag):
    pattern = re.compile(re.escape(tag.encode()) + rb":(\d{6})")
    return [int(m.group(1)) for row in rows for m in pattern.finditer(row)]


# ---------------------------------------------------------------- tests

def test_required_fields_and_echo(processes, consumer, tmp_path):
    relay = start_relay(processes, tmp_path / "data")
    stub = consumer(relay.address)
    full = annotation("valid", 1, device="cam-echo")
    for field, request in [
        ("device_name", image_pb.AnnotateRequest(type="person", start_timestamp=START_MS)),
        ("type", image_pb.AnnotateRequest(device_name="cam-1", start_timestamp=START_MS)),
        ("start_timestamp", image_pb.AnnotateRequest(device_name="cam-1", type="person")),
        ("start_timestamp", image_pb.AnnotateRequest(device_name="cam-1", type="person", start_timestamp=-5)),
        ("device_name", annotation("invalid", 2, device_name="")),
    ]:
        code, details = call(stub, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"without a valid {field}: {code.name} {details!r}"
        assert field in details, f"INVALID_ARGUMENT details should name {field}: {details!r}"

    assert stub.Annotate(full, timeout=ANNOTATE_TIMEOUT) == echo_of(full)
    minimal = image_pb.AnnotateRequest(device_name="cam-2", type="motion", start_timestamp=START_MS + 7)
    assert stub.Annotate(minimal, timeout=ANNOTATE_TIMEOUT) == image_pb.AnnotateResponse(
        device_name="cam-2", type="motion", start_timestamp=START_MS + 7)
    # The refused ones were not stored; the two good ones wait in the outbox (no upstream here).
    relay.wait_for_metrics({"framerelay_annotations_pending": 2, "framerelay_annotations_stored_total": 2})


def test_ok_means_durable_across_sigkill(processes, consumer, tmp_path):
    data = tmp_path / "data"
    tag, count = "durable", 200
    sent = {n: annotation(tag, n, device=f"cam-{n % 3}") for n in range(count)}
    with GrpcUpstream() as upstream:
        upstream.mode = "unavailable"
        relay = start_relay(processes, data, "--annotations-upstream", upstream.url, *FAST_RETRIES)
        stub = consumer(relay.address)
        for n in range(100):
            send_ok(stub, sent[n])
        # The other 100 from 4 connections, 25 in flight on each.
        chunks = [[(sent[n], None) for n in range(100 + k, count, 4)] for k in range(4)]
        assert_all_ok(send_from_threads(relay.address, chunks, in_flight=True))
        relay.kill()  # right after the last OK
        assert not upstream.received, "the upstream was unavailable: nothing can have been accepted"

        assert_wal_header(data / OUTBOX)
        mode, rows = outbox_rows(data, tmp_path / "outbox-copy")
        assert mode == "wal"
        stored = numbers_in_rows(rows, tag)
        assert sorted(stored) == list(range(count)), \
            f"the killed server's outbox holds {len(stored)} of {count} OK'd annotations"

        upstream.mode = "ok"
        again = start_relay(processes, data, "--annotations-upstream", upstream.url, *FAST_RETRIES)
        wait_for_numbers(upstream, tag, sent, timeout=30)
        assert_delivered_once_each(upstream, tag, sent)
        again.wait_for_metrics({"framerelay_annotations_pending": 0})
        assert again.metrics()["framerelay_annotations_forwarded_total"] >= count
        assert_wal_header(data / OUTBOX)


def header(attempt, name):
    lowered = {k.lower(): v for k, v in attempt.headers.items()}
    return lowered.get(name.lower())


def test_http_upstream_signed_at_least_once_through_failures(processes, tmp_path):
    tag, secret = "http", "e2e-shared-secret"
    secret_file = tmp_path / "annotations.secret"
    secret_file.write_text(secret + "\n")  # the trailing newline is not part of the secret
    sent = {n: annotation(tag, n, device="cam-a" if n % 2 == 0 else "cam-b") for n in range(80)}

    def send(numbers):
        """One thread per device, each device's annotations one after the other in increasing order."""
        chunks = [[(sent[n], None) for n in numbers if sent[n].device_name == device] for device in ("cam-a", "cam-b")]
        assert_all_ok(send_from_threads(relay.address, chunks))

    def count(outcome):
        return lambda u: sum(a.outcome.startswith(outcome) for a in u.attempts)

    with HttpUpstream(secret=secret, path="/v1/annotations") as upstream:
        upstream.mode = "refuse"
        relay = start_relay(processes, tmp_path / "data", "--annotations-upstream", upstream.url,
                            "--annotations-secret-file", secret_file, "--annotations-batch-size", "20",
                            "--annotations-timeout-ms", "1000", *FAST_RETRIES)
        send(range(0, 20))
        upstream.wait_until(lambda u: count("503")(u) >= 2, 10, "a refused batch tried again")

        upstream.mode = "blackhole"
        send(range(20, 40))
        # Held without an answer: the relay gives up after --annotations-timeout-ms and tries again.
        upstream.wait_until(lambda u: sum(a.mode == "blackhole" for a in u.attempts) >= 2, 15,
                            "a held request given up by the relay (--annotations-timeout-ms) and sent again")

        upstream.mode = "reset"
        upstream.wait_until(lambda u: count("reset")(u) >= 1, 10, "a request answered by a TCP reset")

        upstream.mode = "lose-reply"
        send(range(40, 60))
        upstream.wait_until(lambda u: count("recorded, then reset")(u) >= 2, 10, "two batches whose reply was lost")
        assert upstream.received, "lose-reply records what it gets"

        upstream.mode = "ok"
        send(range(60, 80))
        wait_for_numbers(upstream, tag, sent, timeout=20)
        lost_reply_ids = {i for a in upstream.attempts if a.outcome == "recorded, then reset" for i in a.ids}
        upstream.wait_until(lambda u: lost_reply_ids <= {i for a in u.attempts if a.outcome == "200" for i in a.ids},
                            10, "every annotation whose reply was lost sent again and confirmed")

        attempts = list(upstream.attempts)
        bad = [(a.index, a.outcome) for a in attempts if a.outcome[:3] in ("400", "401", "404")]
        assert not bad, f"requests the upstream refused as malformed or badly signed: {bad}"
        id_of = assert_delivered_once_each(upstream, tag, sent)
        assert upstream.duplicates(), "lost replies must lead to the same annotations being sent again"
        assert set(upstream.duplicates()) <= set(id_of.values())
        for attempt in attempts:
            if attempt.outcome in ("200", "recorded, then reset"):
                assert "application/json" in (header(attempt, "Content-Type") or ""), attempt.headers
                stamp = header(attempt, "X-Relay-Timestamp")
                assert stamp and abs(int(stamp) - attempt.arrived_ms) < 5000, \
                    f"request {attempt.index} signed at {stamp}, arrived {attempt.arrived_ms}: retries are signed afresh"
        order = first_arrival_order(upstream, tag)
        for device in ("cam-a", "cam-b"):
            of_device = [n for n in order if sent[n].device_name == device]
            assert of_device == sorted(of_device), f"{device}: first arrivals out of order: {of_device}"
        relay.wait_for_metrics({"framerelay_annotations_pending": 0})
        values = relay.metrics()
        assert values["framerelay_annotations_forward_failures_total"] >= 5, values
        assert values["framerelay_annotations_upstream_configured"] == 1, values


def test_grpc_upstream_through_a_second_relay_keeps_ids(processes, consumer, tmp_path):
    tag = "chain"
    sent = {n: annotation(tag, n, device=f"cam-{n % 2}") for n in range(30)}
    given = {n: f"e2e-chain-{n}" for n in range(20)}  # the last 10 get ids made by the edge relay
    with GrpcUpstream() as upstream:
        cloud = start_relay(processes, tmp_path / "cloud", "--annotations-upstream", upstream.url, *FAST_RETRIES)
        edge = start_relay(processes, tmp_path / "edge", "--annotations-upstream", f"grpc://{cloud.address}",
                           *FAST_RETRIES)
        stub = consumer(edge.address)
        for n, request in sent.items():
            send_ok(stub, request, given.get(n))
        wait_for_numbers(upstream, tag, sent, timeout=30)
        refused = [(a.index, a.outcome) for a in upstream.attempts if a.outcome != "OK"]
        assert not refused, f"calls the end upstream refused (each needs exactly one {ID_METADATA_KEY}): {refused}"
        id_of = assert_delivered_once_each(upstream, tag, sent, ids=given)
        assert not set(id_of[n] for n in range(20, 30)) & set(given.values())
        for relay in (edge, cloud):
            relay.wait_for_metrics({"framerelay_annotations_pending": 0})


def test_burst_of_concurrent_calls_all_arrive(processes, tmp_path):
    tag, threads, per_thread = "burst", 8, 50
    sent = {n: annotation(tag, n, device=f"cam-{n // per_thread}") for n in range(threads * per_thread)}
    given = {n: f"e2e-burst-{n}" for n in sent if (n // per_thread) % 2 == 0}  # odd threads: ids by the relay
    with HttpUpstream() as upstream:
        relay = start_relay(processes, tmp_path / "data", "--annotations-upstream", upstream.url, *FAST_RETRIES)
        chunks = [[(sent[n], given.get(n)) for n in range(t * per_thread, (t + 1) * per_thread)]
                  for t in range(threads)]
        started = time.monotonic()
        assert_all_ok(send_from_threads(relay.address, chunks, in_flight=True))
        elapsed = time.monotonic() - started
        wait_for_numbers(upstream, tag, sent, timeout=30)
        assert_delivered_once_each(upstream, tag, sent, ids=given)
        assert not upstream.duplicates(), \
            f"nothing failed, yet {len(upstream.duplicates())} annotations were sent twice: {upstream.attempts[:5]}"
        relay.wait_for_metrics({"framerelay_annotations_pending": 0,
                                "framerelay_annotations_stored_total": len(sent),
                                "framerelay_annotations_forwarded_total": len(sent)})
        print(f"{len(sent)} concurrent Annotate calls answered in {elapsed:.2f}s")


def test_no_upstream_keeps_everything_in_the_outbox(processes, consumer, tmp_path):
    tag = "kept"
    relay = start_relay(processes, tmp_path / "data")
    relay.process.wait_for_output(r"(?i)no annotations upstream", timeout=5, stream="stderr")
    stub = consumer(relay.address)
    sent = {n: annotation(tag, n) for n in range(25)}
    given = {n: f"e2e-kept-{n}" for n in range(10)}
    for n, request in sent.items():
        send_ok(stub, request, given.get(n))
    for n in given:  # the same ids again: OK, stored once (pending counts rows; stored_total counts OK answers)
        send_ok(stub, sent[n], given[n])
    expected = {"framerelay_annotations_upstream_configured": 0, "framerelay_annotations_pending": len(sent),
                "framerelay_annotations_stored_total": len(sent) + len(given),
                "framerelay_annotations_forwarded_total": 0,
                "framerelay_annotations_store_failures_total": 0}
    relay.wait_for_metrics(expected, timeout=5)
    time.sleep(1)
    values = relay.metrics()
    assert {name: values.get(name) for name in expected} == expected, "nothing leaves the outbox without an upstream"


# ---------------------------------------------------------------- the data directory's file system

@contextmanager
def mounted_tmpfs(directory, options):
    """A tmpfs of our own at `directory` (needs root); unmounted at the end (lazily if still busy)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a small tmpfs as the data directory (disk full, read-only)")
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                             capture_output=True, text=True, timeout=10)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=10)


def fill(path):
    """Writes to `path` until the file system says ENOSPC (large writes, then smaller ones for the rest)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 16, 4096, 512, 1):
            block = b"\xff" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def test_disk_full_is_resource_exhausted_never_ok(processes, consumer, tmp_path):
    tag = "full"
    with mounted_tmpfs(tmp_path / "small", "size=1m") as data:
        relay = start_relay(processes, data)
        try:
            stub = consumer(relay.address)
            oked = []
            for n in range(3):
                send_ok(stub, annotation(tag, n))
                oked.append(n)
            fill(data / "filler")
            assert os.statvfs(data).f_bavail == 0, "the tmpfs is not full"

            # Large annotations: whatever slack the outbox files still have is used up within a few calls.
            outcomes = []
            for n in range(3, 60):
                code, value = call(stub, annotation(tag, n, custom_meta_4="x" * 3000))
                outcomes.append((n, code, value))
                if code == OK:
                    oked.append(n)
                else:
                    break
            n, code, details = outcomes[-1]
            assert code != OK, f"{len(outcomes)} large annotations answered OK on a full file system"
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"disk full answered {code.name}: {details!r}"
            assert "full" in details.lower(), f"RESOURCE_EXHAUSTED should say the data directory is full: {details!r}"
            for n in range(100, 105):  # still full: never OK
                code, details = call(stub, annotation(tag, n))
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, \
                    f"call {n} on a still-full disk answered {code.name}: {details!r}"
            current = stub.SystemTime(image_pb.SystemTimeRequest(), timeout=support.CALL_TIMEOUT).current_time
            assert abs(current - support.now_ms()) < 5000
            assert relay.metrics()["framerelay_annotations_store_failures_total"] >= 6

            os.unlink(data / "filler")  # room again: the outbox works again
            deadline = time.monotonic() + 10
            while True:
                code, details = call(stub, annotation(tag, 200))
                if code == OK:
                    oked.append(200)
                    break
                assert time.monotonic() < deadline, f"still {code.name} 10 s after space was freed: {details!r}"
                time.sleep(0.2)
        finally:
            relay.process.stop()
        mode, rows = outbox_rows(data, tmp_path / "outbox-copy")
        stored = set(numbers_in_rows(rows, tag))
        assert set(oked) <= stored, f"answered OK but not in the outbox: {sorted(set(oked) - stored)}"


def test_read_only_data_dir_is_failed_precondition_and_video_still_served(processes, consumer, tmp_path):
    with mounted_tmpfs(tmp_path / "readonly", "ro,size=1m") as data:
        relay = start_relay(processes, data)
        try:
            stub = consumer(relay.address)
            for n in range(2):  # each call tries to open the outbox again, and fails again
                code, details = call(stub, annotation("ro", n))
                assert code == grpc.StatusCode.FAILED_PRECONDITION, f"read-only data dir: {code.name} {details!r}"
                assert str(data) in details, f"FAILED_PRECONDITION should name the path {data}: {details!r}"
            assert isinstance(support.list_streams(stub), dict)
            current = stub.SystemTime(image_pb.SystemTimeRequest(), timeout=support.CALL_TIMEOUT).current_time
            assert abs(current - support.now_ms()) < 5000

            remount = subprocess.run(["mount", "-o", "remount,rw", str(data)], capture_output=True, text=True,
                                     timeout=10)
            assert remount.returncode == 0, remount.stderr
            send_ok(stub, annotation("ro", 2))  # the outbox opens on the next call
        finally:
            relay.process.stop()
