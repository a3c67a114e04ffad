"""Fixtures for the end-to-end tests: real relay-server, relay-client and RTSP processes on loopback."""

import numpy
import pytest

import support
from support import ManagedProcess

TEST_TIME_LIMIT = 60  # seconds; a hung test fails instead of stalling the whole run


def pytest_configure(config):
    config.addinivalue_line("markers", "binaries: needs relay-server and relay-client; fails if they are missing")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the item so fixtures can tell at teardown whether the test failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def time_limit():
    with support.time_limit(TEST_TIME_LIMIT):
        yield


@pytest.fixture(autouse=True)
def binaries_present(request):
    """Tests marked `binaries` fail (not skip) when the Swift programs are missing: a missing build is a bug."""
    if request.node.get_closest_marker("binaries"):
        missing = [str(p) for p in (support.RELAY_SERVER, support.RELAY_CLIENT) if not p.is_file()]
        if missing:
            pytest.fail(f"missing {', '.join(missing)}: run `swift build` (or set RELAY_BIN_DIR)", pytrace=False)


@pytest.fixture
def processes(request, tmp_path):
    """Starts processes for one test and always stops them; prints their logs when the test failed."""
    started = []

    def start(name, argv, env=None):
        process = ManagedProcess(f"{name}-{len(started)}", argv, tmp_path, env=env)
        started.append(process)
        return process

    yield start
    for process in reversed(started):  # clients before the server they talk to
        process.stop(timeout=3)
    failed = any(getattr(request.node, f"report_{when}", None) is not None
                 and getattr(request.node, f"report_{when}").failed for when in ("setup", "call"))
    if failed:
        for process in started:
            print(f"---- {process.name}: {' '.join(process.argv)} (exit {process.returncode})")
            print(f"stdout:\n{process.tail('stdout')}\nstderr:\n{process.tail('stderr')}")


@pytest.fixture
def free_port():
    """A port nothing listens on right now (bound and released)."""
    return support.pick_port()


@pytest.fixture
def start_server(processes, tmp_path):
    def start(*extra_args):
        # Each server gets a data directory of its own in the test's folder unless the test names one.
        data_dir = [] if "--data-dir" in extra_args else ["--data-dir", str(tmp_path / f"data-{len(started)}")]
        started.append(data_dir)
        process = processes("relay-server", [support.RELAY_SERVER, "--listen", "127.0.0.1:0", *data_dir, *extra_args])
        return support.relay_server_ready(process, timeout=15)  # with --metrics-listen, metrics_address too
    started = []
    return start


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def start_client(processes):
    def start(server_address, device, *source_args, env=None):
        return processes("relay-client", [support.RELAY_CLIENT, "publish", "--server", server_address,
                                          "--device", device, *source_args], env=env)
    return start


@pytest.fixture
def start_rtsp_server(processes):
    """Starts scripts/rtsp-server.py on a free port; returns (process, rtsp URL)."""
    def start(*args):
        process = processes("rtsp-server", ["/usr/bin/python3", support.RTSP_SERVER_SCRIPT, "--port", "0", *args])
        ready = process.wait_for_output(r"^rtsp-server ready (rtsp://\S+)$", timeout=10)
        return process, ready.group(1)
    return start


@pytest.fixture
def consumer():
    """Makes Image stubs on channels with the consumers' 50 MB receive limit; closes the channels after."""
    channels = []

    def connect(address):
        channel = support.consumer_channel(address)
        channels.append(channel)
        return support.image_grpc.ImageStub(channel)
    yield connect
    for channel in channels:
        channel.close()


class ClipFile:
    """A small H.264 MP4 and FFmpeg's own decode of it (the reference for pixel comparisons)."""

    def __init__(self, path, width, height):
        self.path, self.width, self.height = path, width, height
        self.frames = support.ffmpeg_bgr24_frames(path, width, height)
        self.probed = support.ffprobe_frames(path)
        assert len(self.frames) == len(self.probed)
        self.index_of_pts = {pts: index for index, (pts, _, _) in enumerate(self.probed)}
        self.time_base = support.ffprobe_time_base(path)


@pytest.fixture(scope="session")
def h264_mp4(tmp_path_factory):
    """320x240, 90 frames at 30 fps, a keyframe every 30, with x264's default B-frames (so pts != dts)."""
    path = tmp_path_factory.mktemp("media") / "testsrc2.mp4"
    support.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
                 "-frames:v", "90", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "30", path])
    return ClipFile(path, 320, 240)


class AnnexBClip:
    """Annex-B H.264 access units with pts = index (no B-frames, so decode order is presentation order)."""

    def __init__(self, path, width, height):
        self.width, self.height = width, height
        self.units = support.split_access_units(path.read_bytes())
        self.frames = support.ffmpeg_bgr24_frames(path, width, height, input_format="h264")
        assert len(self.units) == len(self.frames)


@pytest.fixture(scope="session")
def annexb_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "testsrc2.h264"
    support.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
                 "-frames:v", "90", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "30", "-bf", "0",
                 "-bsf:v", "h264_mp4toannexb", "-x264-params", "aud=1", "-f", "h264", path])
    clip = AnnexBClip(path, 320, 240)
    keyframes = [index for index, (_, key) in enumerate(clip.units) if key]
    assert keyframes == [0, 30, 60], f"unexpected keyframe positions {keyframes}"
    return clip


@pytest.fixture
def random_bytes():
    generator = numpy.random.default_rng(20240601)  # fixed seed: a failure can be replayed
    return lambda n: generator.integers(0, 256, n, dtype=numpy.uint8).tobytes()

