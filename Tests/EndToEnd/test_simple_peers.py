"""The Python peers of the minimal video-over-gRPC protocol (peers/simple_server.py, peers/simple_client.py)
against each other on loopback, no relay involved: they are the reference the relay is tested with, so
they are tested first. Wire facts: shared/specs/simple-video-grpc.md."""
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy
import pytest

from peers import simple_client, simple_server
from peers.simple_client import AnalyseError, SimpleVideoClient, analyse
from peers.simple_server import SimpleVideoServer

PEERS = Path(__file__).resolve().parent / "peers"
GRAY = (480, 640)          # the original's frames: 307,200 bytes
COLOUR = (480, 640, 3)     # its README's colour variant
GRPC_DEFAULT_LIMIT = 4 * 1024 * 1024


def frames_of(shape, count, seed=20240601):
    generator = numpy.random.default_rng(seed)  # fixed seed: a failure can be replayed
    return [generator.integers(0, 256, shape, dtype=numpy.uint8) for _ in range(count)]


@pytest.fixture
def start_simple_server():
    started = []

    def start(**options):
        server = SimpleVideoServer(**options)
        server.start()
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


def test_the_stubs_are_the_spec_wire():
    # No package: the service is "video" and the method path /video/Analyse.
    service = simple_server.video_pb2.DESCRIPTOR.services_by_name["video"]
    method = service.methods_by_name["Analyse"]
    assert service.full_name == "video"
    assert method.client_streaming and method.server_streaming
    assert method.input_type.full_name == "MsgRequest" and method.output_type.full_name == "MsgReply"
    img = method.input_type.fields_by_name["img"]
    reply = method.output_type.fields_by_name["reply"]
    assert (img.number, img.type) == (1, img.TYPE_BYTES)
    assert (reply.number, reply.type) == (1, reply.TYPE_INT32)
    assert simple_client.ANALYSE_PATH == "/video/Analyse"


@pytest.mark.parametrize("shape", [GRAY, COLOUR], ids=["gray-480x640", "colour-480x640x3"])
def test_frames_arrive_byte_for_byte_and_each_gets_the_constant_1(start_simple_server, shape):
    server = start_simple_server(shape=shape)
    sent = frames_of(shape, 20)
    replies = analyse(server.address, sent, timeout=5)
    assert replies == [1] * 20
    received = server.frames
    assert len(received) == 20 and server.frame_count == 20 and server.reply_count == 20
    for index, (ours, theirs) in enumerate(zip(sent, received)):
        assert theirs.shape == shape and theirs.dtype == numpy.uint8
        assert theirs.tobytes() == ours.tobytes(), f"frame {index} differs"
    assert server.wait_for_calls_ended(1)
    assert [(c.frames, c.replies, c.status) for c in server.calls] == [(20, 20, "OK")]


def test_a_frame_given_as_bytes_is_sent_as_is(start_simple_server):
    server = start_simple_server(shape=(2, 3))
    assert analyse(server.address, [bytes(range(6))], timeout=5) == [1]
    assert server.frames[0].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_sequence_mode_numbers_the_frames_of_each_call_from_1(start_simple_server):
    server = start_simple_server(shape=GRAY, reply_mode="sequence")
    assert analyse(server.address, frames_of(GRAY, 25), timeout=5) == list(range(1, 26))
    # A second call starts again at 1: the numbers are per stream.
    assert analyse(server.address, frames_of(GRAY, 3), timeout=5) == [1, 2, 3]
    assert server.frame_count == 28


def test_an_empty_stream_ends_ok_with_no_replies(start_simple_server):
    server = start_simple_server(shape=GRAY)
    assert analyse(server.address, [], timeout=5) == []
    assert server.wait_for_calls_ended(1)
    assert server.calls[0].status == "OK" and server.frame_count == 0


def test_metadata_reaches_the_server(start_simple_server):
    server = start_simple_server(shape=GRAY)
    analyse(server.address, frames_of(GRAY, 2), metadata={"x-device-id": "cam-7"}, timeout=5)
    assert server.calls[0].metadata.get("x-device-id") == "cam-7"


def test_max_in_flight_bounds_unanswered_frames_and_free_streaming_does_not(start_simple_server):
    server = start_simple_server(shape=(64, 64), reply_mode="sequence", reply_delay=0.01)
    with SimpleVideoClient(server.address, max_in_flight=2, timeout=5) as bounded:
        assert bounded.analyse(frames_of((64, 64), 30)) == list(range(1, 31))
        assert 1 <= bounded.max_in_flight_seen <= 2
    with SimpleVideoClient(server.address, timeout=5) as free:
        assert free.analyse(frames_of((64, 64), 30)) == list(range(1, 31))
        # The original does not wait for replies: with a slow server frames pile up unanswered.
        assert free.max_in_flight_seen > 2


