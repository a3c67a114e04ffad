#!/usr/bin/env python3
"""Annotate benchmark: durable unary Annotate calls per second into relay-server's SQLite outbox, next to
the "one fsync per call" baseline on the same file system. Started by scripts/bench-annotate.

  relay:    a fresh relay-server (--data-dir on --dir, no upstream: every annotation stays in the outbox),
            --threads grpcio client threads, each on a channel (TCP connection) of its own, calling Annotate
            one call after the other for --seconds (or --calls in all). An OK means committed to the outbox.
  floor:    the same clients against relay-transport-floor, relay-server's transport, settings and threads
            with nothing behind Annotate (answered at once: no validation, no SQLite, no fsync): the
            least a unary call costs on this transport, and the most calls/s these clients reach here.
  baseline: a plain Python sqlite3 loop in the same directory: WAL, synchronous=FULL, one INSERT + COMMIT
            per annotation (the same serialized AnnotateRequest), one thread: what a server without group
            commit could do at best.
Each is run --runs times, interleaved; the table shows medians, relay-server's CPU (utime+stime from /proc
over the measured calls) in all and per call, the ratio relay / baseline, and issue 13's goals for 8
clients (>= 10,000 durable calls/s, <= 0.1 ms server CPU per call) as PASS/FAIL. The relay's count is
checked against its framerelay_annotations_stored_total.
Only grpcio and the stubs in build/python are needed.
"""
import argparse
import datetime
import itertools
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import framerelay_support  # noqa: E402
from framerelay_support import ManagedProcess, ProcessError, metric_value, percentile, process_cpu_seconds  # noqa: E402
from framerelay_support import cpu_stall_seconds, own_cpu_seconds  # noqa: E402

REPO = str(framerelay_support.REPO)
framerelay_support.add_stubs_to_path()
import grpc  # noqa: E402
from chrysalis import video_streaming_pb2 as pb, video_streaming_pb2_grpc as rpc  # noqa: E402

# Issue 13's goal, for 8 clients: durable calls per second, and relay-server CPU per call.
GOAL_CALLS_PER_S = 10000
GOAL_SERVER_CPU_MS_PER_CALL = 0.1
GOAL_THREADS = 8
READY_TIMEOUT_S = 30
CALL_TIMEOUT_S = 10


class BenchError(Exception):
    pass


def annotation(thread, number):
    """A typical detection: box, a few mask points, a short signature, model names (about 300 bytes)."""
    return pb.AnnotateRequest(
        device_name=f"bench-cam-{thread}", remote_stream_id=f"rtsp://127.0.0.1:8554/cam-{thread}", type="person",
        start_timestamp=1_700_000_000_000 + number, end_timestamp=1_700_000_000_040 + number, object_type="human",
        object_id=f"object-{number}", object_tracking_id=f"track-{number % 17}", confidence=0.87,
        object_bouding_box=pb.BoudingBox(top=10, left=20, width=64, height=128),
        mask=[pb.Coordinate(x=0.1 * i, y=0.05 * i) for i in range(8)], object_signature=[0.01 * i for i in range(16)],
        ml_model="yolov8n", ml_model_version="8.1.0", width=1920, height=1080, is_keyframe=False, video_type="h264",
        offset_frame_id=number, custom_meta_1=f"bench:{thread}:{number}")


