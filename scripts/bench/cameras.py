#!/usr/bin/env python3
"""Cameras at scale: what N live 1080p30 H.264 cameras cost relay-server and the publishing side, side by
side with a baseline measured in the same run. Started by scripts/bench-cameras.

Every camera is the same clip (made once with libx264 and cached under out/bench-clips/: 1920x1080, 30 fps,
~4 Mbit/s, a keyframe every 60 frames, no B-frames) read by relay-client's file source in a loop at
real-time pace, so each is a real camera's stream as far as relay-server can tell. No consumer: the
server stores and acks, nothing is decoded.

For each N (--cameras 1,10,50,100,300):
  gateway:   ONE relay-client with a settings file listing N cameras (a gateway: one HTTP/2
             connection, a capture thread per camera) into a fresh relay-server;
  separate:  for N <= --separate-max, N relay-client processes, one camera each, into a fresh server.
After every camera's first frame is stored and --warmup seconds more (longer than --ring-max-seconds, so
the rings are full and evicting), a window of --seconds: CPU (utime+stime from /proc) of the server and
of the publishers, frames stored per device (the server's /metrics), RSS. Then the publishers are
stopped and their summaries give frames captured and ack round trips; frames lost = captured - stored.
N grows while the publishing side keeps real-time pace: each camera >= 29.5 stored frames/s and no
camera more than a second of frames behind its acks (the status lines' queued: captured, not acked); where it
stops, the table says why.

Baseline, before the cameras: --baseline-copies processes of `ffmpeg -re -stream_loop -1 -i CLIP -c copy
-f null -` (reading the same clip at real-time pace and doing nothing with it) for the same window: the
CPU a pure passthrough read costs per camera. Figures per camera are also shown as multiples of it.
Goals (issue 13): server CPU per camera <= 0.3% of a core; publishing CPU per camera <= 1% of a core;
server RSS <= the rings' bounds in use + 60 MB (and, stricter, <= the bytes they hold at the end + 60 MB);
frames lost 0.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import framerelay_support  # noqa: E402
from framerelay_support import ProcessError, memory_kib, percentile, process_cpu_seconds  # noqa: E402
from framerelay_support import cpu_stall_seconds, load_average  # noqa: E402
from clips import make_clip  # noqa: E402
from ingest import Children, summary_from  # noqa: E402

REPO = str(framerelay_support.REPO)
READY_TIMEOUT_S = 30
CLK_TCK = os.sysconf("SC_CLK_TCK")

GOAL_SERVER_CPU_PER_CAMERA = 0.3     # % of one core
GOAL_PUBLISHER_CPU_PER_CAMERA = 1.0  # % of one core
GOAL_RSS_OVER_RINGS_MIB = 60e6 / 2**20  # 60 MB (the issue's figure) = 57.2 MiB
RING_MAX_BYTES = 64 << 20            # relay-server's default --ring-max-bytes, which the bench keeps
MIN_FPS = 29.5

STATUS_LINE = re.compile(r"^status: (\S+) sent (\d+) acked (\d+) in-flight (\d+) queued (\d+) dropped (\d+) "
                         r"\| ([\d.]+) fps", re.M)
SERIES = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN|[+-]Inf)$", re.M)
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class BenchError(Exception):
    pass


def log(text):
    print(f"bench-cameras: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- readings

def scrape(address):
    """{(name, ((label, value), ...)): value} of every series on http://ADDRESS/metrics."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    series = {}
    for name, labels, value in SERIES.findall(text):
        series[(name, tuple(sorted(LABEL.findall(labels or ""))))] = float(value)
    return series


def per_device(series, name):
    return {dict(labels).get("device"): value for (metric, labels), value in series.items()
            if metric == name and "device" in dict(labels)}


def system_busy_seconds():
    """CPU seconds every core spent busy since boot (all of /proc/stat's first line but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def cpu_of(pids):
    values = [process_cpu_seconds(pid) for pid in pids]
    if any(v is None for v in values):
        raise BenchError("a process ended during the window")
    return sum(values)


def status_lines(path):
    """The last status line of each camera in a relay-client's stderr: {device: (sent, acked, in-flight,
    queued, dropped, fps)}."""
    with open(path, errors="replace") as f:
        text = f.read()
    last = {}
    for device, *numbers in STATUS_LINE.findall(text):
        last[device] = tuple(int(n) for n in numbers[:5]) + (float(numbers[5]),)
    return last


def gateway_settings(path, server, devices, clip, rtsp=None):
    """A gateway's settings: each camera loops the clip at its pace, or reads the RTSP URL if given."""
    source = f"rtsp: {rtsp}\n    rtsp_transport: tcp\n" if rtsp else f"file: {clip}\n    loop: true\n    pace: realtime\n"
    with open(path, "w") as f:
        f.write(f"server: {server}\ncameras:\n")
        for device in devices:
            f.write(f"  - device: {device}\n    {source}")


