#!/usr/bin/python3
"""A loopback RTSP test server (gst-rtsp-server) for FrameRelay's tests and demos.

Serves either a live H.264 test pattern or the H.264 track of an MP4 file at rtsp://127.0.0.1:PORT/PATH.
Run it with /usr/bin/python3 (or .venv/bin/python, which sees Debian's site-packages): gi lives there.
Prints `rtsp-server ready rtsp://127.0.0.1:PORT/PATH` on stdout once it listens; --port 0 picks a free port.
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def pipeline_description(args):
    if args.file:
        # The file's own packets, no re-encoding: what a real camera's H.264 looks like on the wire.
        return f"( filesrc location={args.file} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )"
    width, height = args.size.lower().split("x")
    # key-int-max keeps keyframes frequent so a late client starts decoding quickly.
    return (f"( videotestsrc is-live=true pattern={args.pattern} "
            f"! video/x-raw,width={width},height={height},framerate={args.fps}/1 "
            f"! x264enc tune=zerolatency key-int-max=30 ! h264parse ! rtph264pay name=pay0 pt=96 )")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--file", help="serve this MP4's H.264 track instead of a test pattern")
    parser.add_argument("--size", default="640x480", help="test pattern size WxH")
    parser.add_argument("--fps", type=int, default=30, help="test pattern frame rate")
    parser.add_argument("--pattern", default="ball", help="videotestsrc pattern")
    args = parser.parse_args()
    if not args.path.startswith("/"):
        args.path = "/" + args.path

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only: this is a test server
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline_description(args))
    factory.set_shared(True)  # every client sees the same live stream, like a camera
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp-server: cannot listen on 127.0.0.1:{args.port}")

    print(f"rtsp-server ready rtsp://127.0.0.1:{server.get_bound_port()}{args.path}", flush=True)
    loop = GLib.MainLoop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    loop.run()


if __name__ == "__main__":
    main()