def filesystem_of(path):
    """(mount point, type) of the file system holding path, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("/", "?")
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
                    best = (point, fields[2])
    except OSError:
        pass
    return best


def metric(address, name):
    value = metric_value(address, name)
    if value is None:
        raise BenchError(f"relay-server's metrics have no {name}")
    return value


def drive(address, threads, seconds, calls, warmup_calls, server_pid=None):
    """Runs the client threads; returns (ok calls, errors, latencies in s, wall s, client CPU s, server CPU s
    or None). Both CPU figures cover the measured calls only (after the warm-up, until every thread ended)."""
    counter = itertools.count()  # its next() is atomic under the GIL: a shared call quota
    quota = calls if calls else None
    barrier = threading.Barrier(threads + 1)
    per_thread = [None] * threads
    failures = []

    def client(index):
        latencies, errors, done = [], [], 0
        channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            stub = rpc.ImageStub(channel)
            grpc.channel_ready_future(channel).result(timeout=10)
            request = annotation(index, 0)
            for number in range(warmup_calls // threads):  # connection and server warm, not measured
                request.custom_meta_1 = f"warmup:{index}:{number}"
                stub.Annotate(request, timeout=CALL_TIMEOUT_S)
            barrier.wait(timeout=60)
            deadline = time.monotonic() + seconds
            number = 0
            while True:
                if quota is not None:
                    if next(counter) >= quota:
                        break
                elif time.monotonic() >= deadline:
                    break
                number += 1
                request.custom_meta_1 = f"bench:{index}:{number}"
                request.start_timestamp = 1_700_000_000_000 + number
                started = time.perf_counter()
                try:
                    stub.Annotate(request, timeout=CALL_TIMEOUT_S)
                except grpc.RpcError as error:
                    errors.append(f"{error.code().name}: {error.details()}")
                    continue
                latencies.append(time.perf_counter() - started)
                done += 1
            per_thread[index] = (done, errors, latencies, time.monotonic())
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(f"client {index}: {error!r}")
            try:
                barrier.abort()
            except threading.BrokenBarrierError:
                pass
        finally:
            channel.close()

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(timeout=120)
    except threading.BrokenBarrierError:
        raise BenchError("a client could not start: " + "; ".join(failures)) from None
    started, cpu_before = time.monotonic(), own_cpu_seconds()
    server_before = process_cpu_seconds(server_pid) if server_pid else None
    for worker in workers:
        worker.join(seconds + 2 * CALL_TIMEOUT_S + 60 if not calls else 600)
    cpu = own_cpu_seconds() - cpu_before
    server_after = process_cpu_seconds(server_pid) if server_pid else None
    server_cpu = None if server_before is None or server_after is None else server_after - server_before
    if failures or any(w.is_alive() for w in workers) or None in per_thread:
        raise BenchError("clients failed: " + ("; ".join(failures) or "still running"))
    ended = max(entry[3] for entry in per_thread)
    ok = sum(entry[0] for entry in per_thread)
    errors = [e for entry in per_thread for e in entry[1]]
    latencies = sorted(l for entry in per_thread for l in entry[2])
    return ok, errors, latencies, ended - started, cpu, server_cpu


def relay_run(args, name, children, scratch):
    data = os.path.join(scratch, f"{name}.data")
    # A session of its own: a Ctrl-C on the terminal reaches only us, and we stop the server ourselves.
    try:
        relay = framerelay_support.start_relay_server(
            os.path.join(args.bin_dir, "relay-server"), args.log_dir, "--metrics-listen", "127.0.0.1:0",
            "--data-dir", data, name=f"{name}.server", timeout=READY_TIMEOUT_S, new_session=True)
    except ProcessError as error:
        shutil.rmtree(data, ignore_errors=True)
        raise BenchError(f"{error.summary}\n{error.stderr_tail or ''}") from None
    server = relay.process
    children.append(server)
    try:
        stall_before, stall_from = cpu_stall_seconds(), time.monotonic()
        ok, errors, latencies, wall, client_cpu, server_cpu = drive(
            relay.address, args.threads, args.seconds, args.calls, args.warmup_calls, server_pid=server.pid)
        stall_after, stall_to = cpu_stall_seconds(), time.monotonic()
        stored = metric(relay.metrics_address, "framerelay_annotations_stored_total")
        if not server.alive():
            raise BenchError(f"relay-server exited with {server.returncode} during the run")
    except BenchError as error:
        raise BenchError(f"{error}\n{server.tail(lines=5)}") from None
    finally:
        server.stop(timeout=5.0)
        children.remove(server)
        shutil.rmtree(data, ignore_errors=True)
    notes = []
    warmup = args.warmup_calls // args.threads * args.threads
    if stored != ok + warmup:
        notes.append(f"framerelay_annotations_stored_total {stored:.0f}, but {ok} + {warmup} warm-up calls answered OK")
    if errors:
        notes.append(f"{len(errors)} calls failed, e.g. {errors[0]}")
    if not ok:
        raise BenchError("no call succeeded: " + "; ".join(notes))
    # Over the whole relay run (warm-up included): how busy the machine was meanwhile.
    stall = None if stall_before is None or stall_after is None else (stall_after - stall_before) / (stall_to - stall_from)
    return measured(ok, latencies, wall, client_cpu, server_cpu, notes) | {"stall": stall}


def measured(ok, latencies, wall, client_cpu, server_cpu, notes):
    """One run's row: calls answered OK, their rate and latency, the clients' and the server's CPU."""
    return {"calls": ok, "rate": ok / wall, "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000, "client_cpu": client_cpu / wall,
            "server_cpu": None if server_cpu is None else server_cpu / wall,
            "server_ms_per_call": None if server_cpu is None else server_cpu / ok * 1000, "notes": notes}