# ---------------------------------------------------------------- the cases

class Bench:
    def __init__(self, args, children, log_dir, clip):
        self.args, self.children, self.log_dir, self.clip = args, children, log_dir, clip

    def baseline(self, copies):
        """ffmpeg reading the clip at real-time pace, copying packets to nowhere: CPU per copy, % of a core."""
        processes = [self.children.start(f"baseline.ffmpeg.{i}", [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
            "-i", self.clip.mp4, "-c", "copy", "-f", "null", "-"]) for i in range(copies)]
        try:
            time.sleep(2.0)  # past opening the file
            pids = [p.pid for p in processes]
            busy0, cpu0, t0 = system_busy_seconds(), cpu_of(pids), time.monotonic()
            time.sleep(self.args.seconds)
            cpu1, t1, busy1 = cpu_of(pids), time.monotonic(), system_busy_seconds()
        finally:
            for process in processes:
                self.children.stop(process)
        wall = t1 - t0
        cpu = cpu1 - cpu0
        return {"copies": copies, "cpu_per_camera_pct": cpu / wall / copies * 100,
                "other_load_pct": max(0.0, (busy1 - busy0 - cpu) / wall * 100), "seconds": wall}

    def idle_server(self):
        """A relay-server with no camera for the window: what it costs doing nothing (timers, metrics)."""
        server = self.start_server("idle", 0)
        try:
            time.sleep(2.0)
            pid = server.process.pid
            busy0, cpu0, t0 = system_busy_seconds(), process_cpu_seconds(pid), time.monotonic()
            time.sleep(self.args.seconds)
            cpu1, t1, busy1 = process_cpu_seconds(pid), time.monotonic(), system_busy_seconds()
            rss = memory_kib(pid)
        finally:
            self.children.stop(server.process)
        if cpu0 is None or cpu1 is None:
            raise BenchError("the idle relay-server ended during the window")
        wall = t1 - t0
        return {"cpu_pct": (cpu1 - cpu0) / wall * 100, "rss_mb": (rss or 0) / 1024,
                "other_load_pct": max(0.0, (busy1 - busy0 - (cpu1 - cpu0)) / wall * 100)}

    def start_server(self, name, cameras):
        data = os.path.join(self.args.scratch, f"{name}.data")
        # A gateway's cameras are streams of one connection: past the server's bound on streams per
        # connection (default 100) the rest would wait for a free one forever.
        streams = ["--max-streams-per-connection", str(cameras + 8)] \
            if self.args.streams_flag and cameras + 8 > 100 else []
        process = self.children.start(f"{name}.server", [
            os.path.join(self.args.bin_dir, "relay-server"), "--listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0", "--data-dir", data,
            "--max-devices", str(max(64, cameras)), "--ring-max-seconds", str(self.args.ring_max_seconds),
            *streams,
        ])
        try:
            return framerelay_support.relay_server_ready(process, READY_TIMEOUT_S)
        except ProcessError as error:
            self.children.stop(process)
            raise BenchError(f"relay-server: {error.summary}\n{error.stderr_tail or ''}") from None

    def start_publishers(self, name, mode, devices, server_address):
        client = os.path.join(self.args.bin_dir, "relay-client")
        if mode == "gateway":
            settings = os.path.join(self.args.scratch, f"{name}.yaml")
            gateway_settings(settings, server_address, devices, self.clip.mp4)
            return [self.children.start(f"{name}.client", [client, "publish", "--config", settings])]
        return [self.children.start(f"{name}.client.{device}", [
            client, "publish", "--server", server_address, "--device", device,
            "--file", self.clip.mp4, "--loop", "--pace", "realtime"]) for device in devices]

    def floor_case(self, cameras):
        """The same gateway publishing into relay-transport-floor (relay-server's transport, settings and
        threads; each frame decoded, acked and dropped): the server CPU no FrameRelay change goes below."""
        name = f"floor-{cameras}"
        devices = [f"cam-{i:03d}" for i in range(1, cameras + 1)]
        process = self.children.start(f"{name}.server", [
            os.path.join(self.args.bin_dir, "relay-transport-floor"), "--listen", "127.0.0.1:0",
            "--max-streams-per-connection", str(max(100, cameras + 8))])
        try:
            address = framerelay_support.transport_floor_ready(process, READY_TIMEOUT_S)
        except ProcessError as error:
            self.children.stop(process)
            raise BenchError(f"relay-transport-floor: {error.summary}\n{error.stderr_tail or ''}") from None
        publishers = []
        try:
            publishers = self.start_publishers(name, "gateway", devices, address)
            # Every camera acked, then a shorter warm-up than relay-server's: no ring to fill.
            deadline = time.monotonic() + 30 + 0.3 * cameras
            while True:
                status = status_lines(publishers[0].stderr_path)
                if all(status.get(d, (0, 0))[1] > 0 for d in devices):
                    break
                for each in publishers + [process]:
                    if not each.alive():
                        raise BenchError(f"{each.name} exited with {each.returncode}: {each.tail(lines=3)}")
                if time.monotonic() > deadline:
                    raise BenchError(f"not every camera had an ack after {30 + 0.3 * cameras:.0f} s")
                time.sleep(0.5)
            time.sleep(4)
            client_pids = [p.pid for p in publishers]
            before = status_lines(publishers[0].stderr_path)
            stall0 = cpu_stall_seconds()
            server0, client0, t0 = process_cpu_seconds(process.pid), cpu_of(client_pids), time.monotonic()
            time.sleep(self.args.seconds)
            server1, client1, t1 = process_cpu_seconds(process.pid), cpu_of(client_pids), time.monotonic()
            stall1 = cpu_stall_seconds()
            after = status_lines(publishers[0].stderr_path)
            if server0 is None or server1 is None or not process.alive():
                raise BenchError(f"relay-transport-floor ended during the window: {process.tail(lines=3)}")
        finally:
            for each in publishers:
                self.children.stop(each, grace_s=10.0)
            self.children.stop(process)
        summary = summary_from(publishers[0].stdout_path)
        if summary is None:
            raise BenchError(f"{publishers[0].name}: no summary line: {publishers[0].tail(lines=3)}")
        by_device = {s.get("device"): s for s in summary.get("cameras", [summary])}
        if any(d not in by_device for d in devices):
            raise BenchError("no summary for every camera")
        wall = t1 - t0
        # Acks per second over the window, from the status lines (printed every second or so).
        acked = sum(after.get(d, (0, 0))[1] - before.get(d, (0, 0))[1] for d in devices)
        return {
            "cameras": cameras, "seconds": wall,
            "server_cpu_pct": (server1 - server0) / wall * 100,
            "server_cpu_per_camera_pct": (server1 - server0) / wall * 100 / cameras,
            "publisher_cpu_per_camera_pct": (client1 - client0) / wall * 100 / cameras,
            "acks_per_s_per_camera": acked / wall / cameras,
            "ack_rtt_p50_ms": statistics.median(by_device[d]["ack_rtt_p50_ms"] for d in devices),
            "ack_rtt_p99_ms_median": statistics.median(by_device[d]["ack_rtt_p99_ms"] for d in devices),
            "frames_captured": sum(by_device[d]["frames_captured"] for d in devices),
            "frames_acked": sum(by_device[d]["frames_acked"] for d in devices),
            "cpu_stalled_pct": None if stall0 is None or stall1 is None else (stall1 - stall0) / wall * 100,
        }

    def case(self, cameras, mode):
        name = f"{mode}-{cameras}"
        devices = [f"cam-{i:03d}" for i in range(1, cameras + 1)]
        server = self.start_server(name, cameras)
        server_pid = server.process.pid
        idle_rss_kib = memory_kib(server_pid)
        publishers = []
        try:
            publishers = self.start_publishers(name, mode, devices, server.address)
            # Every camera's first frame stored, then the warm-up.
            deadline = time.monotonic() + 30 + 0.3 * cameras
            while True:
                stored = per_device(scrape(server.metrics_address), "framerelay_frames_stored_total")
                if all(stored.get(d, 0) > 0 for d in devices):
                    break
                for process in publishers + [server.process]:
                    if not process.alive():
                        raise BenchError(f"{process.name} exited with {process.returncode}: {process.tail(lines=3)}")
                if time.monotonic() > deadline:
                    missing = [d for d in devices if stored.get(d, 0) == 0]
                    raise BenchError(f"{len(missing)} of {cameras} cameras had no frame stored after "
                                     f"{30 + 0.3 * cameras:.0f} s (e.g. {missing[0]})")
                time.sleep(0.5)
            time.sleep(self.args.warmup)

            client_pids = [p.pid for p in publishers]
            before = scrape(server.metrics_address)
            m0 = time.monotonic()
            stall0 = cpu_stall_seconds()
            busy0, server0, client0, t0 = (system_busy_seconds(), process_cpu_seconds(server_pid),
                                           cpu_of(client_pids), time.monotonic())
            rss_samples = []
            while time.monotonic() < t0 + self.args.seconds:
                time.sleep(min(1.0, max(0.0, t0 + self.args.seconds - time.monotonic())))
                rss_samples.append(memory_kib(server_pid) or 0)
            server1, client1, t1, busy1 = (process_cpu_seconds(server_pid), cpu_of(client_pids),
                                           time.monotonic(), system_busy_seconds())
            stall1 = cpu_stall_seconds()
            rss_end_kib = memory_kib(server_pid)
            anon_end_kib = memory_kib(server_pid, "RssAnon")
            after = scrape(server.metrics_address)
            m1 = time.monotonic()
            if server0 is None or server1 is None or not server.process.alive():
                raise BenchError(f"relay-server ended during the window: {server.process.tail(lines=3)}")
            status = {}
            for process in publishers:
                status.update(status_lines(process.stderr_path))
        finally:
            for process in publishers:
                self.children.stop(process, grace_s=10.0)
        try:
            summaries = []
            for process in publishers:
                summary = summary_from(process.stdout_path)
                if summary is None:
                    raise BenchError(f"{process.name}: no summary line (exit {process.returncode}): "
                                     f"{process.tail(lines=3)}")
                summaries.extend(summary.get("cameras", [summary]))
            final = scrape(server.metrics_address)
            hwm_kib = memory_kib(server_pid, "VmHWM")
        finally:
            self.children.stop(server.process)

        wall = t1 - t0
        server_cpu = (server1 - server0) / wall * 100
        client_cpu = (client1 - client0) / wall * 100
        other = max(0.0, (busy1 - busy0 - (server1 - server0) - (client1 - client0)) / wall * 100)
        stored0 = per_device(before, "framerelay_frames_stored_total")
        stored1 = per_device(after, "framerelay_frames_stored_total")
        fps = {d: (stored1.get(d, 0) - stored0.get(d, 0)) / (m1 - m0) for d in devices}
        ring_bytes = sum(per_device(after, "framerelay_ring_bytes").get(d, 0) for d in devices)
        # The bound each ring works to: --ring-max-seconds of the camera's bytes (or --ring-max-bytes). A ring
        # saws between the bound and the bound less the GOP it evicts at once, so the bytes it holds at one
        # moment understate what its memory must hold.
        bytes0 = per_device(before, "framerelay_bytes_stored_total")
        bytes1 = per_device(after, "framerelay_bytes_stored_total")
        ring_bound = sum(min(RING_MAX_BYTES, (bytes1.get(d, 0) - bytes0.get(d, 0)) / (m1 - m0)
                             * self.args.ring_max_seconds) for d in devices)
        stored_final = per_device(final, "framerelay_frames_stored_total")
        declared_lost = sum(per_device(final, "framerelay_frames_lost_total").get(d, 0) for d in devices)
        by_device = {s.get("device"): s for s in summaries}
        missing = [d for d in devices if d not in by_device]
        if missing:
            raise BenchError(f"no summary for {len(missing)} cameras (e.g. {missing[0]})")
        captured = sum(by_device[d]["frames_captured"] for d in devices)
        acked = sum(by_device[d]["frames_acked"] for d in devices)
        dropped = sum(by_device[d]["frames_dropped"] for d in devices)
        reconnects = sum(by_device[d].get("reconnects", 0) for d in devices)
        stored_total = sum(stored_final.get(d, 0) for d in devices)
        p50s = [by_device[d]["ack_rtt_p50_ms"] for d in devices]
        p99s = [by_device[d]["ack_rtt_p99_ms"] for d in devices]
        # "queued" is every frame captured and not yet acked, those in flight included.
        backlog = {d: status[d][3] if d in status else None for d in devices}
        known_backlog = [b for b in backlog.values() if b is not None]
        behind = [d for d in devices if backlog[d] is not None and backlog[d] > self.clip.fps]
        slow = [d for d in devices if fps[d] < MIN_FPS]
        reasons = []
        if slow:
            worst = min(slow, key=lambda d: fps[d])
            reasons.append(f"{len(slow)} of {cameras} cameras below {MIN_FPS} stored frames/s "
                           f"(slowest {worst}: {fps[worst]:.1f})")
        if behind:
            worst = max(behind, key=lambda d: backlog[d])
            reasons.append(f"{len(behind)} cameras more than {self.clip.fps} frames behind their acks "
                           f"(worst {worst}: {backlog[worst]} captured and not acked)")
        if len(known_backlog) < cameras:
            reasons.append(f"no status line for {cameras - len(known_backlog)} cameras")
        return {
            "cameras": cameras, "mode": mode, "publisher_processes": len(publishers), "seconds": wall,
            "server_cpu_pct": server_cpu, "server_cpu_per_camera_pct": server_cpu / cameras,
            "publisher_cpu_pct": client_cpu, "publisher_cpu_per_camera_pct": client_cpu / cameras,
            "other_load_pct": other,
            "cpu_stalled_pct": None if stall0 is None or stall1 is None else (stall1 - stall0) / wall * 100,
            "server_rss_idle_mb": (idle_rss_kib or 0) / 1024, "server_rss_mb": (rss_end_kib or 0) / 1024,
            "server_anon_mb": (anon_end_kib or 0) / 1024,
            "server_rss_max_mb": max(rss_samples + [rss_end_kib or 0]) / 1024,
            "server_hwm_mb": (hwm_kib or 0) / 1024, "ring_bytes": ring_bytes, "ring_bound_bytes": ring_bound,
            "fps_min": min(fps.values()), "fps_median": statistics.median(fps.values()),
            "backlog_max": max(known_backlog) if known_backlog else None,
            "ack_rtt_p50_ms": statistics.median(p50s), "ack_rtt_p99_ms_median": statistics.median(p99s),
            "ack_rtt_p99_ms_max": max(p99s),
            "frames_captured": captured, "frames_acked": acked, "frames_stored": int(stored_total),
            "frames_lost": int(captured - stored_total), "frames_dropped": dropped,
            "frames_declared_lost": declared_lost, "reconnects": reconnects,
            "kept_pace": not reasons, "reasons": reasons,
        }


