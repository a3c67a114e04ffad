#!/usr/bin/env python3
"""An Azure Video Analyzer gRPC extension (an inference server), written from
shared/specs/ava-grpc-extension.md alone, for tests and by hand.

`MediaGraphExtension.ProcessMediaStream`, one bidirectional call per camera feed: the sender's first
message is a MediaStreamDescriptor, answered with the extension's own descriptor; then every sample is
read (embedded `content_bytes`, or a `content_reference` into the /dev/shm file the descriptor names,
mapped read-only) and acknowledged once processed, inference results riding on the ack. Every session
is recorded: the call's metadata, the descriptor, each sample's sequence number, timestamp, content
(a copy) and decoded frame, and every ack with the moment it was sent.

Behaviour by default (a well-behaved extension): the answer is numbered 1 and acks the descriptor;
acks are numbered 2, 3, ... and each names the sample it acknowledges; 64 MiB receive limit; any number
of sessions; RAW frames decoded per pixel format and stride; JPG/PNG/BMP checked by decoding them with
FFmpeg; a region of shared memory is copied when the sample arrives and compared again just before its
ack goes out (a difference means the sender rewrote it before the ack: recorded in
`session.violations`), never touched after. Bad input ends the call with a status:
  UNAUTHENTICATED     basic_auth set and x-ms-authentication missing or wrong
  INVALID_ARGUMENT    sample before descriptor, second descriptor, no payload/content, no video format,
                      zero dimensions, unknown encoding or pixel format, stride smaller than a row,
                      content length not what the format needs, an image that does not decode,
                      a content_reference without shared memory or outside the file, a bad handle_name
  FAILED_PRECONDITION the shared-memory file is missing or shorter than length_bytes
(No status for these is written in the spec, which only says errors are gRPC statuses or silence.)

Deviations of real extensions (the spec's "How real peers deviate"), one option each:
  descriptor_numbers_zero   the descriptor answer has sequence_number 0 and ack_sequence_number 0
  acks_without_sequence     acks never set sequence_number (0)
  ack_every=k               only every k-th sample is acked, that ack meaning "everything up to n"
  ack_batch=k               acks are held and sent k at a time, back to back
  ack_delay=s               each ack goes out s seconds after the sample was processed (late)
  drop_acks=set|callable    those sequence numbers (or samples for which callable(sample) is true) are
                            never acked, silently, as a sample whose processing raised
  max_receive_message_length=None   gRPC's default 4 MiB receive limit (big frames: RESOURCE_EXHAUSTED)
  max_sessions=3            at most three sessions at once; over_limit="refuse": more calls fail at once
                            with RESOURCE_EXHAUSTED (gRPC's concurrent-RPC limit); over_limit="wait": a
                            pool of three workers, so a fourth call gets no answer (silence) until a
                            session ends
  packed_rgb24              RAW content is read as packed 3-byte pixels (h, w, 3): stride and pixel
                            format ignored; content of another length makes processing raise and the
                            sample is dropped silently (never acked)
  basic_auth=None           the auth header is ignored (recorded in session.auth_header only)
  missing_shm="unknown"     a missing shared-memory file fails the call with UNKNOWN (the handler raises)
  on_bad_input="silence"|"raise"   bad input gets silence (no more answers, the call stays open until
                            the sender ends it) or UNKNOWN (the handler raises) instead of a status
`python_sample_options()` combines what the spec says of the common Python sample.

Inference results: inferences=None (plain acks), "demo" (an entity "person" with a box and confidence,
a classification related to it, and an event "frame" whose properties echo what was received: sequence,
timestamp, content_bytes, content_sha256, pixels_sha256 (SHA-256 of the decoded pixels packed, rows
without padding), width, height, pixel_format) or a callable(session, sample) -> list of Inference.

Library:
    with AvaExtensionServer(ack_every=3) as server:        # starts on 127.0.0.1:0
        port = server.port
        ...
        session = server.wait_for_session(0, timeout=5)    # sessions in the order calls arrived
        session.wait_ended(timeout=5)
        session.descriptor, session.metadata, session.auth_header
        session.status         # ("OK", ""), the status we ended the call with, or ("CANCELLED", ...)
                               # when the call ended under the handler (the sender cancelled, or gRPC
                               # refused a message over the receive limit: grpcio does not tell which)
        session.samples        # ReceivedSample: sequence, timestamp, kind, offset, length, data, frame...
        session.frames         # decoded frames (numpy arrays, (y, u, v) for YUV420P, bytes for images)
        session.sequences      # every sample's sequence number, in order
        session.regions()      # [(sequence, offset, length)] of shared-memory samples, in order
        session.acks           # SentAck: sequence_number, ack_sequence_number, covers, sent_at
        session.ack_sent_at(seq)   # when the first ack naming seq or a later sample was sent
        session.violations     # regions found rewritten before their ack

Script:
    python ava_extension_server.py [--host 127.0.0.1] [--port 5001] [--inferences demo|none]
        [--descriptor-zero] [--acks-without-sequence] [--ack-every K] [--ack-batch K] [--ack-delay S]
        [--drop-acks 3,7] [--grpc-default-receive-limit] [--max-sessions N] [--over-limit refuse|wait]
        [--packed-rgb24] [--basic-auth USER:PASSWORD] [--missing-shm-unknown]
        [--on-bad-input status|silence|raise] [--python-sample] [--process-delay S]
It prints "ava-extension listening on HOST:PORT" once it accepts calls (the real port when --port 0),
one JSON line per ack (inference results as AVA's JSON) and one per finished session, and stops on
SIGINT/SIGTERM.
"""
import argparse
import dataclasses
import json
import mmap
import os
import queue
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Any, Callable, Optional