def floor_run(args, name, children):
    """The clients against relay-transport-floor: what the transport alone costs per call."""
    server = ManagedProcess(f"{name}.server", [
        os.path.join(args.bin_dir, "relay-transport-floor"), "--listen", "127.0.0.1:0"], args.log_dir,
        new_session=True)
    children.append(server)
    try:
        address = framerelay_support.transport_floor_ready(server, READY_TIMEOUT_S)
        ok, errors, latencies, wall, client_cpu, server_cpu = drive(
            address, args.threads, args.seconds, args.calls, args.warmup_calls, server_pid=server.pid)
        if not server.alive():
            raise BenchError(f"relay-transport-floor exited with {server.returncode} during the run")
    except (BenchError, ProcessError) as error:
        raise BenchError(f"{error}\n{server.tail(lines=5)}") from None
    finally:
        server.stop(timeout=5.0)
        children.remove(server)
    if not ok:
        raise BenchError(f"no call succeeded: {len(errors)} failed, e.g. {errors[:1]}")
    notes = [f"{len(errors)} calls failed, e.g. {errors[0]}"] if errors else []
    return measured(ok, latencies, wall, client_cpu, server_cpu, notes)


def baseline_run(args, name, scratch):
    """One thread, one INSERT + COMMIT per annotation, WAL + synchronous=FULL: one fsync per call."""
    path = os.path.join(scratch, f"{name}.sqlite")
    body = annotation(0, 0).SerializeToString()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        assert connection.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE outbox (rowid INTEGER PRIMARY KEY, annotation_id TEXT NOT NULL UNIQUE, "
                           "body BLOB NOT NULL, created_ms INTEGER NOT NULL)")
        latencies = []
        quota = args.calls
        started = time.monotonic()
        deadline = started + args.seconds
        while (len(latencies) < quota) if quota else (time.monotonic() < deadline):
            begun = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO outbox (annotation_id, body, created_ms) VALUES (?, ?, ?)",
                               (str(uuid.uuid4()), body, int(time.time() * 1000)))
            connection.execute("COMMIT")
            latencies.append(time.perf_counter() - begun)
        wall = time.monotonic() - started
    finally:
        connection.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except OSError:
                pass
    return {"calls": len(latencies), "rate": len(latencies) / wall, "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000, "client_cpu": None, "server_cpu": None,
            "server_ms_per_call": None, "notes": []}


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def render(args, results, failures, started, filesystem):
    med = lambda runs, key: statistics.median([r[key] for r in runs if r[key] is not None]) \
        if any(r[key] is not None for r in runs) else None  # noqa: E731
    point, fstype = filesystem
    load = "by calls: " + str(args.calls) if args.calls else f"{args.seconds:g} s"
    lines = [
        f"FrameRelay Annotate benchmark, {started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores",
        f"binaries: {args.bin_dir}" + ("   ** DEBUG BUILD: not representative **" if "debug" in args.bin_dir else ""),
        f"data on {args.dir} ({fstype} at {point})" + ("   ** tmpfs: fsync costs nothing here **"
                                                       if fstype in ("tmpfs", "ramfs") else ""),
        f"median of {args.runs} run(s) of {load}; relay: {args.threads} grpcio threads, a channel each, unary calls "
        f"one after the other, no upstream; baseline: Python sqlite3, one thread, WAL + synchronous=FULL, "
        f"one INSERT + COMMIT per call",
        "",
        f"{'case':<40}{'calls':>8}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'client CPU':>12}{'server CPU':>12}"
        f"{'server ms/call':>16}  each run (calls/s)",
    ]
    titles = {"relay": f"relay-server Annotate, {args.threads} threads",
              "floor": f"floor (no work), {args.threads} threads",
              "baseline": "sqlite3 1 fsync/call (baseline)"}
    for case, title in titles.items():
        runs = results.get(case, [])
        if not runs:
            lines.append(f"{title:<40}  failed: {'; '.join(failures.get(case, ['not run']))}")
            continue
        lines.append(f"{title:<40}{fmt(med(runs, 'calls'), '.0f'):>8}{fmt(med(runs, 'rate'), '.0f'):>10}"
                     f"{fmt(med(runs, 'p50'), '.2f'):>9}{fmt(med(runs, 'p99'), '.2f'):>9}"
                     f"{fmt(med(runs, 'client_cpu'), '.0%'):>12}{fmt(med(runs, 'server_cpu'), '.0%'):>12}"
                     f"{fmt(med(runs, 'server_ms_per_call'), '.3f'):>16}  "
                     + " ".join(f"{r['rate']:.0f}" for r in runs))
        for note in sorted({n for r in runs for n in r["notes"]}) + failures.get(case, []):
            lines.append(f"{'':<6}note: {note}")
    relay, baseline, floor = results.get("relay"), results.get("baseline"), results.get("floor")
    lines.append("")
    if relay and baseline:
        lines.append(f"relay / baseline: {med(relay, 'rate') / med(baseline, 'rate'):.1f}x "
                     f"(what group commit buys over one fsync per call)")
    if relay and floor:
        floor_ms = med(floor, "server_ms_per_call")
        lines.append(f"relay / floor: {med(relay, 'rate') / med(floor, 'rate'):.2f}x the calls/s"
                     + ("" if floor_ms is None or med(relay, "server_ms_per_call") is None else
                        f", {med(relay, 'server_ms_per_call') / floor_ms:.2f}x the server CPU per call")
                     + " (the floor: the same transport answering at once, nothing stored)")
    clients = "" if args.threads == GOAL_THREADS else \
        f" (the goal is for {GOAL_THREADS} clients; this run had {args.threads})"
    if relay:
        rate, per_call = med(relay, "rate"), med(relay, "server_ms_per_call")
        lines.append(f"goal, {GOAL_THREADS} clients: ≥ {GOAL_CALLS_PER_S:,} durable calls/s: {rate:,.0f} calls/s, "
                     f"{'PASS' if rate >= GOAL_CALLS_PER_S else 'FAIL'}{clients}")
        lines.append(f"goal, {GOAL_THREADS} clients: ≤ {GOAL_SERVER_CPU_MS_PER_CALL} ms server CPU per call: "
                     + ("n/a (no CPU figure)" if per_call is None else
                        f"{per_call:.3f} ms, {'PASS' if per_call <= GOAL_SERVER_CPU_MS_PER_CALL else 'FAIL'}")
                     + clients)
    else:
        lines.append(f"goal, {GOAL_THREADS} clients: ≥ {GOAL_CALLS_PER_S:,} durable calls/s and ≤ "
                     f"{GOAL_SERVER_CPU_MS_PER_CALL} ms server CPU per call: n/a (the relay case failed)")
    stalls = [r["stall"] for r in (relay or []) if r.get("stall") is not None]
    if stalls:
        lines.append("CPU pressure during the relay runs (share of the time some runnable task waited for a CPU, "
                     "/proc/pressure/cpu; near 0% on a quiet machine): " + ", ".join(f"{v:.0%}" for v in stalls))
    lines.append("(client CPU near 100% per core means the Python clients, not the server, set the pace; "
                 "server CPU: utime+stime of relay-server over the measured calls, per call = that / calls)")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", default=os.environ.get("RELAY_BIN_DIR", os.path.join(REPO, ".build", "release")),
                        help="where relay-server and relay-transport-floor are (env RELAY_BIN_DIR; default .build/release)")
    parser.add_argument("--threads", type=int, default=8, help="client threads, a channel each (default 8)")
    parser.add_argument("--seconds", type=float, default=5, help="length of each run (default 5)")
    parser.add_argument("--calls", type=int, help="calls per run in all, instead of --seconds")
    parser.add_argument("--warmup-calls", type=int, default=400, help="calls before each relay run, not measured")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="file system to measure: data directories and the baseline database go here "
                             "(default: the temp directory)")
    parser.add_argument("--out", default=os.path.join(REPO, "out", "bench-annotate.txt"))
    args = parser.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.dir = os.path.abspath(args.dir)
    for program in ("relay-server", "relay-transport-floor"):
        if not os.access(os.path.join(args.bin_dir, program), os.X_OK):
            sys.exit(f"bench-annotate: no {program} in {args.bin_dir} (build it, or set RELAY_BIN_DIR)")
    if args.threads < 1 or args.runs < 1 or (args.calls is not None and args.calls < 1) or args.seconds <= 0:
        sys.exit("bench-annotate: --threads, --runs, --calls and --seconds must be positive")

    framerelay_support.interrupt_on_signals()  # SIGTERM, SIGHUP: through the `finally` that stops the server

    started = datetime.datetime.now(datetime.timezone.utc)
    args.log_dir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "bench-annotate-logs")
    os.makedirs(args.log_dir, exist_ok=True)
    children, results, failures = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-annotate-", dir=args.dir) as scratch:
        try:
            for run in range(1, args.runs + 1):
                # Alternate which goes first, so neither always gets the warmer (or busier) machine.
                order = ["relay", "floor", "baseline"] if run % 2 else ["baseline", "floor", "relay"]
                for case in order:
                    name = f"{case}.{run}"
                    print(f"bench-annotate: run {run}/{args.runs}: {case}", file=sys.stderr, flush=True)
                    try:
                        result = relay_run(args, name, children, scratch) if case == "relay" else \
                            floor_run(args, name, children) if case == "floor" else baseline_run(args, name, scratch)
                        results.setdefault(case, []).append(result)
                    except BenchError as error:
                        failures.setdefault(case, []).append(f"run {run}: {str(error).splitlines()[0]}")
                        print(f"bench-annotate: {case} failed: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print("bench-annotate: interrupted", file=sys.stderr)
            return 130
        finally:
            for process in list(children):
                process.stop(timeout=5.0)

    table = render(args, results, failures, started, filesystem_of(args.dir))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table)
    print(table, end="")
    print(f"(saved to {os.path.relpath(args.out, REPO)}; logs in {os.path.relpath(args.log_dir, REPO)}/)",
          file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
