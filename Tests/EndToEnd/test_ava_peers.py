"""The AVA gRPC extension peers (peers/ava_sender.py against peers/ava_extension_server.py) on loopback,
no relay involved: the contract as shared/specs/ava-grpc-extension.md gives it, frames byte for byte
(embedded and through shared memory), sequence numbers, every deviation of real extensions as the
sender sees it, real senders' deviations as the extension sees them, bad input, and that a shared-memory
region is never rewritten before its ack. These peers are what the relay's AVA tests talk to, so they
must be right on their own first."""
import os
import threading
import time

import grpc
import numpy
import pytest

from peers import ava_common as common
from peers import ava_extension_server as ext
from peers import ava_sender as snd

W, H = 64, 48


def frames_of(pixel_format, count=6, width=W, height=H):
    return [common.pattern_frame(width, height, i, pixel_format) for i in range(count)]


@pytest.fixture
def extension():
    """Starts AvaExtensionServer(**options) on 127.0.0.1:0; stops them all after the test."""
    started = []

    def start(**options):
        server = ext.AvaExtensionServer(**options)
        server.start()
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop(grace=0)


def ended(server, index=0):
    session = server.wait_for_session(index)
    session.wait_ended(timeout=3)
    return session


def assert_all_acked(result):
    assert result.code == "OK", result.summary()
    assert result.acked == result.sequences and not result.timed_out, result.summary()


# ---------------------------------------------------------------- the contract

SPEC_FIELDS = {  # message: {field: (number, type)} as the spec's table gives them
    "MediaStreamMessage": {"sequence_number": (1, "uint64"), "ack_sequence_number": (2, "uint64"),
                           "media_stream_descriptor": (5, "MediaStreamDescriptor"), "media_sample": (6, "MediaSample")},
    "MediaStreamDescriptor": {"graph_identifier": (1, "GraphIdentifier"), "extension_identifier": (2, "string"),
                              "extension_configuration": (3, "string"), "media_descriptor": (5, "MediaDescriptor"),
                              "shared_memory_buffer_transfer_properties": (10, "SharedMemoryBufferTransferProperties")},
    "MediaSample": {"timestamp": (1, "uint64"), "content_bytes": (5, "ContentBytes"),
                    "content_reference": (6, "ContentReference"), "inferences": (10, "repeated Inference")},
    "GraphIdentifier": {"media_services_arm_id": (1, "string"), "graph_instance_name": (2, "string"),
                        "graph_node_name": (3, "string")},
    "SharedMemoryBufferTransferProperties": {"handle_name": (1, "string"), "length_bytes": (2, "uint64")},
    "MediaDescriptor": {"timescale": (1, "uint32"), "video_frame_sample_format": (5, "VideoFrameSampleFormat")},
    "VideoFrameSampleFormat": {"encoding": (1, "Encoding"), "pixel_format": (2, "PixelFormat"),
                               "dimensions": (3, "Dimensions"), "stride_bytes": (4, "uint32")},
    "Dimensions": {"width": (1, "uint32"), "height": (2, "uint32")},
    "ContentBytes": {"bytes": (1, "bytes")},
    "ContentReference": {"address_offset": (1, "uint64"), "length_bytes": (2, "uint64")},
    "Inference": {"type": (1, "InferenceType"), "subtype": (2, "string"), "inference_id": (3, "string"),
                  "related_inferences": (4, "repeated string"), "classification": (5, "Classification"),
                  "motion": (6, "Motion"), "entity": (7, "Entity"), "text": (8, "Text"), "event": (9, "Event"),
                  "other": (13, "InferenceOther"), "sequence_id": (14, "string"),
                  "extensions": (15, "map<string,string>")},
    "Classification": {"tag": (1, "Tag"), "attributes": (2, "repeated Attribute")},
    "Motion": {"box": (1, "Rectangle")},
    "Entity": {"tag": (1, "Tag"), "attributes": (2, "repeated Attribute"), "box": (3, "Rectangle"), "id": (4, "string")},
    "Text": {"value": (1, "string"), "language": (2, "string"), "start_timestamp": (5, "uint64"),
             "end_timestamp": (6, "uint64")},
    "Event": {"name": (1, "string"), "properties": (7, "map<string,string>")},
    "InferenceOther": {"content_type": (1, "string"), "content_bytes": (2, "bytes")},
    "Attribute": {"name": (1, "string"), "value": (2, "string"), "confidence": (3, "float")},
    "Tag": {"value": (2, "string"), "confidence": (3, "float")},
    "Rectangle": {"l": (1, "float"), "t": (2, "float"), "w": (3, "float"), "h": (4, "float")},
}
SPEC_ONEOFS = {"MediaStreamMessage": {"payload": {"media_stream_descriptor", "media_sample"}},
               "MediaStreamDescriptor": {"stream_identifier": {"graph_identifier", "extension_identifier"},
                                         "data_transfer_properties": {"shared_memory_buffer_transfer_properties"}},
               "MediaSample": {"content": {"content_bytes", "content_reference"}},
               "MediaDescriptor": {"media_sample_format": {"video_frame_sample_format"}},
               "Inference": {"value": {"classification", "motion", "entity", "text", "event", "other"}}}