import grpc
import numpy

try:
    from . import ava_common as common
except ImportError:  # run as a script, or imported with peers/ on sys.path
    import ava_common as common

extension_pb2 = common.extension_pb2
extension_pb2_grpc = common.extension_pb2_grpc
inferencing_pb2 = common.inferencing_pb2

DEFAULT_RECEIVE_LIMIT = 64 * 1024 * 1024
GRPC_DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024


@dataclasses.dataclass
class ExtensionOptions:
    descriptor_numbers_zero: bool = False
    acks_without_sequence: bool = False
    ack_every: int = 1
    ack_batch: int = 1
    ack_delay: float = 0.0
    drop_acks: Any = ()                     # sequence numbers, or callable(sample) -> bool
    process_delay: float = 0.0              # seconds spent "processing" each sample
    max_receive_message_length: Optional[int] = DEFAULT_RECEIVE_LIMIT   # None: gRPC's default, 4 MiB
    max_sessions: Optional[int] = None
    over_limit: str = "refuse"              # "refuse" (RESOURCE_EXHAUSTED) or "wait" (silence)
    packed_rgb24: bool = False
    basic_auth: Optional[tuple] = None      # (user, password) to check; None: header ignored
    missing_shm: str = "status"             # "status" (FAILED_PRECONDITION) or "unknown"
    on_bad_input: str = "status"            # "status", "silence" or "raise" (UNKNOWN)
    inferences: Any = None                  # None, "demo", or callable(session, sample) -> [Inference]
    verify_images: bool = True
    verify_regions: bool = True
    extension_identifier: str = ""          # set in the answer descriptor when not empty
    strict_sequence: bool = False           # sender messages not numbered 1, 2, 3 ...: INVALID_ARGUMENT
    workers: int = 32

    def __post_init__(self):
        if self.ack_every < 1 or self.ack_batch < 1:
            raise ValueError("ack_every and ack_batch must be at least 1")
        if self.over_limit not in ("refuse", "wait"):
            raise ValueError("over_limit: 'refuse' or 'wait'")
        if self.missing_shm not in ("status", "unknown"):
            raise ValueError("missing_shm: 'status' or 'unknown'")
        if self.on_bad_input not in ("status", "silence", "raise"):
            raise ValueError("on_bad_input: 'status', 'silence' or 'raise'")


