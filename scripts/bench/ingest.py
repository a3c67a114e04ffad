#!/usr/bin/env python3
"""Ingest benchmark: the real Publish path (frames answered by acks) on loopback, side by side with a
Python grpcio peer doing the same protocol and iperf3 as the ceiling. Started by scripts/bench-ingest.

Cases, each run on a fresh server:
  (a) 1920x1080 bgr24 synthetic frames, 6,220,800 bytes: relay-client -> relay-server, and grpcio
  (b) 400x250 gray synthetic frames, 100,000 bytes:       relay-client -> relay-server, and grpcio
  (c) a 1080p30 H.264 file replayed with --pace fast:      relay-client -> relay-server
  (a) and (b) also relay-client -> relay-transport-floor: the same transport, settings and threads as
      relay-server with nothing behind Publish (each frame decoded, acked, dropped), the floor no
      change to FrameRelay's own code can go below.
  iperf3 over 127.0.0.1: one TCP stream, the ceiling for (a).
Every case runs --runs times (interleaved, so slow drift of the machine hits all cases alike) and the
table shows the median of each number, the server's CPU per frame (utime+stime of relay-server or of the
grpcio peer while the client ran, per acked frame) included. Only the standard library is needed here.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import framerelay_support  # noqa: E402
from framerelay_support import ManagedProcess, ProcessError, file_tail, pick_port, process_cpu_seconds  # noqa: E402

REPO = str(framerelay_support.REPO)
PEER = os.path.join(REPO, "scripts", "bench", "grpcio_peer.py")

FRAME_1080P_BYTES = 1920 * 1080 * 3   # bgr24
FRAME_100K_BYTES = 400 * 250          # gray
RING_MAX_BYTES = 512 * 1024 * 1024    # the same bound for relay-server and the grpcio peer
MAX_FRAME_BYTES = 16 * 1024 * 1024
READY_TIMEOUT_S = 30                  # debug builds start slower than release ones

# Goals of issue 13 (round one's were 1.0x, 2.5x and 50%): (name, numerator case, denominator case, target).
GOALS = [
    ("(a) relay / grpcio GB/s", "a-relay", "a-grpcio", 1.5),
    ("(b) relay / grpcio GB/s", "b-relay", "b-grpcio", 3.0),
    ("(a) relay GB/s / iperf3 GB/s", "a-relay", "iperf3", 0.7),
]
# The same ratios with the floor in relay-server's place (the most any FrameRelay change could reach on
# this transport), and what relay-server keeps of the floor's throughput.
FLOOR_RATIOS = [
    ("(a) floor / grpcio GB/s", "a-floor", "a-grpcio", 1.5),
    ("(b) floor / grpcio GB/s", "b-floor", "b-grpcio", 3.0),
    ("(a) floor GB/s / iperf3 GB/s", "a-floor", "iperf3", 0.7),
    ("(a) relay / floor GB/s", "a-relay", "a-floor", None),
    ("(b) relay / floor GB/s", "b-relay", "b-floor", None),
]


class BenchError(Exception):
    pass


class Children:
    """Every process the bench starts, so that all of them are gone when it exits, however it exits."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.running = []

    def start(self, name, argv):
        # A session of its own: a Ctrl-C on the terminal reaches only us, and we end each child's
        # whole process group ourselves. Output goes to NAME.stdout and NAME.stderr in the log folder.
        process = ManagedProcess(name, argv, self.log_dir, new_session=True)
        self.running.append(process)
        return process

    def stop(self, process, grace_s=3.0):
        process.stop(timeout=grace_s)
        if process in self.running:
            self.running.remove(process)

    def stop_all(self):
        for process in list(self.running):
            self.stop(process)


def summary_from(path):
    """The last {"event":"summary"} JSON line a client printed, or None."""
    summary = None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    parsed = json.loads(line)
                except ValueError:
                    continue
                if parsed.get("event") == "summary":
                    summary = parsed
    return summary