# ---------------------------------------------------------------- the table

def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def verdict(ok):
    return "PASS" if ok else "FAIL"


def render_floors(results, floors):
    """The floor's table: relay-server's CPU per camera against relay-transport-floor's, same publishers."""
    relay = {r["cameras"]: r for r in results if r["mode"] == "gateway"}
    lines = ["", "the floor: relay-transport-floor (relay-server's transport, HTTP/2 settings and handler threads; "
             "each frame decoded, acked and dropped), the same gateway publisher, right after each relay-server case",
             f"{'cameras':>7}{'floor CPU':>11}{'/camera':>9}{'relay /camera':>15}{'relay/floor':>13}"
             f"{'acks/s/camera':>15}{'ack p50':>9}{'p99 med':>9}{'pub /camera':>13}{'stall':>7}",
             f"{'':>7}{'% core':>11}{'% core':>9}{'% core':>15}{'':>13}{'':>15}{'ms':>9}{'ms':>9}{'% core':>13}{'%':>7}"]
    for f in floors:
        r = relay.get(f["cameras"])
        lines.append(
            f"{f['cameras']:>7}{f['server_cpu_pct']:>11.1f}{f['server_cpu_per_camera_pct']:>9.3f}"
            f"{fmt(r and r['server_cpu_per_camera_pct'], '.3f'):>15}"
            f"{fmt(r and r['server_cpu_per_camera_pct'] / f['server_cpu_per_camera_pct'], '.2f'):>13}"
            f"{f['acks_per_s_per_camera']:>15.1f}{f['ack_rtt_p50_ms']:>9.2f}{f['ack_rtt_p99_ms_median']:>9.2f}"
            f"{f['publisher_cpu_per_camera_pct']:>13.3f}{fmt(f['cpu_stalled_pct'], '.0f'):>7}")
        if f["server_cpu_per_camera_pct"] > GOAL_SERVER_CPU_PER_CAMERA:
            lines.append(f"{'':>9}note: the floor alone is above the goal of {GOAL_SERVER_CPU_PER_CAMERA}% per camera")
    return lines