def python_sample_options(**overrides):
    """What the spec says of the common Python sample extension: gRPC's default 4 MiB receive limit, at
    most three sessions at once (a pool of three workers), RAW read as packed 3-byte pixels (stride
    ignored), the auth header ignored, UNKNOWN when the shared-memory file is missing, a sample whose
    processing raised dropped silently (never acked), demo inferences on the acks."""
    values = dict(max_receive_message_length=None, max_sessions=3, over_limit="wait", packed_rgb24=True,
                  basic_auth=None, missing_shm="unknown", inferences="demo", verify_images=False)
    values.update(overrides)
    return ExtensionOptions(**values)


class BadInput(Exception):
    def __init__(self, code, details, how=None):
        super().__init__(details)
        self.code, self.details, self.how = code, details, how


@dataclasses.dataclass
class ReceivedSample:
    sequence: int
    ack_sequence_number: int                 # what the sender put in its message
    timestamp: int
    ordinal: int                             # 1 for the session's first sample
    received_at: float                       # time.monotonic()
    kind: str = ""                           # "bytes" (content_bytes) or "reference" (shared memory)
    offset: Optional[int] = None
    length: Optional[int] = None
    data: bytes = b""                        # the content, copied when the sample arrived
    read_at: Optional[float] = None          # when the shared-memory region was copied
    frame: Any = None                        # RawLayout.decode's arrays; bytes for JPG/PNG/BMP
    decoded: Any = None                      # images: FFmpeg's RGB24 decode when verified
    processed_at: Optional[float] = None
    dropped: bool = False                    # never acked on purpose (drop_acks, processing raised)
    error: str = ""
    inferences: list = dataclasses.field(default_factory=list)
    acked_at: Optional[float] = None         # an ack naming this sample was sent
    covered_at: Optional[float] = None       # an ack naming this sample or a later one was sent
    verified: bool = False


@dataclasses.dataclass
class SentAck:
    sequence_number: int
    ack_sequence_number: int
    covers: list                             # sequence numbers first covered by this ack
    sent_at: float
    inferences: list


class Session:
    def __init__(self, index, peer, metadata):
        self.index, self.peer = index, peer
        self.metadata = metadata                     # dict of the call's metadata (lower-case keys)
        self.auth_header = metadata.get(common.AUTH_HEADER)
        self.started_at = time.monotonic()
        self.ended_at = None
        self.descriptor = None                       # the sender's MediaStreamDescriptor
        self.descriptor_sequence = None
        self.answer = None                           # the MediaStreamMessage we answered with
        self.answer_sent_at = None
        self.samples = []
        self.acks = []
        self.message_sequences = []                  # sequence numbers of every sender message
        self.sequence_problems = []
        self.violations = []
        self.status = None                           # (code name, details) once the call ended
        self.layout = None
        self.shm_path = None
        self.shm_length = 0
        self._mmap = None
        self._users = 2                              # reader and responder; the last one closes the map
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._next_sequence = 1
        self.poisoned = False
        self.read_error = None                       # why reading the sender's stream failed, if it did

    # ---- for tests
    @property
    def frames(self):
        return [s.frame for s in self.samples]

    @property
    def sequences(self):
        return [s.sequence for s in self.samples]

    def regions(self):
        return [(s.sequence, s.offset, s.length) for s in self.samples if s.kind == "reference"]

    def ack_sent_at(self, sequence, cumulative=True):
        sample = self.sample(sequence)
        if sample is None:
            return None
        return sample.covered_at if cumulative else sample.acked_at

    def sample(self, sequence):
        for s in self.samples:
            if s.sequence == sequence:
                return s
        return None

    def acked_sequences(self):
        return [a.ack_sequence_number for a in self.acks]

    def wait_for_samples(self, count, timeout=5.0):
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.samples) >= count or self.ended_at, timeout):
                raise TimeoutError(f"session {self.index}: {len(self.samples)} samples, not {count}")
        return self.samples

    def wait_ended(self, timeout=5.0):
        with self._changed:
            if not self._changed.wait_for(lambda: self.ended_at is not None, timeout):
                raise TimeoutError(f"session {self.index} still running")
        return self.status

    def summary(self):
        d = self.descriptor
        return {"session": self.index, "peer": self.peer, "status": self.status,
                "auth_header": self.auth_header,
                "descriptor": None if d is None else _message_json(d),
                "samples": len(self.samples), "sequences": self.sequences,
                "acks": self.acked_sequences(), "dropped": [s.sequence for s in self.samples if s.dropped],
                "violations": self.violations, "sequence_problems": self.sequence_problems}

    # ---- internals
    def _notify(self):
        with self._changed:
            self._changed.notify_all()

    def _take_sequence(self):
        with self._lock:
            n = self._next_sequence
            self._next_sequence += 1
            return n

    def _release(self):
        with self._lock:
            self._users -= 1
            last = self._users == 0
            mm, self._mmap = (self._mmap, None) if last else (None, self._mmap)
        if mm is not None:
            mm.close()