SPEC_ENUMS = {
    "VideoFrameSampleFormat.Encoding": {"BMP": 0, "JPG": 1, "PNG": 2, "RAW": 3},
    "VideoFrameSampleFormat.PixelFormat": {"NONE": 0, "YUV420P": 20, "RGB565BE": 40, "RGB565LE": 41,
                                           "RGB555BE": 42, "RGB555LE": 43, "RGB24": 60, "BGR24": 61, "ARGB": 80,
                                           "RGBA": 81, "ABGR": 82, "BGRA": 83},
    "Inference.InferenceType": {"AUTO": 0, "CLASSIFICATION": 1, "MOTION": 2, "ENTITY": 3, "TEXT": 4, "EVENT": 5,
                                "OTHER": 15},
}


def _field_type(field):
    from google.protobuf.descriptor import FieldDescriptor as F
    names = {F.TYPE_UINT64: "uint64", F.TYPE_UINT32: "uint32", F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes",
             F.TYPE_FLOAT: "float"}
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        k, v = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return f"map<{names[k.type]},{names[v.type]}>"
    base = (field.message_type.name if field.message_type is not None else
            field.enum_type.name if field.enum_type is not None else names[field.type])
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
    return f"repeated {base}" if repeated else base


def test_generated_contract_is_the_spec():
    pool = common.extension_pb2.DESCRIPTOR.pool
    package = "microsoft.azure.media.live_video_analytics.extensibility.grpc.v1"
    for name, fields in SPEC_FIELDS.items():
        full = f"{package}.VideoFrameSampleFormat" if name == "VideoFrameSampleFormat" else f"{package}.{name}"
        message = pool.FindMessageTypeByName(full)
        got = {f.name: (f.number, _field_type(f)) for f in message.fields}
        assert got == fields, name
        oneofs = {o.name: {f.name for f in o.fields} for o in message.oneofs}
        assert oneofs == SPEC_ONEOFS.get(name, {}), name
    for name, values in SPEC_ENUMS.items():
        enum = pool.FindEnumTypeByName(f"{package}.{name}")
        assert {v.name: v.number for v in enum.values} == values, name
    service = pool.FindServiceByName(f"{package}.MediaGraphExtension")
    method = service.methods_by_name["ProcessMediaStream"]
    assert method.client_streaming and method.server_streaming
    assert method.input_type.name == method.output_type.name == "MediaStreamMessage"
    assert f"/{service.full_name}/{method.name}" == common.METHOD_PATH
    assert {common.extension_pb2.DESCRIPTOR.name, common.media_pb2.DESCRIPTOR.name,
            common.inferencing_pb2.DESCRIPTOR.name} == {"ava/extension.proto", "ava/media.proto", "ava/inferencing.proto"}


