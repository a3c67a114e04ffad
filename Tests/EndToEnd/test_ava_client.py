"""relay-client ava against an AVA extension written from the spec page alone
(Tests/EndToEnd/peers/ava_extension_server.py), well-behaved and in each of the deviations the spec lists."""
import json
import os
import time

import numpy
import pytest

import support
from peers.ava_extension_server import AvaExtensionServer

pytestmark = pytest.mark.binaries


def ava_client(processes, server, clip, *args):
    return processes("relay-client", [support.RELAY_CLIENT, "ava", "--server", server.address, "--device", "ava-edge",
                                      "--file", str(clip.path), "--pace", "fast", *args])


def summary_of(client):
    return json.loads([l for l in client.stdout().splitlines() if l.startswith('{"')
                       and '"event":"summary"' in l.replace(" ", "")][-1])


def inference_lines(client):
    return [json.loads(l) for l in client.stdout().splitlines() if l.startswith('{"inferences"')]


def ffmpeg_frames(path, pixel_format):
    raw = support.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
                       "-sws_flags", "bicubic", "-f", "rawvideo", "-pix_fmt", pixel_format, "-"]).stdout
    size = 320 * 240 * 3
    return [numpy.frombuffer(raw[i:i + size], numpy.uint8).reshape(240, 320, 3) for i in range(0, len(raw), size)]


def shm_files(device="ava-edge"):
    return [name for name in os.listdir("/dev/shm") if name.startswith(f"framerelay-{device}-")]


@pytest.mark.parametrize("shared_memory", [False, True], ids=["embedded", "shared-memory"])
def test_frames_reach_the_extension_equal_to_ffmpegs_conversion(processes, h264_mp4, shared_memory):
    with AvaExtensionServer(inferences="demo") as extension:
        client = ava_client(processes, extension, h264_mp4, "--pixel-format", "bgr24",
                            *(["--shared-memory"] if shared_memory else []))
        assert client.wait(timeout=60) == 0, client.stderr()
        session = extension.wait_for_session(0, timeout=5)
        session.wait_ended(timeout=5)
        assert session.sequences == list(range(2, 92)), "descriptor first (1), then samples 2, 3, ..."
        want = ffmpeg_frames(h264_mp4.path, "bgr24")
        assert len(session.frames) == len(want) == 90
        assert all(numpy.array_equal(g, w) for g, w in zip(session.frames, want))
        assert not session.violations, "a region was rewritten before its ack"
        if shared_memory:
            assert {s.kind for s in session.samples} == {"reference"}
            # No region was reused before the sample in it was acked.
            regions = session.regions()
            for later_index, (seq, offset, length) in enumerate(regions):
                for earlier_seq, earlier_offset, earlier_length in regions[:later_index]:
                    overlaps = offset < earlier_offset + earlier_length and earlier_offset < offset + length
                    if overlaps:
                        later = session.samples[later_index]
                        assert session.ack_sent_at(earlier_seq) <= later.received_at
        summary = summary_of(client)
        assert summary["frames_acked"] == 90 and summary["frames_lost"] == 0
        lines = inference_lines(client)
        assert len(lines) == 90, "one line of inference results per ack"
        entity = [i for i in lines[0]["inferences"] if i["type"] == "entity"][0]
        assert entity["entity"]["tag"]["value"] == "person"
        assert set(entity["entity"]["box"]) == {"l", "t", "w", "h"}
    assert shm_files() == [], "the shared-memory file is unlinked on exit"


def test_shared_memory_file_is_gone_after_sigterm(processes):
    with AvaExtensionServer() as extension:
        client = processes("relay-client", [support.RELAY_CLIENT, "ava", "--server", extension.address, "--device", "ava-term",
                                            "--test-pattern", "--size", "320x240", "--fps", "30", "--shared-memory"])
        extension.wait_for_session(0, timeout=15).wait_for_samples(5, timeout=15)
        assert shm_files("ava-term"), "the shared-memory file exists while streaming"
        assert client.stop(timeout=6) == 0
    assert shm_files("ava-term") == []


@pytest.mark.parametrize("mode", [
    dict(descriptor_numbers_zero=True),
    dict(acks_without_sequence=True),
    dict(ack_every=4),
    dict(ack_batch=5),
    dict(ack_delay=0.05),
], ids=["answer-0-0", "acks-without-sequence", "every-4th-ack", "batched-acks", "late-acks"])
def test_tolerates_the_deviations_real_extensions_show(processes, h264_mp4, mode):
    with AvaExtensionServer(**mode) as extension:
        # A window above the extension's batch: an extension that holds 5 acks needs 5 samples in flight.
        client = ava_client(processes, extension, h264_mp4, "--shared-memory", "--ack-timeout-seconds", "3", "--window", "8")
        assert client.wait(timeout=60) == 0, client.stderr()
        summary = summary_of(client)
        assert summary["frames_sent"] == 90
        # Every 4th: the last two samples are never acked (90 is not a multiple of 4): lost after the timeout.
        expected_lost = 2 if mode.get("ack_every") == 4 else 0
        assert summary["frames_acked"] == 90 - expected_lost
        assert summary["frames_lost"] == expected_lost


def test_dropped_acks_time_out_and_the_stream_goes_on(processes, h264_mp4):
    with AvaExtensionServer(drop_acks={10, 11}, ack_every=1) as extension:
        client = ava_client(processes, extension, h264_mp4, "--shared-memory", "--ack-timeout-seconds", "1",
                            "--window", "1")
        assert client.wait(timeout=60) == 0, client.stderr()
        summary = summary_of(client)
        assert summary["frames_lost"] == 2 and summary["frames_acked"] == 88
        assert "no ack from the extension within" in client.stderr()


def test_a_frame_over_the_extensions_receive_limit_says_so(processes):
    with AvaExtensionServer(max_receive_message_length=None) as extension:  # gRPC's default 4 MiB
        client = processes("relay-client", [support.RELAY_CLIENT, "ava", "--server", extension.address, "--device", "ava-big",
                                            "--test-pattern", "--size", "1920x1080", "--fps", "5"])
        assert client.wait(timeout=60) != 0
        stderr = client.stderr()
        assert "receive limit is too small for 1920x1080" in stderr and "6220800 bytes" in stderr, stderr


def test_a_full_extension_is_retried_with_back_off(processes, h264_mp4):
    with AvaExtensionServer(max_sessions=0, over_limit="refuse") as extension:
        client = ava_client(processes, extension, h264_mp4)
        client.wait_for_output(r"retrying in", timeout=15, stream="stderr")
        assert client.alive, "a refused session is retried, not fatal"


def test_inference_results_are_forwarded_as_annotations(processes, h264_mp4, start_server, tmp_path):
    relay = start_server()
    with AvaExtensionServer(inferences="demo") as extension:
        client = ava_client(processes, extension, h264_mp4, "--annotate-to", relay.address)
        assert client.wait(timeout=60) == 0, client.stderr()
    outbox = tmp_path / "data-0" / "annotations.sqlite"
    import sqlite3
    from support import image_pb
    rows = sqlite3.connect(outbox).execute("SELECT request FROM outbox").fetchall()
    requests = [image_pb.AnnotateRequest.FromString(r[0]) for r in rows]
    assert len(requests) == 90 * 3, "entity, classification and event for every frame"
    entity = next(r for r in requests if r.type == "entity")
    assert entity.device_name == "ava-edge" and entity.object_type == "person"
    assert entity.object_bouding_box.width == round(0.5 * 320)
    assert abs(entity.confidence - 0.875) < 1e-6
    assert json.loads(entity.custom_meta_1)["entity"]["tag"]["value"] == "person"
