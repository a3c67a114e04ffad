#!/usr/bin/env python3
"""FrameRelay publishing side, two relay-client builds side by side in the same windows.

  scripts/bench/publishers.py --baseline-bin-dir OLD --bin-dir NEW [--cameras 25] [--windows 4]
  scripts/bench/publishers.py --minimal [--bin-dir DIR]


One relay-server (from --bin-dir) and two gateways running at once: relay-client from --baseline-bin-dir
publishing N cameras (devices base-001...) and relay-client from --bin-dir publishing N more (new-001...),
each camera the same 1080p30 H.264 clip cameras.py uses, looped at real-time pace. Each window measures
both clients' CPU (utime+stime from /proc) and the frames the server stored for each, so the ratio new /
baseline comes from the same seconds on the same machine. Why: on these shared 2-core machines two runs of
scripts/bench/cameras.py a minute apart differ by 15-25% in the publisher's CPU (the server's moves with
it), more than most changes to the publishing path are worth; side by side, that noise is common to both.

--minimal: the base side is `relay-transport-floor publish` instead: the same cameras' packets sent on
relay-client's own transport with nothing else (no capture thread, queue, resend, status or watchdog).
Not a strict floor: it paces each camera with Task.sleep, which at 10 cameras costs more than
relay-client's capture threads (relay-client 0.92x it); from 25 cameras on, relay-client costs more.

--rtsp: the new side's cameras read a loopback RTSP server (scripts/rtsp-server.py, gst-rtsp-server
sending the clip's packets at their pace, one stream shared by every camera) instead of the file, so
new/base is what an RTSP camera costs against a looped file.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import framerelay_support  # noqa: E402
from framerelay_support import ProcessError, cpu_stall_seconds, process_cpu_seconds  # noqa: E402
from cameras import gateway_settings, per_device, scrape  # noqa: E402
from clips import make_clip  # noqa: E402
from ingest import Children  # noqa: E402

REPO = str(framerelay_support.REPO)
READY_TIMEOUT_S = 30
SIDES = ("base", "new")


def log(text):
    print(f"bench-publishers: {text}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def start_rtsp_server(children, clip):
    """scripts/rtsp-server.py serving the clip's H.264 packets at their pace, one stream shared by every
    client (as a camera is); returns its URL."""
    process = children.start("rtsp-server", ["/usr/bin/python3", os.path.join(REPO, "scripts", "rtsp-server.py"),
                                             "--port", "0", "--file", clip.mp4])
    try:
        return process.wait_for_output(r"^rtsp-server ready (rtsp://\S+)$", timeout=READY_TIMEOUT_S).group(1)
    except ProcessError as error:
        raise BenchError(f"rtsp-server: {error.summary}\n{error.stderr_tail or ''}") from None


def stored_by_side(address):
    stored = per_device(scrape(address), "framerelay_frames_stored_total")
    return {side: sum(v for d, v in stored.items() if d and d.startswith(side + "-")) for side in SIDES}


def run(args, children, scratch, clip):
    cameras = args.cameras
    devices = {side: [f"{side}-{i:03d}" for i in range(1, cameras + 1)] for side in SIDES}
    process = children.start("server", [
        os.path.join(args.bin_dir, "relay-server"), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        "--data-dir", os.path.join(scratch, "data"), "--max-devices", str(max(64, 2 * cameras)),
        "--max-streams-per-connection", str(max(100, cameras + 8))])
    try:
        server = framerelay_support.relay_server_ready(process, READY_TIMEOUT_S)
    except ProcessError as error:
        raise BenchError(f"relay-server: {error.summary}\n{error.stderr_tail or ''}") from None
    clients = {}
    if args.minimal:
        clients["base"] = children.start("base.minimal", [
            os.path.join(args.bin_dir, "relay-transport-floor"), "publish", "--server", server.address,
            "--cameras", str(cameras), "--file", clip.mp4, "--device-prefix", "base"])
    rtsp = start_rtsp_server(children, clip) if args.rtsp else None
    sides = (("new", args.bin_dir),) if args.minimal else (("base", args.baseline_bin_dir), ("new", args.bin_dir))
    for side, bin_dir in sides:
        settings = os.path.join(scratch, f"{side}.yaml")
        gateway_settings(settings, server.address, devices[side], clip.mp4, rtsp=rtsp if side == "new" else None)
        clients[side] = children.start(f"{side}.client", [os.path.join(bin_dir, "relay-client"), "publish",
                                                          "--config", settings])
    deadline = time.monotonic() + 30 + 0.6 * cameras
    while True:
        stored = per_device(scrape(server.metrics_address), "framerelay_frames_stored_total")
        if all(stored.get(d, 0) > 0 for side in SIDES for d in devices[side]):
            break
        for p in list(clients.values()) + [server.process]:
            if not p.alive():
                raise BenchError(f"{p.name} exited with {p.returncode}: {p.tail(lines=3)}")
        if time.monotonic() > deadline:
            raise BenchError("not every camera had a frame stored after "
                             f"{30 + 0.6 * cameras:.0f} s")
        time.sleep(0.5)
    log(f"all {2 * cameras} cameras publishing; warming up {args.warmup:g} s")
    time.sleep(args.warmup)
    windows = []
    for index in range(args.windows):
        cpu0 = {side: process_cpu_seconds(p.pid) for side, p in clients.items()}
        frames0, stall0, t0 = stored_by_side(server.metrics_address), cpu_stall_seconds(), time.monotonic()
        time.sleep(args.seconds)
        cpu1 = {side: process_cpu_seconds(p.pid) for side, p in clients.items()}
        frames1, stall1, t1 = stored_by_side(server.metrics_address), cpu_stall_seconds(), time.monotonic()
        if any(v is None for v in list(cpu0.values()) + list(cpu1.values())):
            raise BenchError("a relay-client ended during the window")
        wall = t1 - t0
        window = {"stall_pct": None if stall0 is None or stall1 is None else (stall1 - stall0) / wall * 100}
        for side in SIDES:
            cpu = cpu1[side] - cpu0[side]
            frames = frames1[side] - frames0[side]
            window[side] = {"cpu_pct": cpu / wall * 100, "per_camera_pct": cpu / wall * 100 / cameras,
                            "fps_per_camera": frames / wall / cameras,
                            "ms_per_frame": cpu * 1000 / frames if frames else None}
        windows.append(window)
        log(f"window {index + 1}/{args.windows}: base {window['base']['per_camera_pct']:.3f}%, "
            f"new {window['new']['per_camera_pct']:.3f}% of a core per camera")
    for p in clients.values():
        children.stop(p)
    children.stop(server.process)
    return windows


def base_name(args):
    if args.minimal:
        return (f"{args.bin_dir}/relay-transport-floor publish (a minimal publisher: the clip's packets in memory, "
                "one task per camera writing each at its time on relay-client's transport, acks read and dropped)")
    return f"{args.baseline_bin_dir}/relay-client"


def new_name(args):
    reading = " (cameras read from a loopback RTSP server: gst-rtsp-server, the clip's packets at their pace, " \
              "one shared stream; the base side loops the file)" if args.rtsp else ""
    return f"{args.bin_dir}/relay-client{reading}"


def render(args, clip, windows, started):
    lines = [f"FrameRelay publishing side, two builds side by side, {started:%Y-%m-%d %H:%M} UTC, "
             f"{platform.node() or 'this machine'}, {os.cpu_count()} cores",
             f"base: {base_name(args)}; new: {new_name(args)}; server: {args.bin_dir}/relay-server",
             f"each side: one gateway of {args.cameras} cameras, {clip.describe()}, loop, pace realtime; "
             f"{args.windows} window(s) of {args.seconds:g} s after {args.warmup:g} s of warm-up",
             "",
             f"{'window':<8}{'base % core':>12}{'/camera':>9}{'ms/frame':>10}{'fps/cam':>9}"
             f"{'new % core':>12}{'/camera':>9}{'ms/frame':>10}{'fps/cam':>9}{'new/base':>10}{'stall %':>9}"]

    def ratio(w):
        b, n = w["base"]["ms_per_frame"], w["new"]["ms_per_frame"]
        return n / b if b and n else None

    for i, w in enumerate(windows, 1):
        b, n, r, stall = w["base"], w["new"], ratio(w), w["stall_pct"]
        r_text = "-" if r is None else f"{r:.3f}"
        stall_text = "-" if stall is None else f"{stall:.0f}"
        lines.append(f"{i:<8}{b['cpu_pct']:>12.1f}{b['per_camera_pct']:>9.3f}{b['ms_per_frame'] or 0:>10.3f}"
                     f"{b['fps_per_camera']:>9.1f}{n['cpu_pct']:>12.1f}{n['per_camera_pct']:>9.3f}"
                     f"{n['ms_per_frame'] or 0:>10.3f}{n['fps_per_camera']:>9.1f}{r_text:>10}{stall_text:>9}")
    ratios = [r for r in map(ratio, windows) if r is not None]
    lines.append("")
    lines.append("new/base: relay-client's CPU per frame stored / the base side's, in the same window "
                 + ("(relay-client against the minimal publisher)" if args.minimal else "(below 1: the new build is cheaper)"))
    if ratios:
        lines.append(f"median new/base over {len(ratios)} window(s): {statistics.median(ratios):.3f} "
                     f"(range {min(ratios):.3f}-{max(ratios):.3f})")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=25, help="cameras per side (default 25)")
    parser.add_argument("--windows", type=int, default=4, help="measured windows (default 4)")
    parser.add_argument("--seconds", type=float, default=15, help="length of each window (default 15)")
    parser.add_argument("--warmup", type=float, default=8, help="seconds after every camera's first frame")
    parser.add_argument("--clip-seconds", type=int, default=20, help="length of the clip each camera loops")
    parser.add_argument("--bin-dir", default=os.environ.get("RELAY_BIN_DIR", os.path.join(REPO, ".build", "release")),
                        help="the new build: relay-client and relay-server (env RELAY_BIN_DIR; default .build/release)")
    parser.add_argument("--baseline-bin-dir", help="the baseline build's relay-client (default: --bin-dir, an A/A run)")
    parser.add_argument("--minimal", action="store_true",
                        help="the base side is relay-transport-floor publish (from --bin-dir) instead of a relay-client: "
                             "the same packets on the same transport with nothing else")
    parser.add_argument("--rtsp", action="store_true",
                        help="the new side's cameras read rtsp:// from scripts/rtsp-server.py (the clip at its pace, "
                             "one stream shared by every camera) instead of looping the file: what an RTSP camera "
                             "costs against a file; the clip is made long enough to last the run")
    parser.add_argument("--json", help="also write every window's figures to this JSON file")
    parser.add_argument("--out", default=os.path.join(REPO, "out", "bench-publishers.txt"))
    args = parser.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.baseline_bin_dir = os.path.abspath(args.baseline_bin_dir or args.bin_dir)
    if args.cameras < 1 or args.windows < 1 or args.seconds <= 0 or args.warmup < 0:
        sys.exit("bench-publishers: --cameras, --windows and --seconds must be positive")
    if args.minimal and args.baseline_bin_dir != args.bin_dir:
        sys.exit("bench-publishers: --minimal and --baseline-bin-dir: choose one base side")
    base = os.path.join(args.bin_dir, "relay-transport-floor") if args.minimal \
        else os.path.join(args.baseline_bin_dir, "relay-client")
    for path in (os.path.join(args.bin_dir, "relay-server"), os.path.join(args.bin_dir, "relay-client"), base):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench-publishers: no {path} (build it, or pass --bin-dir / --baseline-bin-dir)")
    if args.rtsp:
        # The RTSP server plays the clip once: it must outlast the start, the warm-up and the windows.
        needed = 30 + 0.6 * args.cameras + args.warmup + args.windows * args.seconds + 10
        args.clip_seconds = max(args.clip_seconds, int(needed // 10 + 1) * 10)
    framerelay_support.interrupt_on_signals()
    started = datetime.datetime.now(datetime.timezone.utc)
    log_dir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "bench-publishers-logs")
    os.makedirs(log_dir, exist_ok=True)
    children = Children(log_dir)
    clip = make_clip(1920, 1080, fps=30, seconds=args.clip_seconds, gop=60, bitrate=4_000_000, log=log)
    with tempfile.TemporaryDirectory(prefix="bench-publishers-") as scratch:
        try:
            windows = run(args, children, scratch, clip)
        except BenchError as error:
            sys.exit(f"bench-publishers: {error} (logs in {log_dir})")
        finally:
            children.stop_all()
    table = render(args, clip, windows, started)
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cameras_per_side": args.cameras, "minimal": args.minimal, "rtsp": args.rtsp,
                       "windows": windows}, f, indent=1)


if __name__ == "__main__":
    main()