class Bench:
    def __init__(self, args, children, log_dir):
        self.args = args
        self.children = children
        self.log_dir = log_dir
        self.bin_dir = args.bin_dir

    def log(self, name):
        return os.path.join(self.log_dir, name)

    def start_server(self, name, argv, ready):
        """Starts a server and waits for its ready line; ready(process) returns its address."""
        process = self.children.start(f"{name}.server", argv)
        try:
            return process, ready(process)
        except ProcessError as error:
            self.children.stop(process)
            raise BenchError(f"{error.summary}\n{error.stderr_tail or ''}") from None

    def run_client(self, name, argv):
        """Runs a client to its end (or --case-timeout, then SIGTERM makes it print its summary)."""
        process = self.children.start(f"{name}.client", argv)
        timed_out = process.wait(self.args.case_timeout) is None
        self.children.stop(process, grace_s=5.0)
        summary = summary_from(process.stdout_path)
        if summary is None:
            ending = f"stopped after {self.args.case_timeout:g} s" if timed_out else f"exit {process.returncode}"
            raise BenchError(f"{name}: no summary line ({ending}); last stderr: {process.tail(lines=1)}\n"
                             f"{process.tail(lines=5)}")
        if timed_out:
            summary["note"] = f"stopped after {self.args.case_timeout:g} s"
        elif process.returncode != 0:
            summary["note"] = f"exit {process.returncode}: {process.tail(lines=1)}"
        return summary

    def relay_case(self, name, source_args, expected_frames, expected_frame_bytes, floor=False):
        """relay-client publishing into relay-server, or into relay-transport-floor when floor is set."""
        if floor:
            server, address = self.start_server(name, [
                os.path.join(self.bin_dir, "relay-transport-floor"), "--listen", "127.0.0.1:0",
                "--window", str(self.args.window),
            ], lambda process: framerelay_support.transport_floor_ready(process, READY_TIMEOUT_S))
        else:
            server, address = self.start_server(name, [
                os.path.join(self.bin_dir, "relay-server"), "--listen", "127.0.0.1:0",
                "--data-dir", os.path.join(self.log_dir, f"server-data-{name}"),
                "--max-frame-bytes", str(MAX_FRAME_BYTES), "--ring-max-bytes", str(RING_MAX_BYTES),
                # The server's window caps the client's, so both ends get the same one (also the grpcio peer).
                "--window", str(self.args.window),
            ], lambda process: framerelay_support.relay_server_ready(process, READY_TIMEOUT_S).address)
        try:
            cpu0 = process_cpu_seconds(server.pid)
            summary = self.run_client(name, [
                os.path.join(self.bin_dir, "relay-client"), "publish", "--server", address,
                "--device", f"bench-{name.split('.')[0]}", *source_args, "--window", str(self.args.window),
            ])
            cpu1 = process_cpu_seconds(server.pid)
        finally:
            self.children.stop(server)
        return measurement(summary, expected_frames, expected_frame_bytes, server_cpu(cpu0, cpu1))

    def grpcio_case(self, name, frame_bytes, frames):
        server, address = self.start_server(name, [
            sys.executable, PEER, "server", "--listen", "127.0.0.1:0", "--window", str(self.args.window),
            "--ring-max-bytes", str(RING_MAX_BYTES),
        ], lambda process: process.wait_for_output(r"^grpcio-peer listening on (\S+)\s*$", READY_TIMEOUT_S).group(1))
        try:
            cpu0 = process_cpu_seconds(server.pid)
            summary = self.run_client(name, [
                sys.executable, PEER, "client", "--server", address, "--frame-bytes", str(frame_bytes),
                "--frames", str(frames), "--window", str(self.args.window),
                "--timeout", str(self.args.case_timeout),
            ])
            cpu1 = process_cpu_seconds(server.pid)
        finally:
            self.children.stop(server)
        return measurement(summary, frames, frame_bytes, server_cpu(cpu0, cpu1))

    def iperf3(self, name):
        port = pick_port()
        server, _ = self.start_server(name, [
            "iperf3", "--server", "--one-off", "--bind", "127.0.0.1", "--port", str(port), "--forceflush",
        ], lambda process: process.wait_for_output(r"^Server listening on ", READY_TIMEOUT_S))
        try:
            client = self.children.start(f"{name}.client", [  # its JSON report is NAME.client.stdout
                "iperf3", "--client", "127.0.0.1", "--port", str(port),
                "--time", str(self.args.iperf_seconds), "--json",
            ])
            try:
                client.wait(self.args.iperf_seconds + 30)
            finally:
                self.children.stop(client)
        finally:
            self.children.stop(server)
        out = client.stdout_path
        try:
            with open(out) as f:
                report = json.load(f)
            received = report["end"]["sum_received"]
        except (OSError, ValueError, KeyError) as error:
            raise BenchError(f"{name}: no iperf3 result ({error})\n{file_tail(out, 5)}")
        return {"frames": None, "fps": None, "gbps": received["bytes"] / received["seconds"] / 1e9,
                "p50": None, "p99": None, "server_ms": None, "note": ""}


SUMMARY_KEYS = ("frames_sent", "frames_acked", "bytes_sent", "seconds", "ack_rtt_p50_ms", "ack_rtt_p99_ms")


def server_cpu(before, after):
    """The server's CPU seconds (utime+stime) over the client's run, or None if it was gone."""
    return None if before is None or after is None else after - before