def test_raw_layout_stride_padding_round_trips():
    layout = common.RawLayout("BGR24", 5, 3, 20)
    frame = common.pattern_frame(5, 3, 1, "BGR24")
    content = layout.encode(frame, pad_byte=0xEE)
    assert len(content) == 60 and content[15:20] == b"\xee" * 5
    assert common.frames_equal(layout.decode(content), frame)
    yuv = common.RawLayout("YUV420P", 5, 3, 8)   # chroma 3x2 with stride 4
    assert yuv.length == 8 * 3 + 2 * 4 * 2
    with pytest.raises(common.FrameFormatError):
        common.RawLayout("RGB24", 5, 3, 14)
    with pytest.raises(common.FrameFormatError):
        layout.decode(content[:-1])


# ---------------------------------------------------------------- frames, byte for byte

@pytest.mark.parametrize("pixel_format,stride", [
    ("RGB24", None), ("RGB24", 0), ("BGR24", W * 3 + 13), ("BGRA", None), ("BGRA", W * 4 + 64), ("ARGB", 0),
    ("RGBA", None), ("ABGR", None), ("RGB565LE", W * 2 + 2), ("RGB555BE", None), ("YUV420P", W + 6),
])
@pytest.mark.parametrize("transport", ["embedded", "shm"])
def test_raw_frames_arrive_equal(extension, pixel_format, stride, transport):
    server = extension()
    frames = frames_of(pixel_format)
    result = snd.run_session(server.address, frames, width=W, height=H, pixel_format=pixel_format, stride=stride,
                             shared_memory=(transport == "shm") or None)
    assert_all_acked(result)
    session = ended(server)
    assert session.status == ("OK", "")
    fmt = session.descriptor.media_descriptor.video_frame_sample_format
    assert common.pixel_format_name(fmt.pixel_format) == pixel_format
    assert fmt.stride_bytes == (common.RawLayout(pixel_format, W, H).row_bytes if stride is None else stride)
    assert len(session.frames) == len(frames)
    for sent, got in zip(frames, session.frames):
        assert common.frames_equal(sent, got)
    assert [s.data for s in session.samples] == [s.content for s in result.samples]   # padding included
    assert {s.kind for s in session.samples} == {"reference" if transport == "shm" else "bytes"}
    if transport == "shm":
        assert result.shm_unlinked and not os.path.exists(f"/dev/shm/{result.handle_name}")
        assert session.descriptor.shared_memory_buffer_transfer_properties.handle_name == result.handle_name


def test_stride_padding_is_not_pixels(extension):
    """A padded frame decoded as packed would differ: the comparison above can fail."""
    server = extension()
    frames = frames_of("BGR24", 2)
    snd.run_session(server.address, frames, width=W, height=H, pixel_format="BGR24", stride=W * 3 + 16)
    data = ended(server).samples[0].data
    packed = numpy.frombuffer(data[:W * H * 3], dtype=numpy.uint8).reshape(H, W, 3)
    assert not common.frames_equal(packed, frames[0])


@pytest.mark.parametrize("encoding", ["JPG", "PNG", "BMP"])
@pytest.mark.parametrize("transport", ["embedded", "shm"])
def test_image_frames_arrive_equal(extension, encoding, transport):
    server = extension()
    images = [common.encode_image(common.pattern_frame(W, H, i), encoding) for i in range(3)]
    result = snd.run_session(server.address, images, width=W, height=H, encoding=encoding,
                             shared_memory=(transport == "shm") or None)
    assert_all_acked(result)
    session = ended(server)
    fmt = session.descriptor.media_descriptor.video_frame_sample_format
    assert common.encoding_name(fmt.encoding) == encoding and fmt.pixel_format == 0
    assert session.frames == images
    assert all(s.decoded.shape == (H, W, 3) for s in session.samples)
    if encoding != "JPG":   # lossless: the extension's decode is the frame itself
        assert numpy.array_equal(session.samples[1].decoded, common.pattern_frame(W, H, 1))