def render(args, clip, baselines, results, stops, started, loads, idle, floors=()):
    base = statistics.mean(b["cpu_per_camera_pct"] for b in baselines) if baselines else None
    lines = [
        f"FrameRelay cameras at scale, {started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores",
        f"binaries: {args.bin_dir}" + ("   ** DEBUG BUILD: not representative **" if "debug" in args.bin_dir else ""),
        f"each camera: {clip.describe()}, relay-client file source, loop, pace realtime; no consumer",
        f"server: --ring-max-seconds {args.ring_max_seconds:g}; window {args.seconds:g} s after every camera's "
        f"first frame + {args.warmup:g} s; CPU = utime+stime from /proc, % of one core"
        + ("; --max-streams-per-connection N + 8 where N + 8 > 100" if args.streams_flag else ""),
        f"load average before each case: {', '.join(loads)}",
        "",
    ]
    if baselines:
        lines.append(f"baseline: ffmpeg -re -stream_loop -1 -i CLIP -c copy -f null -  ({baselines[0]['copies']} "
                     f"at once): " + ", ".join(f"{b['cpu_per_camera_pct']:.3f}%" for b in baselines)
                     + f" of a core per camera (mean {base:.3f}%; other load on the machine meanwhile "
                     + ", ".join(f"{b['other_load_pct']:.0f}%" for b in baselines) + ")")
    if idle:
        lines.append(f"relay-server with no camera: {idle['cpu_pct']:.2f}% of a core, RSS {idle['rss_mb']:.0f} MiB "
                     f"(other load meanwhile {idle['other_load_pct']:.0f}%)")
    lines.append("")
    head = (f"{'cameras':>7} {'publishers':<14}{'server CPU':>11}{'/camera':>9}{'-idle':>7}{'x base':>8}{'RSS':>6}{'anon':>6}{'idle':>6}"
            f"{'rings':>7}{'bound':>7}{'ack p50':>8}{'p99 med':>8}{'p99 max':>8}{'lost':>6}{'pub CPU':>9}{'/camera':>9}"
            f"{'x base':>8}{'fps min':>8}{'other':>7}{'stall':>7}")
    lines += [head, f"{'':>7} {'':<14}{'% core':>11}{'% core':>9}{'':>7}{'':>8}{'MiB':>6}{'MiB':>6}{'MiB':>6}{'MiB':>7}{'MiB':>7}{'ms':>8}{'ms':>8}{'ms':>8}"
                    f"{'':>6}{'% core':>9}{'% core':>9}{'':>8}{'':>8}{'load %':>7}{'%':>7}"]
    for r in results:
        publishers = "1 gateway" if r["mode"] == "gateway" else f"{r['publisher_processes']} processes"
        ratio = (lambda v: None if not base else v / base)
        lines.append(
            f"{r['cameras']:>7} {publishers:<14}{r['server_cpu_pct']:>11.1f}{r['server_cpu_per_camera_pct']:>9.3f}"
            f"{fmt(None if not idle else (r['server_cpu_pct'] - idle['cpu_pct']) / r['cameras'], '.3f'):>7}"
            f"{fmt(ratio(r['server_cpu_per_camera_pct']), '.1f'):>8}{r['server_rss_mb']:>6.0f}{r['server_anon_mb']:>6.0f}"
            f"{r['server_rss_idle_mb']:>6.0f}{r['ring_bytes'] / 2**20:>7.0f}{r['ring_bound_bytes'] / 2**20:>7.0f}{r['ack_rtt_p50_ms']:>8.2f}{r['ack_rtt_p99_ms_median']:>8.2f}"
            f"{r['ack_rtt_p99_ms_max']:>8.2f}{r['frames_lost']:>6}{r['publisher_cpu_pct']:>9.1f}"
            f"{r['publisher_cpu_per_camera_pct']:>9.3f}{fmt(ratio(r['publisher_cpu_per_camera_pct']), '.1f'):>8}"
            f"{r['fps_min']:>8.1f}{r['other_load_pct']:>7.0f}{fmt(r['cpu_stalled_pct'], '.0f'):>7}")
        notes = list(r["reasons"])
        if r["frames_dropped"] or r["frames_declared_lost"] or r["reconnects"]:
            notes.append(f"client dropped {r['frames_dropped']}, server counted {r['frames_declared_lost']:.0f} "
                         f"declared lost, {r['reconnects']} reconnects")
        if r["frames_acked"] != r["frames_stored"]:
            notes.append(f"{r['frames_acked']} acked but {r['frames_stored']:.0f} stored")
        for note in notes:
            lines.append(f"{'':>9}note: {note}")
    lines.append("")
    lines.append("-idle: (server CPU - the idle server's) / cameras, what one more camera costs; "
                 "ack p50: median over cameras of each camera's p50; p99 med / max: median and worst of each "
                 "camera's p99 (from the client summaries, the whole run); lost = captured - stored; "
                 "RSS at the window's end (anon: its private part, RssAnon; the rest is mapped files: the binary, the Swift "
                 "runtime, FFmpeg and its libraries), idle = before the first camera, rings = bytes the rings held then "
                 "(framerelay_ring_bytes), bound = the rings' bounds in use (--ring-max-seconds of each camera's "
                 "stored bytes per second in the window; a ring evicts a whole GOP at once, so it holds between "
                 "the bound less a GOP and the bound); "
                 "other load = the machine's busy CPU minus the processes measured; stall = share of the window in "
                 "which some runnable task waited for a CPU (/proc/pressure/cpu), near 0 on a quiet machine")
    for stop in stops:
        lines.append(stop)
    if floors:
        lines += render_floors(results, floors)
    lines += ["", f"{'goal':<52}{'cameras':>8}{'value':>12}{'target':>12}  result"]
    for r in results:
        if r["mode"] != "gateway":
            continue
        n = r["cameras"]
        rss_bound = r["ring_bytes"] / 2**20 + GOAL_RSS_OVER_RINGS_MIB
        rss_bound_in_use = r["ring_bound_bytes"] / 2**20 + GOAL_RSS_OVER_RINGS_MIB
        lines += [
            f"{'server CPU per camera, % of a core':<52}{n:>8}{r['server_cpu_per_camera_pct']:>12.3f}"
            f"{'<= ' + str(GOAL_SERVER_CPU_PER_CAMERA):>12}  "
            f"{verdict(r['server_cpu_per_camera_pct'] <= GOAL_SERVER_CPU_PER_CAMERA)}",
            f"{'publishing CPU per camera, % of a core (gateway)':<52}{n:>8}{r['publisher_cpu_per_camera_pct']:>12.3f}"
            f"{'<= ' + str(GOAL_PUBLISHER_CPU_PER_CAMERA):>12}  "
            f"{verdict(r['publisher_cpu_per_camera_pct'] <= GOAL_PUBLISHER_CPU_PER_CAMERA)}",
            f"{'server RSS MiB <= ring bounds in use + 60 MB':<52}{n:>8}{r['server_rss_mb']:>12.0f}"
            f"{'<= ' + format(rss_bound_in_use, '.0f'):>12}  {verdict(r['server_rss_mb'] <= rss_bound_in_use)}",
            f"{'  (stricter: <= bytes held at the end + 60 MB)':<52}{n:>8}{r['server_rss_mb']:>12.0f}"
            f"{'<= ' + format(rss_bound, '.0f'):>12}  {verdict(r['server_rss_mb'] <= rss_bound)}",
            f"{'  (private memory, RssAnon: <= bounds + 60 MB)':<52}{n:>8}{r['server_anon_mb']:>12.0f}"
            f"{'<= ' + format(rss_bound_in_use, '.0f'):>12}  {verdict(r['server_anon_mb'] <= rss_bound_in_use)}",
            f"{'frames lost (captured - stored)':<52}{n:>8}{r['frames_lost']:>12}{'0':>12}  "
            f"{verdict(r['frames_lost'] == 0)}",
        ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", default="1,10,50,100,300", help="camera counts, in order (default 1,10,50,100,300)")
    parser.add_argument("--seconds", type=float, default=20, help="measured window per case (default 20)")
    parser.add_argument("--warmup", type=float, help="seconds after every camera's first frame before the "
                                                     "window (default --ring-max-seconds + 4)")
    parser.add_argument("--ring-max-seconds", type=float, default=10, help="relay-server's ring bound (default 10)")
    parser.add_argument("--separate-max", type=int, default=10,
                        help="also run N separate relay-client processes for N up to this (default 10; 0: never)")
    parser.add_argument("--baseline-copies", type=int, default=4, help="ffmpeg passthrough readers at once")
    parser.add_argument("--bin-dir", default=os.environ.get("RELAY_BIN_DIR", os.path.join(REPO, ".build", "release")),
                        help="where relay-server and relay-client are (env RELAY_BIN_DIR; default .build/release)")
    parser.add_argument("--clip-seconds", type=int, default=20,
                        help="length of the clip each camera loops (default 20; shorter encodes sooner)")
    parser.add_argument("--floor", action="store_true",
                        help="after each gateway case, the same publisher into relay-transport-floor (the "
                             "transport with nothing behind it): what no FrameRelay change goes below")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--out", default=os.path.join(REPO, "out", "bench-cameras.txt"))
    args = parser.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    try:
        counts = [int(n) for n in args.cameras.split(",") if n.strip()]
    except ValueError:
        sys.exit(f"bench-cameras: --cameras wants numbers separated by commas, not {args.cameras!r}")
    if not counts or min(counts) < 1 or args.seconds <= 0 or args.baseline_copies < 0:
        sys.exit("bench-cameras: --cameras, --seconds must be positive")
    if args.warmup is None:
        args.warmup = args.ring_max_seconds + 4
    for program in ("relay-server", "relay-client") + (("relay-transport-floor",) if args.floor else ()):
        if not os.access(os.path.join(args.bin_dir, program), os.X_OK):
            sys.exit(f"bench-cameras: no {program} in {args.bin_dir} (build it, or pass --bin-dir)")

    help_text = subprocess.run([os.path.join(args.bin_dir, "relay-server"), "--help"], capture_output=True,
                               text=True, timeout=30).stdout
    args.streams_flag = "--max-streams-per-connection" in help_text

    framerelay_support.interrupt_on_signals()
    started = datetime.datetime.now(datetime.timezone.utc)
    log_dir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "bench-cameras-logs")
    os.makedirs(log_dir, exist_ok=True)
    children = Children(log_dir)
    results, baselines, stops, loads, failed, idle, floors = [], [], [], [], False, None, []
    clip = make_clip(1920, 1080, fps=30, seconds=args.clip_seconds, gop=60, bitrate=4_000_000, log=log)
    log(clip.describe())
    with tempfile.TemporaryDirectory(prefix="bench-cameras-") as scratch:
        args.scratch = scratch
        bench = Bench(args, children, log_dir, clip)
        try:
            if args.baseline_copies:
                log(f"baseline: {args.baseline_copies} ffmpeg passthrough readers for {args.seconds:g} s")
                baselines.append(bench.baseline(args.baseline_copies))
            log(f"relay-server with no camera for {args.seconds:g} s")
            try:
                idle = bench.idle_server()
            except BenchError as error:
                stops.append(f"idle server: failed: {error}")
            for index, n in enumerate(counts):
                previous = next((r for r in reversed(results) if r["mode"] == "gateway"), None)
                if previous:
                    # Past the machine by far: running it would only say so after a long start.
                    per_camera = previous["server_cpu_per_camera_pct"] + previous["publisher_cpu_per_camera_pct"]
                    if per_camera * n > 150 * os.cpu_count():
                        stops.append(f"stopped before {n} cameras: at {previous['cameras']} cameras server + "
                                     f"publishers took {per_camera:.2f}% of a core per camera, so {n} would need "
                                     f"{per_camera * n:.0f}% of the {os.cpu_count()} cores' {100 * os.cpu_count()}%")
                        break
                modes = ["gateway"] + (["separate"] if 1 < n <= args.separate_max else [])
                gateway = None
                for mode in modes:
                    loads.append(f"{n} {mode}: {load_average()}")
                    log(f"{n} cameras, {mode} (load average {load_average()})")
                    try:
                        result = bench.case(n, mode)
                    except BenchError as error:
                        failed = True
                        stops.append(f"{n} cameras, {mode}: failed: {str(error).splitlines()[0]}")
                        log(f"{n} cameras, {mode} failed: {error}")
                        continue
                    results.append(result)
                    if mode == "gateway":
                        gateway = result
                    log(f"{n} {mode}: server {result['server_cpu_pct']:.1f}%, publishers "
                        f"{result['publisher_cpu_pct']:.1f}%, fps min {result['fps_min']:.1f}, "
                        f"lost {result['frames_lost']}" + ("" if result["kept_pace"] else
                                                           " -- " + "; ".join(result["reasons"])))
                if gateway is not None and args.floor:
                    log(f"{n} cameras into relay-transport-floor")
                    try:
                        floors.append(bench.floor_case(n))
                    except BenchError as error:
                        failed = True
                        stops.append(f"{n} cameras, floor: failed: {str(error).splitlines()[0]}")
                        log(f"{n} cameras, floor failed: {error}")
                later = counts[index + 1:]
                if gateway is None:
                    stops.append(f"stopped after {n} cameras: the gateway case failed" +
                                 (f" ({', '.join(map(str, later))} not tried)" if later else ""))
                    break
                if not gateway["kept_pace"]:
                    stops.append(f"stopped at {n} cameras: the publishing side did not keep real-time pace: "
                                 + "; ".join(gateway["reasons"])
                                 + f"; the {os.cpu_count()} cores' {100 * os.cpu_count()}% went to the server "
                                 f"{gateway['server_cpu_pct']:.0f}%, the publishers {gateway['publisher_cpu_pct']:.0f}% "
                                 f"and other processes {gateway['other_load_pct']:.0f}%"
                                 + (f" ({', '.join(map(str, later))} not tried)" if later else ""))
                    break
            if baselines and results:
                log("baseline again, after the cameras")
                baselines.append(bench.baseline(args.baseline_copies))
        except KeyboardInterrupt:
            log("interrupted")
            return 130
        finally:
            children.stop_all()

    if results and results[-1]["kept_pace"] and not any(s.startswith("stopped") for s in stops):
        stops.append(f"every count asked for kept real-time pace (largest: {results[-1]['cameras']} cameras)")
    table = render(args, clip, baselines, results, stops, started, loads, idle, floors)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started.isoformat(), "bin_dir": args.bin_dir, "clip": clip.describe(),
                       "baselines": baselines, "idle_server": idle, "results": results, "floors": floors, "stops": stops, "loads": loads}, f, indent=1)
    print(table, end="")
    log(f"saved to {os.path.relpath(args.out, REPO)}; logs in {os.path.relpath(log_dir, REPO)}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