def measurement(summary, expected_frames, expected_frame_bytes, server_cpu_s=None):
    missing = [key for key in SUMMARY_KEYS if not isinstance(summary.get(key), (int, float))]
    if missing:
        raise BenchError(f"summary without numeric {', '.join(missing)}: {json.dumps(summary)}")
    seconds = summary["seconds"]
    acked = summary["frames_acked"]
    note = summary.get("note") or summary.get("error") or ""
    if expected_frames is not None and acked != expected_frames:
        note = (note + "; " if note else "") + f"only {acked} of {expected_frames} frames acked"
    elif acked != summary["frames_sent"]:
        note = (note + "; " if note else "") + f"{summary['frames_sent']} sent, {acked} acked"
    if seconds <= 0 or acked == 0:
        raise BenchError(f"nothing measured: {json.dumps(summary)}")
    # The ratios only mean something if both sides moved the same payload per frame.
    if expected_frame_bytes is not None and summary["bytes_sent"] != summary["frames_sent"] * expected_frame_bytes:
        note = (note + "; " if note else "") + \
            f"{summary['bytes_sent'] / max(summary['frames_sent'], 1):.0f} bytes/frame, expected {expected_frame_bytes}"
    # Both from the summary's own counters, so relay-client and the grpcio peer are computed alike.
    return {"frames": acked, "fps": acked / seconds, "gbps": summary["bytes_sent"] / seconds / 1e9,
            "p50": summary["ack_rtt_p50_ms"], "p99": summary["ack_rtt_p99_ms"],
            "server_ms": None if server_cpu_s is None else server_cpu_s / acked * 1000, "note": note}


def make_h264_file(directory, timeout_s):
    path = os.path.join(directory, "testsrc2-1080p30.mp4")
    print("bench-ingest: encoding the 20 s 1080p30 H.264 test file (about 30 s on 2 cores)", file=sys.stderr)
    subprocess.run([
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "20",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "30", path,
    ], check=True, timeout=timeout_s, start_new_session=True)
    return path


CASE_TITLES = {
    "a-relay": "(a) 1080p bgr24 6.2 MB   relay",
    "a-grpcio": "(a) 1080p bgr24 6.2 MB   grpcio",
    "a-floor": "(a) 1080p bgr24 6.2 MB   floor",
    "b-relay": "(b) 100 KB gray          relay",
    "b-grpcio": "(b) 100 KB gray          grpcio",
    "b-floor": "(b) 100 KB gray          floor",
    "c-relay": "(c) H.264 1080p30, fast  relay",
    "iperf3": "iperf3 127.0.0.1 (ceiling)",
}


def median_of(runs, key):
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def ratio_line(results, name, numerator, denominator, target):
    """One ratio of median GB/s against its target (None: no target, the ratio is information)."""
    top, bottom = median_of(results.get(numerator, []), "gbps"), median_of(results.get(denominator, []), "gbps")
    percent = target is not None and target < 1
    wanted = "" if target is None else f">={target:.0%}" if percent else f">={target:.1f}x"
    if top is None or bottom is None:
        return f"{name:<34}{'-':>8}{wanted:>9}  n/a (a case failed)"
    ratio = top / bottom
    shown = f"{ratio:.0%}" if percent else f"{ratio:.2f}x"
    result = "" if target is None else "met" if ratio >= target else "NOT met"
    return f"{name:<34}{shown:>8}{wanted:>9}  {result}".rstrip()