def test_big_frame_through_shared_memory(extension):
    server = extension()
    frames = frames_of("RGB24", 3, 1920, 1080)
    result = snd.run_session(server.address, frames, width=1920, height=1080, shared_memory=True, window=2)
    assert_all_acked(result)
    assert all(common.frames_equal(a, b) for a, b in zip(frames, ended(server).frames))


# ---------------------------------------------------------------- session rules

def test_sequence_numbers_descriptor_first_and_acks(extension):
    server = extension()
    result = snd.run_session(server.address, frames_of("RGB24", 5), width=W, height=H,
                             extension_configuration='{"model": "yolo", "threshold": 0.5}',
                             graph_instance_name="lobby", media_services_arm_id="/subscriptions/x")
    assert_all_acked(result)
    session = ended(server)
    assert session.message_sequences == [1, 2, 3, 4, 5, 6] and not session.sequence_problems
    assert session.descriptor_sequence == 1 and session.sequences == [2, 3, 4, 5, 6]
    d = session.descriptor
    assert d.extension_configuration == '{"model": "yolo", "threshold": 0.5}'
    assert d.WhichOneof("stream_identifier") == "graph_identifier"
    assert (d.graph_identifier.graph_instance_name, d.graph_identifier.media_services_arm_id) == ("lobby", "/subscriptions/x")
    assert d.media_descriptor.timescale == 90000
    assert [s.timestamp for s in session.samples] == [0, 3000, 6000, 9000, 12000]
    # The extension: answer 1 acking the descriptor, then acks numbered 2.. naming each sample.
    assert result.answer_numbers == (1, 1)
    assert [(a.sequence_number, a.ack_sequence_number) for a in result.acks] == [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
    # The sender acks the extension's messages: the first sample acks the answer.
    assert session.samples[0].ack_sequence_number == 1
    assert all(s.ack_kind == "explicit" for s in result.samples)


def test_inference_results_ride_on_acks(extension):
    server = extension(inferences="demo")
    frames = frames_of("BGR24", 3)
    result = snd.run_session(server.address, frames, width=W, height=H, pixel_format="BGR24", stride=W * 3 + 4)
    assert_all_acked(result)
    shown = result.inference_json()
    assert [item["timestamp"] for item in shown] == [0, 3000, 6000]
    entity, classification, event = shown[1]["inferences"]
    assert entity["type"] == "ENTITY" and entity["inferenceId"] == "entity-3"
    assert entity["entity"]["box"] == {"l": 0.25, "t": 0.125, "w": 0.5, "h": 0.625}
    assert entity["entity"]["tag"] == {"value": "person", "confidence": 0.875}
    assert classification["type"] == "CLASSIFICATION" and classification["relatedInferences"] == ["entity-3"]
    assert classification["classification"]["tag"]["value"] == "indoor"
    assert event["type"] == "EVENT" and event["event"]["name"] == "frame"
    props = event["event"]["properties"]
    sent = result.sample(3)
    assert props["content_sha256"] == common.sha256(sent.content)
    assert props["pixels_sha256"] == common.sha256(frames[1].tobytes())   # stride respected


def test_basic_auth_is_checked_when_configured(extension):
    server = extension(basic_auth=("alice", "s3cret"))
    good = snd.run_session(server.address, frames_of("RGB24", 2), width=W, height=H, auth=("alice", "s3cret"))
    assert_all_acked(good)
    assert ended(server, 0).auth_header == common.basic_auth_value("alice", "s3cret")
    for auth in (("alice", "wrong"), None):
        bad = snd.run_session(server.address, frames_of("RGB24", 2), width=W, height=H, auth=auth)
        assert bad.code == "UNAUTHENTICATED" and not bad.samples


def test_auth_header_ignored_like_the_sample(extension):
    server = extension(options=ext.python_sample_options())
    result = snd.run_session(server.address, frames_of("RGB24", 2), width=W, height=H, auth=("any", "thing"))
    assert_all_acked(result)
    assert ended(server).auth_header == "Basic " + "YW55OnRoaW5n"


# ---------------------------------------------------------------- real extensions' deviations

def test_descriptor_answer_numbered_zero(extension):
    server = extension(descriptor_numbers_zero=True)
    result = snd.run_session(server.address, frames_of("RGB24", 4), width=W, height=H)
    assert result.answer_numbers == (0, 0)
    assert result.answer.WhichOneof("payload") == "media_stream_descriptor"
    assert_all_acked(result)
    assert ended(server).samples[0].ack_sequence_number == 0   # nothing numbered to ack


def test_acks_without_sequence_numbers(extension):
    server = extension(acks_without_sequence=True)
    result = snd.run_session(server.address, frames_of("RGB24", 4), width=W, height=H)
    assert_all_acked(result)
    assert [a.sequence_number for a in result.acks] == [0, 0, 0, 0]
    assert [a.ack_sequence_number for a in result.acks] == [2, 3, 4, 5]


def test_ack_every_third_sample_cumulative(extension):
    server = extension(ack_every=3)
    result = snd.run_session(server.address, frames_of("RGB24", 8), width=W, height=H, ack_timeout=0.4)
    session = ended(server)
    assert [a.ack_sequence_number for a in result.acks] == [4, 7]    # 3rd and 6th of samples 2..9
    assert result.code == "OK"
    kinds = {s.sequence: s.ack_kind for s in result.samples}
    assert kinds == {2: "cumulative", 3: "cumulative", 4: "explicit", 5: "cumulative", 6: "cumulative",
                     7: "explicit", 8: None, 9: None}
    assert result.timed_out == [8, 9]                                # never acked: not waited for forever
    assert session.acks[1].covers == [5, 6, 7]


def test_ack_every_third_not_cumulative_times_out(extension):
    server = extension(ack_every=3)
    start = time.monotonic()
    result = snd.run_session(server.address, frames_of("RGB24", 6), width=W, height=H, ack_timeout=0.3,
                             cumulative_acks=False)
    assert time.monotonic() - start < 3
    assert result.acked == [4, 7] and result.timed_out == [2, 3, 5, 6]


def test_ack_every_k_with_small_shared_memory_waits_for_acks(extension):
    server = extension(ack_every=3, ack_delay=0.02)
    frames = frames_of("RGB24", 9)
    size = common.RawLayout("RGB24", W, H).length
    result = snd.run_session(server.address, frames, width=W, height=H, shared_memory=4 * size, ack_timeout=1.0)
    session = ended(server)
    assert result.code == "OK" and result.shm_waits > 0
    assert result.acked == list(range(2, 11)) and not session.violations
    assert all(common.frames_equal(a, b) for a, b in zip(frames, session.frames))


def test_late_acks_with_a_bounded_window(extension):
    server = extension(ack_delay=0.15)
    result = snd.run_session(server.address, frames_of("RGB24", 6), width=W, height=H, window=2, ack_timeout=1.0)
    assert_all_acked(result)
    assert result.window_waits > 0
    assert max(sum(1 for x in result.samples if x.sent_at <= s.sent_at and (x.acked_at or 1e18) > s.sent_at)
               for s in result.samples) <= 2   # never more than the window in flight


def test_batched_acks_arrive_together(extension):
    server = extension(ack_batch=3)
    result = snd.run_session(server.address, frames_of("RGB24", 7), width=W, height=H, ack_timeout=0.3)
    assert result.code == "OK"
    # The last, incomplete batch only goes out when the sender ends the stream: the sender stops
    # waiting for it after ack_timeout, ends the stream, and still takes the late ack.
    assert result.timed_out == [8] and result.acked == list(range(2, 9))
    assert result.sample(8).acked_at - result.sample(8).sent_at >= 0.3
    sent = ended(server).acks
    assert [a.ack_sequence_number for a in sent] == [2, 3, 4, 5, 6, 7, 8]
    assert sent[2].sent_at - sent[0].sent_at < 0.05 and sent[5].sent_at - sent[3].sent_at < 0.05


def test_dropped_acks(extension):
    server = extension(drop_acks={4, 8})
    result = snd.run_session(server.address, frames_of("RGB24", 7), width=W, height=H, ack_timeout=0.3)
    assert result.code == "OK"
    assert [a.ack_sequence_number for a in result.acks] == [2, 3, 5, 6, 7]
    assert result.sample(4).ack_kind == "cumulative"       # covered by the ack of 5
    assert result.timed_out == [8] and result.sample(8).acked_at is None
    session = ended(server)
    assert [s.sequence for s in session.samples if s.dropped] == [4, 8]
    strict = snd.run_session(server.address, frames_of("RGB24", 7), width=W, height=H, ack_timeout=0.3,
                             cumulative_acks=False)
    assert strict.timed_out == [4, 8]


def test_grpc_default_receive_limit_refuses_1080p_rgb24(extension):
    server = extension(max_receive_message_length=None)
    frames = frames_of("RGB24", 2, 1920, 1080)
    embedded = snd.run_session(server.address, frames, width=1920, height=1080)
    assert embedded.code == "RESOURCE_EXHAUSTED", embedded.summary()
    assert embedded.answer is not None   # the descriptor went through; the first frame did not
    refused = ended(server, 0)
    assert refused.status[0] == "CANCELLED" and refused.samples == []   # gRPC ended it under the handler
    small = snd.run_session(server.address, frames_of("RGB24", 2, 640, 480), width=640, height=480)
    assert_all_acked(small)   # 900 KB fits
    shm = snd.run_session(server.address, frames, width=1920, height=1080, shared_memory=True, window=2)
    assert_all_acked(shm)     # the same frames by reference
    roomy = extension()
    assert_all_acked(snd.run_session(roomy.address, frames, width=1920, height=1080))


def _hold_sessions(address, count, release):
    """count senders that each send one frame then wait for `release`."""
    results, threads, answered = [None] * count, [], []

    def frames():
        yield common.pattern_frame(W, H, 0)
        release.wait(5)

    def run(i):
        sender = snd.AvaSender(address, width=W, height=H, descriptor_timeout=4)
        results[i] = sender.run(frames())
    for i in range(count):
        t = threading.Thread(target=run, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    return results, threads


def test_three_sessions_at_most_refused_with_resource_exhausted(extension):
    server = extension(max_sessions=3, over_limit="refuse")
    release = threading.Event()
    results, threads = _hold_sessions(server.address, 3, release)
    for i in range(3):
        server.wait_for_session(i).wait_for_samples(1, timeout=3)
    fourth = snd.run_session(server.address, frames_of("RGB24", 1), width=W, height=H, descriptor_timeout=1)
    assert fourth.code == "RESOURCE_EXHAUSTED" and fourth.answer is None
    release.set()
    for t in threads:
        t.join(5)
    assert [r.code for r in results] == ["OK"] * 3
    assert_all_acked(snd.run_session(server.address, frames_of("RGB24", 1), width=W, height=H))


def test_three_sessions_at_most_fourth_gets_silence_until_one_ends(extension):
    server = extension(options=ext.python_sample_options())
    release = threading.Event()
    results, threads = _hold_sessions(server.address, 3, release)
    for i in range(3):
        server.wait_for_session(i).wait_for_samples(1, timeout=3)
    silent = snd.run_session(server.address, frames_of("RGB24", 1), width=W, height=H, descriptor_timeout=0.5)
    assert silent.no_answer and silent.answer is None and silent.cancelled_by_sender
    waiting = {}
    t4 = threading.Thread(target=lambda: waiting.update(r=snd.run_session(
        server.address, frames_of("RGB24", 1), width=W, height=H, descriptor_timeout=4)), daemon=True)
    t4.start()
    time.sleep(0.4)
    released_at = time.monotonic()
    release.set()
    t4.join(5)
    for t in threads:
        t.join(5)
    assert_all_acked(waiting["r"])
    assert waiting["r"].answer_at > released_at   # answered only once a session ended


def test_sample_reads_raw_as_packed_rgb24_ignoring_stride(extension):
    server = extension(options=ext.python_sample_options(inferences=None))
    frames = frames_of("RGB24", 3)
    packed = snd.run_session(server.address, frames, width=W, height=H, stride=0)
    assert_all_acked(packed)
    assert all(common.frames_equal(a, b) for a, b in zip(frames, ended(server, 0).frames))
    padded = snd.run_session(server.address, frames, width=W, height=H, stride=W * 3 + 8, ack_timeout=0.3)
    assert padded.code == "OK" and padded.acks == [] and padded.timed_out == [2, 3, 4]   # dropped silently
    assert all(s.dropped for s in ended(server, 1).samples)
    bgra = snd.run_session(server.address, frames_of("BGRA", 2), width=W, height=H, pixel_format="BGRA",
                           ack_timeout=0.3)
    assert bgra.code == "OK" and bgra.acks == [] and bgra.timed_out == [2, 3]


def test_missing_shared_memory_file(extension):
    strict = extension()
    result = snd.run_session(strict.address, frames_of("RGB24", 2), width=W, height=H, shared_memory=True,
                             fault="missing_shm")
    assert result.code == "FAILED_PRECONDITION" and result.answer is None
    sample = extension(options=ext.python_sample_options())
    result = snd.run_session(sample.address, frames_of("RGB24", 2), width=W, height=H, shared_memory=True,
                             fault="missing_shm")
    assert result.code == "UNKNOWN" and result.answer is None


# ---------------------------------------------------------------- real senders' deviations

def test_sender_deviations_seen_by_the_extension(extension):
    server = extension()
    frames = frames_of("BGR24", 4)
    result = snd.run_session(server.address, frames, width=W, height=H, pixel_format="BGR24", stride=0,
                             zero_timestamps=True, zero_acks=True, extension_identifier="ext-7")
    assert_all_acked(result)
    session = ended(server)
    fmt = session.descriptor.media_descriptor.video_frame_sample_format
    assert fmt.stride_bytes == 0
    assert [s.timestamp for s in session.samples] == [0, 0, 0, 0]
    assert [s.ack_sequence_number for s in session.samples] == [0, 0, 0, 0]
    assert session.descriptor.WhichOneof("stream_identifier") == "extension_identifier"
    assert session.descriptor.extension_identifier == "ext-7"
    assert all(common.frames_equal(a, b) for a, b in zip(frames, session.frames))


# ---------------------------------------------------------------- bad input

BAD_INPUT = [
    ("sample_before_descriptor", {}, "INVALID_ARGUMENT", "before the descriptor"),
    ("second_descriptor", {}, "INVALID_ARGUMENT", "second descriptor"),
    ("shm_outside", {"shared_memory": True}, "INVALID_ARGUMENT", "outside"),
    ("missing_shm", {"shared_memory": True}, "FAILED_PRECONDITION", "does not exist"),
    ("stride_too_small", {}, "INVALID_ARGUMENT", "stride"),
    ("zero_dimensions", {}, "INVALID_ARGUMENT", "dimensions"),
    ("unknown_pixel_format", {}, "INVALID_ARGUMENT", "pixel format"),
    ("wrong_content_length", {}, "INVALID_ARGUMENT", "content of"),
    ("wrong_content_length", {"shared_memory": True}, "INVALID_ARGUMENT", "content of"),
    ("bad_jpg", {"encoding": "JPG"}, "INVALID_ARGUMENT", "does not decode"),
    ("empty_sample", {}, "INVALID_ARGUMENT", "no content"),
]


@pytest.mark.parametrize("fault,options,code,words", BAD_INPUT, ids=[f"{b[0]}-{len(b[1])}" for b in BAD_INPUT])
def test_bad_input_ends_the_call_with_a_status(extension, fault, options, code, words):
    server = extension()
    if options.get("encoding") == "JPG":
        frames = [common.encode_image(common.pattern_frame(W, H, i)) for i in range(3)]
    else:
        frames = frames_of("RGB24", 3)
    result = snd.run_session(server.address, frames, width=W, height=H, fault=fault, ack_timeout=0.5, **options)
    assert result.code == code, result.summary()
    assert words in result.status[1]
    session = ended(server)
    assert session.status[0] == code
    # Nothing is acked after the bad message (in second_descriptor, the first sample came before it).
    assert session.acked_sequences() == ([2] if fault == "second_descriptor" else [])
    if result.handle_name:
        assert not os.path.exists(f"/dev/shm/{result.handle_name}")


def test_bad_input_met_with_silence_or_unknown(extension):
    silent = extension(on_bad_input="silence")
    result = snd.run_session(silent.address, frames_of("RGB24", 3), width=W, height=H,
                             fault="wrong_content_length", ack_timeout=0.3)
    assert result.code == "OK" and result.acks == [] and result.timed_out == [2, 3, 4]
    raising = extension(on_bad_input="raise")
    result = snd.run_session(raising.address, frames_of("RGB24", 3), width=W, height=H,
                             fault="zero_dimensions", ack_timeout=0.3)
    assert result.code == "UNKNOWN" and result.answer is None


# ---------------------------------------------------------------- shared-memory region reuse

def _overlaps(a, b):
    return a[1] < b[1] + b[2] and b[1] < a[1] + a[2]


def test_shared_memory_region_reused_only_after_its_ack(extension):
    server = extension(ack_delay=0.02, process_delay=0.005)
    frames = frames_of("BGRA", 12)
    size = common.RawLayout("BGRA", W, H).length
    result = snd.run_session(server.address, frames, width=W, height=H, pixel_format="BGRA",
                             shared_memory=3 * size + 100, ack_timeout=1.0)
    assert_all_acked(result)
    session = ended(server)
    regions = session.regions()
    assert [r[0] for r in regions] == list(range(2, 14))
    assert [(s.sequence, s.offset, s.length) for s in result.samples] == regions
    reused = [(a, b) for i, a in enumerate(regions) for b in regions[i + 1:] if _overlaps(a, b)]
    assert len(reused) >= 6, regions   # a pool of 3 regions for 12 frames
    for a, b in reused:
        written = result.sample(b[0]).written_at
        assert written > session.ack_sent_at(a[0]), (a, b)          # the extension had acked a
        assert written >= result.sample(a[0]).acked_at, (a, b)     # and the sender had seen it
    assert not session.violations
    assert all(common.frames_equal(x, y) for x, y in zip(frames, session.frames))
    assert result.shm_unlinked


def test_early_region_reuse_is_caught(extension):
    """A sender that rewrites regions before their ack fails the checks above."""
    server = extension(process_delay=0.03)
    frames = frames_of("RGB24", 6)
    size = common.RawLayout("RGB24", W, H).length
    result = snd.run_session(server.address, frames, width=W, height=H, shared_memory=2 * size,
                             fault="reuse_before_ack", ack_timeout=1.0)
    session = ended(server)
    regions = session.regions()
    early = [(a, b) for i, a in enumerate(regions) for b in regions[i + 1:]
             if _overlaps(a, b) and result.sample(b[0]).written_at <= session.ack_sent_at(a[0])]
    assert early
    wrong_frames = not all(common.frames_equal(x, y) for x, y in zip(frames, session.frames))
    assert session.violations or wrong_frames