def _message_json(message):
    from google.protobuf import json_format
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def demo_inferences(session, sample):
    """An entity with a box and confidence, a classification related to it, and an event echoing what
    was received (so a sender can check, through the wire alone, what the extension read)."""
    seq = sample.sequence
    if isinstance(sample.frame, tuple):
        pixels = b"".join(p.tobytes() for p in sample.frame)
    elif isinstance(sample.frame, numpy.ndarray):
        pixels = sample.frame.tobytes()
    else:
        pixels = sample.data
    fmt = session.descriptor.media_descriptor.video_frame_sample_format
    entity = common.entity_inference("person", 0.875, (0.25, 0.125, 0.5, 0.625), entity_id=f"person-{seq}",
                                     inference_id=f"entity-{seq}")
    classification = common.classification_inference("indoor", 0.5, related=[f"entity-{seq}"],
                                                      inference_id=f"classification-{seq}")
    event = common.event_inference("frame", {
        "sequence": seq, "timestamp": sample.timestamp, "content_bytes": len(sample.data),
        "content_sha256": common.sha256(sample.data), "pixels_sha256": common.sha256(pixels),
        "width": fmt.dimensions.width, "height": fmt.dimensions.height,
        "pixel_format": common.pixel_format_name(fmt.pixel_format),
        "encoding": common.encoding_name(fmt.encoding)}, inference_id=f"event-{seq}")
    return [entity, classification, event]


class _Servicer(extension_pb2_grpc.MediaGraphExtensionServicer):
    def __init__(self, server):
        self._server = server

    def ProcessMediaStream(self, request_iterator, context):
        return self._server._process(request_iterator, context)