def render(args, results, failures, started):
    lines = [
        f"FrameRelay ingest benchmark, {started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores",
        f"binaries: {args.bin_dir}" + ("   ** DEBUG BUILD: not representative **" if "debug" in args.bin_dir else ""),
        f"median of {args.runs} run(s); window {args.window} frames in flight for relay-client and grpcio; "
        f"GB = 1e9 bytes of payload; fresh server per case",
        "",
        f"{'case':<34}{'frames':>7}{'frames/s':>11}{'GB/s':>8}{'ack p50 ms':>12}{'ack p99 ms':>12}"
        f"{'server CPU ms/frame':>21}  each run (frames/s; GB/s for iperf3)",
    ]
    for case, title in CASE_TITLES.items():
        runs = results.get(case, [])
        if not runs:
            lines.append(f"{title:<34}  failed: {'; '.join(failures.get(case, ['not run']))}")
            continue
        per_run = " ".join(fmt(r["fps"], ".0f") for r in runs) if runs[0]["fps"] is not None else \
            " ".join(f"{r['gbps']:.2f}" for r in runs)
        lines.append(
            f"{title:<34}{fmt(median_of(runs, 'frames'), '.0f'):>7}{fmt(median_of(runs, 'fps'), '.1f'):>11}"
            f"{fmt(median_of(runs, 'gbps'), '.3f'):>8}{fmt(median_of(runs, 'p50'), '.2f'):>12}"
            f"{fmt(median_of(runs, 'p99'), '.2f'):>12}{fmt(median_of(runs, 'server_ms'), '.3f'):>21}  {per_run}")
        for note in sorted({r["note"] for r in runs if r["note"]}) + failures.get(case, []):
            lines.append(f"{'':<6}note: {note}")
        if case == "c-relay":
            lines.append(f"{'':<6}= {median_of(runs, 'fps') / 30:.1f}x real time (the file is 30 frames/s)")

    lines += ["", f"{'goal':<34}{'value':>8}{'target':>9}  result"]
    for name, numerator, denominator, target in GOALS:
        lines.append(ratio_line(results, name, numerator, denominator, target))
    lines += ["", "the floor (relay-transport-floor: relay-server's transport with nothing behind it)"]
    for name, numerator, denominator, target in FLOOR_RATIOS:
        lines.append(ratio_line(results, name, numerator, denominator, target))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", default=os.environ.get("RELAY_BIN_DIR", os.path.join(REPO, ".build", "release")),
                        help="where relay-server, relay-client and relay-transport-floor are (env RELAY_BIN_DIR)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames-1080p", type=int, default=600, help="frames per run of case (a)")
    parser.add_argument("--frames-100k", type=int, default=20000, help="frames per run of case (b)")
    parser.add_argument("--window", type=int, default=32, help="frames in flight, both clients")
    parser.add_argument("--iperf-seconds", type=int, default=5)
    parser.add_argument("--case-timeout", type=float, default=120, help="seconds before a client is stopped")
    parser.add_argument("--h264-file", help="reuse this file for case (c) instead of encoding one")
    parser.add_argument("--out", default=os.path.join(REPO, "out", "bench-ingest.txt"))
    args = parser.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    if args.h264_file:
        args.h264_file = os.path.abspath(args.h264_file)
        if not os.path.isfile(args.h264_file):
            sys.exit(f"bench-ingest: no file {args.h264_file}")
    for program in ("relay-server", "relay-client", "relay-transport-floor"):
        if not os.access(os.path.join(args.bin_dir, program), os.X_OK):
            sys.exit(f"bench-ingest: no {program} in {args.bin_dir} (build it, or set RELAY_BIN_DIR)")

    # SIGTERM and SIGHUP end us like Ctrl-C does, through the `finally` that stops every child.
    framerelay_support.interrupt_on_signals()

    started = datetime.datetime.now(datetime.timezone.utc)
    log_dir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "bench-ingest-logs")
    os.makedirs(log_dir, exist_ok=True)
    children = Children(log_dir)
    bench = Bench(args, children, log_dir)
    results, failures = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        try:
            h264 = args.h264_file or make_h264_file(scratch, timeout_s=300)
            cases = {
                "iperf3": lambda name: bench.iperf3(name),
                "a-relay": lambda name: bench.relay_case(
                    name, ["--synthetic", "1920x1080", "--frames", str(args.frames_1080p)],
                    args.frames_1080p, FRAME_1080P_BYTES),
                "a-grpcio": lambda name: bench.grpcio_case(name, FRAME_1080P_BYTES, args.frames_1080p),
                "a-floor": lambda name: bench.relay_case(
                    name, ["--synthetic", "1920x1080", "--frames", str(args.frames_1080p)],
                    args.frames_1080p, FRAME_1080P_BYTES, floor=True),
                "b-relay": lambda name: bench.relay_case(
                    name, ["--synthetic", "400x250:gray", "--frames", str(args.frames_100k)],
                    args.frames_100k, FRAME_100K_BYTES),
                "b-grpcio": lambda name: bench.grpcio_case(name, FRAME_100K_BYTES, args.frames_100k),
                "b-floor": lambda name: bench.relay_case(
                    name, ["--synthetic", "400x250:gray", "--frames", str(args.frames_100k)],
                    args.frames_100k, FRAME_100K_BYTES, floor=True),
                "c-relay": lambda name: bench.relay_case(name, ["--file", h264, "--pace", "fast"], None, None),
            }
            for run in range(1, args.runs + 1):
                # Alternate which side of a pair goes first, so neither always gets the warmer machine.
                order = list(cases) if run % 2 else [
                    "iperf3", "a-floor", "a-grpcio", "a-relay", "b-floor", "b-grpcio", "b-relay", "c-relay"]
                for case in order:
                    print(f"bench-ingest: run {run}/{args.runs}: {case}", file=sys.stderr, flush=True)
                    try:
                        results.setdefault(case, []).append(cases[case](f"{case}.{run}"))
                    except BenchError as error:
                        failures.setdefault(case, []).append(f"run {run}: {str(error).splitlines()[0]}")
                        print(f"bench-ingest: {case} failed: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print("bench-ingest: interrupted", file=sys.stderr)
            return 130
        finally:
            children.stop_all()

    table = render(args, results, failures, started)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table)
    print(table, end="")
    print(f"(saved to {os.path.relpath(args.out, REPO)}; logs in {os.path.relpath(log_dir, REPO)}/)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