@pytest.mark.parametrize("length", [307_199, 307_201, 0], ids=["one-short", "one-long", "empty"])
def test_strict_server_aborts_a_wrong_length_frame_with_invalid_argument(start_simple_server, length):
    server = start_simple_server(shape=GRAY, strict=True)
    good = frames_of(GRAY, 1)[0]
    with pytest.raises(AnalyseError) as failure:
        analyse(server.address, [good, b"\x07" * length, good], timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(length) in failure.value.details() and "307200" in failure.value.details()
    assert failure.value.replies == [1]  # the good frame before it was answered
    assert server.frame_count == 1 and server.frames[0].tobytes() == good.tobytes()
    assert server.wait_for_calls_ended(1) and server.calls[0].status == "INVALID_ARGUMENT"


def test_original_server_fails_a_wrong_length_frame_as_numpy_does(start_simple_server):
    # The original reshapes without checking: numpy raises and gRPC ends the call with UNKNOWN.
    server = start_simple_server(shape=GRAY)
    with pytest.raises(AnalyseError) as failure:
        analyse(server.address, frames_of(GRAY, 1) + [b"\x00" * 100], timeout=5)
    assert failure.value.code() == grpc.StatusCode.UNKNOWN
    assert failure.value.replies == [1]
    assert server.frame_count == 1


def test_keep_mode_answers_a_wrong_length_frame_and_records_it_flat(start_simple_server):
    server = start_simple_server(shape=GRAY, on_mismatch="keep", reply_mode="sequence")
    assert analyse(server.address, [b"\x05" * 10] + frames_of(GRAY, 1), timeout=5) == [1, 2]
    flat, frame = server.frames
    assert flat.shape == (10,) and frame.shape == GRAY and server.mismatch_count == 1


def test_frames_over_grpcs_default_4_mib_are_refused_by_the_original_like_server(start_simple_server):
    # Just under the limit (with the few bytes of protobuf framing) passes; just over is refused.
    under, over = (2048, 2047), (2048, 2049)  # 4,192,256 and 4,196,352 bytes
    assert numpy.prod(under) + 16 < GRPC_DEFAULT_LIMIT < numpy.prod(over)
    server = start_simple_server(shape=under)
    frame = frames_of(under, 1)[0]
    assert analyse(server.address, [frame], timeout=5) == [1]
    assert server.frames[0].tobytes() == frame.tobytes()

    big = start_simple_server(shape=over)
    with pytest.raises(AnalyseError) as failure:
        analyse(big.address, frames_of(over, 1), timeout=5)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.value.replies == [] and big.frame_count == 0

    # A 1080p colour frame (6.2 MB) too: the original's limit, not our shape, refuses it.
    hd = start_simple_server(shape=(1080, 1920, 3))
    with pytest.raises(AnalyseError) as failure:
        analyse(hd.address, frames_of((1080, 1920, 3), 1), timeout=5)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_raised_receive_limit_accepts_big_frames(start_simple_server):
    server = start_simple_server(shape=(1080, 1920, 3), max_receive_message_length=8 * 1024 * 1024)
    frame = frames_of((1080, 1920, 3), 1)[0]
    assert analyse(server.address, [frame], timeout=5) == [1]
    assert server.frames[0].tobytes() == frame.tobytes()


def test_the_client_refuses_frames_that_are_not_8_bit():
    with pytest.raises(ValueError, match="uint16"):
        simple_client.frame_bytes(numpy.zeros(GRAY, dtype=numpy.uint16))


def test_scripts_talk_to_each_other_and_save_frames(tmp_path):
    save_dir = tmp_path / "frames"
    server = subprocess.Popen([sys.executable, str(PEERS / "simple_server.py"), "--host", "127.0.0.1",
                               "--port", "0", "--shape", "48x64x3", "--reply-mode", "sequence",
                               "--save-dir", str(save_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = server.stdout.readline()
        match = re.match(r"^simple-server listening on 127\.0\.0\.1:(\d+)$", ready.strip())
        assert match, f"unexpected ready line {ready!r}; stderr: {server.stderr.read() if server.poll() is not None else ''}"
        target = f"127.0.0.1:{match.group(1)}"
        client = subprocess.run([sys.executable, str(PEERS / "simple_client.py"), "--target", target,
                                 "--shape", "48x64x3", "--frames", "5", "--pattern", "gradient",
                                 "--metadata", "x-device-id=cam-1", "--timeout", "5"],
                                capture_output=True, text=True, timeout=10)
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == [f"reply {n}: {n}" for n in range(1, 6)] + ["sent 5 frames, 5 replies"]
        saved = sorted(save_dir.glob("*.npy"))
        expected = list(simple_client.synthetic_frames((48, 64, 3), 5, "gradient"))
        assert len(saved) == 5
        for path, frame in zip(saved, expected):
            assert numpy.load(path).tobytes() == frame.tobytes(), path.name
        # The saved frames can be sent again with --input.
        again = subprocess.run([sys.executable, str(PEERS / "simple_client.py"), "--target", target,
                                "--input", str(save_dir), "--quiet", "--timeout", "5"],
                               capture_output=True, text=True, timeout=10)
        assert again.returncode == 0 and again.stdout.strip() == "sent 5 frames, 5 replies", again.stderr
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=5)
    assert server.returncode == 0
    assert "simple-server stopped: 10 frames, 10 replies" in out


def test_script_client_exits_1_with_the_status_when_the_call_fails(start_simple_server):
    server = start_simple_server(shape=(10, 10), strict=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(PEERS / "simple_client.py"), "--target", server.address,
                             "--shape", "10x11", "--frames", "2", "--timeout", "5"],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "110 bytes" in result.stderr
    assert time.monotonic() - started < 5