class AvaExtensionServer:
    def __init__(self, options=None, host="127.0.0.1", port=0, on_ack=None, on_session_end=None, **option_values):
        if options is not None and option_values:
            options = dataclasses.replace(options, **option_values)
        self.options = options or ExtensionOptions(**option_values)
        self.host, self.requested_port = host, port
        self.port = None
        self.on_ack, self.on_session_end = on_ack, on_session_end
        self._sessions = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server = None

    # ---- lifecycle
    def start(self):
        o = self.options
        channel_options = []
        if o.max_receive_message_length is not None:
            channel_options.append(("grpc.max_receive_message_length", o.max_receive_message_length))
        channel_options.append(("grpc.max_send_message_length", -1))
        kwargs = {}
        workers = o.workers
        if o.max_sessions is not None:
            if o.over_limit == "wait":
                workers = o.max_sessions           # a fourth call waits for a worker: silence
            else:
                kwargs["maximum_concurrent_rpcs"] = o.max_sessions
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ava-ext"),
                                   options=channel_options, **kwargs)
        extension_pb2_grpc.add_MediaGraphExtensionServicer_to_server(_Servicer(self), self._server)
        self.port = self._server.add_insecure_port(f"{self.host}:{self.requested_port}")
        if self.port == 0:
            raise RuntimeError(f"could not listen on {self.host}:{self.requested_port}")
        self._server.start()
        return self.port

    def stop(self, grace=0.5):
        if self._server is not None:
            self._server.stop(grace).wait(5)
            self._server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    # ---- for tests
    @property
    def sessions(self):
        with self._lock:
            return list(self._sessions)

    def wait_for_session(self, index=0, timeout=5.0):
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._sessions) > index, timeout):
                raise TimeoutError(f"{len(self._sessions)} sessions, none with index {index}")
            return self._sessions[index]

    # ---- one call
    def _process(self, request_iterator, context):
        with self._changed:
            session = Session(len(self._sessions), context.peer(), dict(context.invocation_metadata()))
            self._sessions.append(session)
            self._changed.notify_all()
        events = queue.Queue()
        context.add_callback(lambda: events.put(("gone",)))
        reader = None
        try:
            expected = self.options.basic_auth
            if expected is not None:
                wanted = common.basic_auth_value(*expected)
                got = session.auth_header or ""
                scheme, _, rest = got.partition(" ")
                if scheme.lower() != "basic" or rest.strip() != wanted.partition(" ")[2]:
                    self._finish(session, "UNAUTHENTICATED", f"{common.AUTH_HEADER} missing or wrong")
                    session._release()
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{common.AUTH_HEADER} missing or wrong")
            reader = threading.Thread(target=self._read, args=(session, request_iterator, events),
                                      name=f"ava-ext-reader-{session.index}", daemon=True)
            reader.start()
            outcome = yield from self._respond(session, events, context)
            if outcome == "done":
                self._finish(session, "OK", "")
            else:
                # The call ended under us. grpcio gives the handler no status: the sender cancelled, or
                # a message was over the receive limit (the sender then sees RESOURCE_EXHAUSTED).
                self._finish(session, "CANCELLED", "the call ended before the extension finished"
                             + (f" (reading the stream: {session.read_error})" if session.read_error else ""))
        finally:
            if session.status is None:
                self._finish(session, "CANCELLED", "the call ended before the extension finished")
            if reader is not None:
                session._release()

    def _finish(self, session, code, details):
        with session._changed:
            if session.status is None:
                session.status = (code, details)
            session.ended_at = time.monotonic()
            session._changed.notify_all()
        if self.on_session_end is not None:
            try:
                self.on_session_end(session)
            except Exception:  # a callback's failure must not change the call
                pass

    def _respond(self, session, events, context):
        """Runs on the call's handler thread: sends the answer and the acks as the options say."""
        o = self.options
        pending = []   # samples to ack, with the moment each is due
        held = []      # due acks waiting to be sent as a batch
        eof = False
        while True:
            now = time.monotonic()
            timeout = None
            if pending:
                timeout = max(0.0, min(due for due, _ in pending) - now)
            elif not eof:
                timeout = 0.5
            try:
                event = events.get(timeout=timeout) if timeout is None or timeout > 0 else events.get_nowait()
            except queue.Empty:
                event = None
            if event is not None:
                kind = event[0]
                if kind == "answer":
                    yield self._answer(session, event[1])
                elif kind == "processed":
                    sample = event[1]
                    if not sample.dropped and sample.ordinal % o.ack_every == 0:
                        pending.append((sample.processed_at + o.ack_delay, sample))
                elif kind == "bad":
                    error = event[1]
                    how = error.how or o.on_bad_input
                    if how == "status":
                        self._finish(session, error.code.name, error.details)
                        context.abort(error.code, error.details)
                    elif how == "raise":
                        self._finish(session, "UNKNOWN", error.details)
                        raise RuntimeError(error.details)
                    # silence: nothing more is sent; the call ends when the sender ends it
                    pending.clear()
                    held.clear()
                elif kind == "eof":
                    eof = True
                    if session.read_error is not None:
                        return "gone"
                elif kind == "gone":
                    return "gone"
            if not context.is_active():
                return "gone"
            now = time.monotonic()
            due = [s for d, s in pending if d <= now]
            pending = [(d, s) for d, s in pending if d > now]
            held.extend(due)
            if held and (len(held) >= o.ack_batch or (eof and not pending)):
                for sample in held:
                    yield self._ack(session, sample)
                held = []
            if eof and not pending and not held and events.empty():
                # A request stream can also end cleanly when gRPC itself ended the call (a message
                # over the receive limit): give the termination callback a moment to say so.
                try:
                    if events.get(timeout=0.02)[0] == "gone":
                        return "gone"
                except queue.Empty:
                    pass
                return "done" if context.is_active() else "gone"

    def _answer(self, session, descriptor_sequence):
        o = self.options
        descriptor = extension_pb2.MediaStreamDescriptor()
        timescale = session.descriptor.media_descriptor.timescale
        descriptor.media_descriptor.timescale = timescale
        if o.extension_identifier:
            descriptor.extension_identifier = o.extension_identifier
        if o.descriptor_numbers_zero:
            message = extension_pb2.MediaStreamMessage(sequence_number=0, ack_sequence_number=0,
                                                       media_stream_descriptor=descriptor)
        else:
            message = extension_pb2.MediaStreamMessage(sequence_number=session._take_sequence(),
                                                       ack_sequence_number=descriptor_sequence,
                                                       media_stream_descriptor=descriptor)
        session.answer = message
        session.answer_sent_at = time.monotonic()
        return message

    def _ack(self, session, sample):
        o = self.options
        with session._lock:
            covers = [s for s in session.samples if s.sequence <= sample.sequence and s.covered_at is None]
        if o.verify_regions and session._mmap is not None:
            for s in covers:
                if s.kind == "reference" and not s.verified:
                    now = bytes(session._mmap[s.offset:s.offset + s.length])
                    s.verified = True
                    if now != s.data:
                        session.violations.append(
                            f"sample {s.sequence}: region {s.offset}+{s.length} rewritten before its ack")
        sequence = 0 if o.acks_without_sequence else session._take_sequence()
        message = extension_pb2.MediaStreamMessage(
            sequence_number=sequence, ack_sequence_number=sample.sequence,
            media_sample=extension_pb2.MediaSample(timestamp=sample.timestamp, inferences=sample.inferences))
        sent_at = time.monotonic()
        with session._changed:
            for s in covers:
                s.covered_at = sent_at
            sample.acked_at = sent_at
            session.acks.append(SentAck(sequence, sample.sequence, [s.sequence for s in covers], sent_at,
                                        list(sample.inferences)))
            session._changed.notify_all()
        if self.on_ack is not None:
            try:
                self.on_ack(session, sample, message)
            except Exception:
                pass
        return message

    # ---- the reader thread
    def _read(self, session, request_iterator, events):
        try:
            for message in request_iterator:
                received_at = time.monotonic()
                session.message_sequences.append(message.sequence_number)
                expected = len(session.message_sequences)
                if message.sequence_number != expected:
                    problem = f"message {expected} numbered {message.sequence_number}"
                    session.sequence_problems.append(problem)
                if session.poisoned:
                    continue
                try:
                    if self.options.strict_sequence and message.sequence_number != expected:
                        raise BadInput(grpc.StatusCode.INVALID_ARGUMENT, f"sender {problem}")
                    self._handle(session, message, received_at, events)
                except BadInput as error:
                    session.poisoned = True
                    events.put(("bad", error))
                session._notify()
        except Exception as error:  # the call ended (cancelled, aborted, over the receive limit)
            session.read_error = repr(error)
        finally:
            events.put(("eof",))
            session._release()

    def _handle(self, session, message, received_at, events):
        case = message.WhichOneof("payload")
        if case is None:
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           f"message {message.sequence_number} has neither a descriptor nor a sample")
        if case == "media_stream_descriptor":
            if session.descriptor is not None:
                raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                               f"message {message.sequence_number}: a second descriptor")
            session.descriptor = message.media_stream_descriptor
            session.descriptor_sequence = message.sequence_number
            self._accept_descriptor(session)
            events.put(("answer", message.sequence_number))
            return
        if session.descriptor is None:
            raise BadInput(grpc.StatusCode.INVALID_ARGUMENT,
                           f"message {message.sequence_number}: a sample before the descriptor")
        self._read_sample(session, message, received_at, events)

    def _accept_descriptor(self, session):
        o = self.options
        d = session.descriptor
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        media = d.media_descriptor
        if not d.HasField("media_descriptor") or media.WhichOneof("media_sample_format") != "video_frame_sample_format":
            raise BadInput(invalid, "the descriptor has no video_frame_sample_format")
        fmt = media.video_frame_sample_format
        width, height = fmt.dimensions.width, fmt.dimensions.height
        if not o.packed_rgb24:
            if width == 0 or height == 0:
                raise BadInput(invalid, f"dimensions {width}x{height}: both must be positive")
            if fmt.encoding == common.Encoding.Value("RAW"):
                try:
                    session.layout = common.RawLayout(fmt.pixel_format, width, height, fmt.stride_bytes)
                except common.FrameFormatError as error:
                    raise BadInput(invalid, str(error))
            elif fmt.encoding not in common.IMAGE_ENCODINGS:
                raise BadInput(invalid, f"unknown encoding {fmt.encoding}")
        if d.WhichOneof("data_transfer_properties") == "shared_memory_buffer_transfer_properties":
            props = d.shared_memory_buffer_transfer_properties
            try:
                path = common.shm_path(props.handle_name)
            except common.FrameFormatError as error:
                raise BadInput(invalid, str(error))
            if props.length_bytes == 0:
                raise BadInput(invalid, "shared memory of length_bytes 0")
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                details = f"shared-memory file {path} does not exist"
                if o.missing_shm == "unknown":
                    raise BadInput(grpc.StatusCode.UNKNOWN, details, how="raise")
                raise BadInput(grpc.StatusCode.FAILED_PRECONDITION, details, how="status")
            except OSError as error:
                raise BadInput(grpc.StatusCode.FAILED_PRECONDITION, f"cannot open {path}: {error}", how="status")
            try:
                size = os.fstat(fd).st_size
                if size < props.length_bytes:
                    raise BadInput(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"{path} has {size} bytes, the descriptor says {props.length_bytes}")
                session._mmap = mmap.mmap(fd, props.length_bytes, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            session.shm_path, session.shm_length = path, props.length_bytes

    def _read_sample(self, session, message, received_at, events):
        o = self.options
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        media_sample = message.media_sample
        sample = ReceivedSample(sequence=message.sequence_number, ack_sequence_number=message.ack_sequence_number,
                                timestamp=media_sample.timestamp, ordinal=len(session.samples) + 1,
                                received_at=received_at)
        with session._lock:
            session.samples.append(sample)
        content = media_sample.WhichOneof("content")
        if content == "content_bytes":
            sample.kind = "bytes"
            sample.data = media_sample.content_bytes.bytes
        elif content == "content_reference":
            sample.kind = "reference"
            ref = media_sample.content_reference
            sample.offset, sample.length = ref.address_offset, ref.length_bytes
            if session._mmap is None:
                raise BadInput(invalid, f"sample {sample.sequence}: a content_reference but no shared memory")
            if ref.length_bytes == 0 or ref.address_offset + ref.length_bytes > session.shm_length:
                raise BadInput(invalid, f"sample {sample.sequence}: region {ref.address_offset}+{ref.length_bytes} "
                                        f"outside the {session.shm_length} bytes of shared memory")
            sample.data = bytes(session._mmap[ref.address_offset:ref.address_offset + ref.length_bytes])
            sample.read_at = time.monotonic()
        else:
            raise BadInput(invalid, f"sample {sample.sequence} has no content")
        fmt = session.descriptor.media_descriptor.video_frame_sample_format
        try:
            if o.packed_rgb24:
                # As the common sample: packed 3-byte pixels; any other length raises in processing.
                sample.frame = numpy.frombuffer(sample.data, dtype=numpy.uint8).reshape(
                    fmt.dimensions.height, fmt.dimensions.width, 3).copy()
            elif session.layout is not None:
                sample.frame = session.layout.decode(sample.data)
            else:
                sample.frame = bytes(sample.data)
                if o.verify_images:
                    sample.decoded = common.decode_image(sample.data, fmt.encoding, fmt.dimensions.width,
                                                         fmt.dimensions.height)
        except common.FrameFormatError as error:
            sample.error = str(error)
            raise BadInput(invalid, f"sample {sample.sequence}: {error}")
        except ValueError as error:  # packed_rgb24: the sample's reshape raised; dropped silently
            sample.error = str(error)
            sample.dropped = True
        if o.process_delay:
            time.sleep(o.process_delay)
        drop = o.drop_acks
        if not sample.dropped and (drop(sample) if callable(drop) else sample.sequence in drop):
            sample.dropped = True
        if not sample.dropped:
            make = demo_inferences if o.inferences == "demo" else o.inferences
            if make is not None:
                sample.inferences = list(make(session, sample))
        sample.processed_at = time.monotonic()
        events.put(("processed", sample))


# ---------------------------------------------------------------- script

def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--inferences", choices=("demo", "none"), default="demo")
    p.add_argument("--descriptor-zero", action="store_true", help="answer the descriptor numbered 0/0")
    p.add_argument("--acks-without-sequence", action="store_true")
    p.add_argument("--ack-every", type=int, default=1, metavar="K")
    p.add_argument("--ack-batch", type=int, default=1, metavar="K")
    p.add_argument("--ack-delay", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--drop-acks", default="", metavar="SEQ,SEQ", help="sequence numbers never acked")
    p.add_argument("--process-delay", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--grpc-default-receive-limit", action="store_true", help="4 MiB receive limit")
    p.add_argument("--max-sessions", type=int)
    p.add_argument("--over-limit", choices=("refuse", "wait"), default="refuse")
    p.add_argument("--packed-rgb24", action="store_true", help="read RAW as packed 3-byte pixels")
    p.add_argument("--basic-auth", metavar="USER:PASSWORD")
    p.add_argument("--missing-shm-unknown", action="store_true")
    p.add_argument("--on-bad-input", choices=("status", "silence", "raise"), default="status")
    p.add_argument("--python-sample", action="store_true", help="behave as the spec says the common sample does")
    return p.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    values = dict(
        descriptor_numbers_zero=args.descriptor_zero, acks_without_sequence=args.acks_without_sequence,
        ack_every=args.ack_every, ack_batch=args.ack_batch, ack_delay=args.ack_delay,
        drop_acks={int(s) for s in args.drop_acks.split(",") if s.strip()}, process_delay=args.process_delay,
        on_bad_input=args.on_bad_input, inferences=None if args.inferences == "none" else "demo")
    if args.grpc_default_receive_limit:
        values["max_receive_message_length"] = None
    if args.max_sessions is not None:
        values.update(max_sessions=args.max_sessions, over_limit=args.over_limit)
    if args.packed_rgb24:
        values["packed_rgb24"] = True
    if args.basic_auth:
        user, _, password = args.basic_auth.partition(":")
        values["basic_auth"] = (user, password)
    if args.missing_shm_unknown:
        values["missing_shm"] = "unknown"
    options = python_sample_options(**values) if args.python_sample else ExtensionOptions(**values)

    def on_ack(session, sample, message):
        line = {"session": session.index, "ack": message.ack_sequence_number,
                "sequence_number": message.sequence_number,
                **common.inferences_to_json(sample.timestamp, message.media_sample.inferences)}
        print(json.dumps(line), flush=True)

    def on_end(session):
        print(json.dumps({"session_end": session.summary()}), flush=True)

    server = AvaExtensionServer(options, host=args.host, port=args.port, on_ack=on_ack, on_session_end=on_end)
    server.start()
    print(f"ava-extension listening on {args.host}:{server.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
