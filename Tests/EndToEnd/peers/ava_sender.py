#!/usr/bin/env python3
"""An Azure Video Analyzer sender (the "media graph" side of the gRPC extension protocol), written from
shared/specs/ava-grpc-extension.md alone, for tests and by hand.

One `ProcessMediaStream` call per session: the first message is the descriptor (sequence_number 1:
timescale, a video frame format, a graph identifier or an extension identifier, extension_configuration,
and optionally a shared-memory buffer); samples (sequence numbers 2, 3, ...) flow only once the
extension answered. The answer is recognised by its payload case (a descriptor), never by its numbers.
Samples carry their content embedded (`content_bytes`) or in shared memory: a file of its own under
/dev/shm, sub-allocated first-fit into regions; a region is written just before its sample is sent,
reused only after the sample's ack, and the file is unlinked when the session closes.

Tolerated as the spec says real extensions behave: answers numbered 0/0, acks without sequence numbers,
late, batched or missing acks. A bounded in-flight window (`window` samples) with a timeout
(`ack_timeout` seconds per sample): a sample whose ack did not come in time is recorded as timed out
and leaves the window, so nothing waits forever. An ack for sample n also acknowledges every earlier
sample still in flight (`cumulative_acks`, for extensions that ack every k-th sample only); without
it an ack frees only the sample it names. A timed-out sample's shared-memory region stays reserved
(the extension may still read it) until an ack covers it; when no region is free within ack_timeout,
`reuse_after_timeout` decides between reusing the regions of timed-out samples and ending the session
with "shared memory exhausted".

Deviations of real senders, one option each: zero_timestamps (every timestamp 0), stride=0 (the
stride_bytes field absent: packed rows), zero_acks (ack_sequence_number always 0; by default a sample
acks the newest extension message not acknowledged yet), extension_identifier instead of a graph
identifier.

Bad input on purpose, `fault=`:
  "sample_before_descriptor"  a sample is message 1, the descriptor message 2
  "second_descriptor"         the descriptor is sent again after the first sample
  "shm_outside"               the first sample's region runs past the end of the shared-memory file
  "missing_shm"               the descriptor names a /dev/shm file that does not exist
  "long_reference"            the first sample's reference runs from its region to the end of the file
  "stride_too_small"          stride_bytes one less than a row (content stride * height bytes)
  "zero_dimensions"           the descriptor says 0x0
  "unknown_pixel_format"      pixel_format 7 (no such enum value)
  "wrong_content_length"      the first sample's content one byte short
  "bad_jpg"                   the first sample's content is not a decodable JPG
  "empty_sample"              the first sample has no content at all
  "reuse_before_ack"          (a broken sender) shared-memory regions are used round robin without
                              waiting for acks, to show that a test can catch early reuse

Library:
    sender = AvaSender("127.0.0.1:5001", width=320, height=240, pixel_format="bgr24",
                       shared_memory=True, auth=("user", "pass"), extension_configuration="{...}")
    result = sender.run(frames)       # frames: numpy arrays as ava_common.RawLayout.decode returns
                                      # them, packed bytes, or image bytes / arrays for JPG/PNG/BMP
    result.status                     # ("OK", "") or e.g. ("RESOURCE_EXHAUSTED", "...")
    result.answer, result.answer_numbers            # the extension's descriptor message, (seq, ack)
    result.samples   # SentSample: sequence, timestamp, content, offset, length, written_at, sent_at,
                     # acked_at, ack_kind ("explicit"/"cumulative"), timed_out, freed_at, inferences
    result.acks      # ReceivedAck: sequence_number, ack_sequence_number, received_at, inferences
    result.timed_out, result.acked, result.no_answer, result.errors, result.inference_json()
    run_session(target, frames, **options) is AvaSender(target, **options).run(frames).

Script:
    python ava_sender.py --target 127.0.0.1:5001 [--frames 30] [--size 320x240] [--fps 30]
        [--encoding raw|jpg|png|bmp] [--pixel-format rgb24] [--stride N] [--shm [BYTES]]
        [--auth USER:PASSWORD] [--configuration TEXT] [--graph-instance NAME] [--window 8]
        [--ack-timeout S] [--zero-timestamps] [--zero-acks] [--fault NAME]
It prints one JSON line per ack with inference results (AVA's JSON shape) and a summary line; exit 0
when the call ended OK and every sample was acked, 1 otherwise.
"""
import argparse
import dataclasses
import json
import mmap
import os
import queue
import sys
import threading
import time
import uuid
from typing import Any, Optional

import grpc
import numpy

try:
    from . import ava_common as common
except ImportError:  # run as a script, or imported with peers/ on sys.path
    import ava_common as common

extension_pb2 = common.extension_pb2
extension_pb2_grpc = common.extension_pb2_grpc
media_pb2 = common.media_pb2

FAULTS = ("sample_before_descriptor", "second_descriptor", "shm_outside", "missing_shm", "long_reference",
          "stride_too_small",
          "zero_dimensions", "unknown_pixel_format", "wrong_content_length", "bad_jpg", "empty_sample",
          "reuse_before_ack")
NOT_A_JPG = b"\xff\xd8\xff\xe0" + b"this is not a JPEG image" * 4 + b"\xff\xd9"
ALIGNMENT = 64


class SenderError(Exception):
    pass


@dataclasses.dataclass
class SentSample:
    sequence: int
    timestamp: int
    content: bytes                    # what was sent (embedded) or written into the region
    offset: Optional[int] = None      # shared memory
    length: Optional[int] = None
    written_at: Optional[float] = None
    sent_at: Optional[float] = None
    acked_at: Optional[float] = None
    ack_kind: Optional[str] = None    # "explicit": an ack named it; "cumulative": a later one did
    timed_out: bool = False
    freed_at: Optional[float] = None  # its region went back to the free list
    inferences: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ReceivedAck:
    sequence_number: int
    ack_sequence_number: int
    received_at: float
    inferences: list
    timestamp: int = 0


@dataclasses.dataclass
class SendResult:
    status: Optional[tuple] = None     # (code name, details) of the call; None if never started
    answer: Any = None                 # the extension's descriptor message
    answer_numbers: Optional[tuple] = None
    answer_at: Optional[float] = None  # time.monotonic() the answer arrived
    no_answer: bool = False            # no descriptor answer within descriptor_timeout
    samples: list = dataclasses.field(default_factory=list)
    acks: list = dataclasses.field(default_factory=list)
    unmatched_acks: list = dataclasses.field(default_factory=list)   # acks naming no sample in flight
    other_messages: list = dataclasses.field(default_factory=list)   # anything else the extension sent
    errors: list = dataclasses.field(default_factory=list)
    window_waits: int = 0              # times a sample waited for room in the window
    shm_waits: int = 0                 # times a sample waited for a free region
    handle_name: Optional[str] = None
    shm_size: int = 0
    shm_unlinked: bool = False
    cancelled_by_sender: bool = False
    descriptor: Any = None             # the descriptor message sent

    @property
    def code(self):
        return None if self.status is None else self.status[0]

    @property
    def acked(self):
        return [s.sequence for s in self.samples if s.acked_at is not None]

    @property
    def timed_out(self):
        return [s.sequence for s in self.samples if s.timed_out]

    @property
    def sequences(self):
        return [s.sequence for s in self.samples]

    def sample(self, sequence):
        return next((s for s in self.samples if s.sequence == sequence), None)

    def inference_json(self):
        return [common.inferences_to_json(a.timestamp, a.inferences) for a in self.acks if a.inferences]

    def summary(self):
        return {"status": self.status, "no_answer": self.no_answer, "answer_numbers": self.answer_numbers,
                "samples": len(self.samples), "acked": len(self.acked), "timed_out": self.timed_out,
                "unmatched_acks": self.unmatched_acks, "errors": self.errors,
                "window_waits": self.window_waits, "shm_waits": self.shm_waits}


class SharedMemoryPool:
    """A file under /dev/shm, mapped read-write, sub-allocated first-fit in ALIGNMENT-byte steps."""

    def __init__(self, size, handle_name=None, create=True):
        self.handle_name = handle_name or f"ava-sender-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.path = common.shm_path(self.handle_name)
        self.size = size
        self.map = None
        self.free = [(0, size)]             # sorted (offset, length)
        if create:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size)
                self.map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(fd)

    def allocate(self, length):
        need = -(-length // ALIGNMENT) * ALIGNMENT
        for i, (offset, free) in enumerate(self.free):
            if free >= need:
                if free == need:
                    del self.free[i]
                else:
                    self.free[i] = (offset + need, free - need)
                return offset, need
        return None

    def release(self, offset, reserved):
        self.free.append((offset, reserved))
        self.free.sort()
        merged = []
        for o, n in self.free:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((o, n))
        self.free = merged

    def write(self, offset, data):
        self.map[offset:offset + len(data)] = data

    def close(self):
        if self.map is not None:
            self.map.close()
            self.map = None
        try:
            os.unlink(self.path)
            return True
        except FileNotFoundError:
            return False


class AvaSender:
    def __init__(self, target, *, width, height, encoding="RAW", pixel_format=None, stride=None,
                 timescale=common.DEFAULT_TIMESCALE, frame_interval=None, shared_memory=None, handle_name=None,
                 auth=None, extension_configuration="", graph_instance_name="graph-1",
                 graph_node_name="ava-sender", media_services_arm_id="", extension_identifier=None,
                 window=8, ack_timeout=1.0, descriptor_timeout=3.0, end_timeout=3.0, cumulative_acks=True,
                 reuse_after_timeout=False, zero_timestamps=False, zero_acks=False, pad_byte=0xA5, fault=None,
                 metadata=(), channel_credentials=None, channel_options=()):
        """pixel_format: None = RGB24 for RAW, NONE for images. stride: None = packed rows with stride_bytes set to the row size; 0 = stride_bytes absent
        (packed); N = rows N bytes apart, padded with pad_byte. shared_memory: None/False = embedded
        content; True = a file of window regions of the largest sample; an int = a file of that many bytes.
        auth: (user, password) for x-ms-authentication: Basic ..., or the header's whole value."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        self.target = target
        self.width, self.height = width, height
        self.encoding = common.encoding_value(encoding)
        self.raw = self.encoding == common.Encoding.Value("RAW")
        if pixel_format is None:
            pixel_format = "RGB24" if self.raw else "NONE"
        self.pixel_format = common.pixel_format_value(pixel_format)
        self.stride = stride
        self.timescale = timescale
        self.frame_interval = frame_interval if frame_interval is not None else max(1, timescale // 30)
        self.shared_memory, self.handle_name = shared_memory, handle_name
        self.auth = auth
        self.extension_configuration = extension_configuration
        self.graph_instance_name, self.graph_node_name = graph_instance_name, graph_node_name
        self.media_services_arm_id, self.extension_identifier = media_services_arm_id, extension_identifier
        self.window, self.ack_timeout = window, ack_timeout
        self.descriptor_timeout, self.end_timeout = descriptor_timeout, end_timeout
        self.cumulative_acks, self.reuse_after_timeout = cumulative_acks, reuse_after_timeout
        self.zero_timestamps, self.zero_acks = zero_timestamps, zero_acks
        self.pad_byte, self.fault = pad_byte, fault
        self.metadata = list(metadata)
        self.channel_credentials, self.channel_options = channel_credentials, list(channel_options)
        self.layout = None
        if self.raw:
            stride_bytes = stride or 0
            self.layout = common.RawLayout(self.pixel_format, width, height, stride_bytes)

    # ---- what goes on the wire
    def stride_field(self):
        if not self.raw:
            return 0
        if self.fault == "stride_too_small":
            return self.layout.row_bytes - 1
        if self.stride is None:
            return self.layout.row_bytes
        return self.stride

    def content_of(self, frame):
        """A frame -> the bytes of its sample."""
        if self.raw:
            if self.fault == "stride_too_small":
                stride = self.layout.row_bytes - 1
                packed = self.layout.pack(frame)
                return (packed + bytes(stride * self.height))[:stride * self.height]
            return self.layout.encode(frame, self.pad_byte)
        if isinstance(frame, (bytes, bytearray, memoryview)):
            return bytes(frame)
        return common.encode_image(frame, self.encoding, "RGB24")

    def descriptor_message(self, sequence, pool_size):
        d = extension_pb2.MediaStreamDescriptor()
        if self.extension_identifier is not None:
            d.extension_identifier = self.extension_identifier
        else:
            d.graph_identifier.media_services_arm_id = self.media_services_arm_id
            d.graph_identifier.graph_instance_name = self.graph_instance_name
            d.graph_identifier.graph_node_name = self.graph_node_name
        d.extension_configuration = self.extension_configuration
        d.media_descriptor.timescale = self.timescale
        fmt = d.media_descriptor.video_frame_sample_format
        fmt.encoding = self.encoding
        fmt.pixel_format = 7 if self.fault == "unknown_pixel_format" else self.pixel_format
        if self.fault == "zero_dimensions":
            fmt.dimensions.width, fmt.dimensions.height = 0, 0
        else:
            fmt.dimensions.width, fmt.dimensions.height = self.width, self.height
        fmt.stride_bytes = self.stride_field()
        if pool_size:
            props = d.shared_memory_buffer_transfer_properties
            props.handle_name = self._handle
            props.length_bytes = pool_size
        return extension_pb2.MediaStreamMessage(sequence_number=sequence, ack_sequence_number=0,
                                                media_stream_descriptor=d)

    def call_metadata(self):
        md = list(self.metadata)
        if self.auth is not None:
            value = self.auth if isinstance(self.auth, str) else common.basic_auth_value(*self.auth)
            md.append((common.AUTH_HEADER, value))
        return md

    # ---- one session
    def run(self, frames, timestamps=None):
        result = SendResult()
        contents = None
        if not hasattr(frames, "__next__"):
            frames = list(frames)
            contents = [self.content_of(f) for f in frames]
        pool = None
        pool_size = 0
        self._handle = None
        if self.shared_memory:
            if self.shared_memory is True:
                largest = max((len(c) for c in contents), default=0) if contents else \
                    (self.layout.length if self.layout else 1 << 20)
                pool_size = self.window * (-(-max(largest, 1) // ALIGNMENT) * ALIGNMENT)
            else:
                pool_size = int(self.shared_memory)
            if self.fault == "missing_shm":
                pool = SharedMemoryPool(pool_size, self.handle_name, create=False)
            else:
                pool = SharedMemoryPool(pool_size, self.handle_name)
            self._handle = pool.handle_name
            result.handle_name, result.shm_size = pool.handle_name, pool_size
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.max_send_message_length", -1),
                   *self.channel_options]
        channel = (grpc.secure_channel(self.target, self.channel_credentials, options=options)
                   if self.channel_credentials is not None else grpc.insecure_channel(self.target, options=options))
        try:
            _Session(self, channel, pool, pool_size, result).run(frames, contents, timestamps)
        finally:
            channel.close()
            if pool is not None:
                result.shm_unlinked = pool.close()
        return result


_END = object()


class _Session:
    def __init__(self, sender, channel, pool, pool_size, result):
        self.s, self.channel, self.pool, self.pool_size, self.result = sender, channel, pool, pool_size, result
        self.outgoing = queue.Queue()
        self.lock = threading.Condition()
        self.inflight = {}              # sequence -> SentSample (sent, not acked, not timed out)
        self.reserved = {}              # sequence -> (offset, reserved bytes, SentSample): regions in use
        self.next_sequence = 1
        self.ended = False
        self.newest_extension_sequence = 0
        self.acked_extension_sequence = 0
        self.answered = False

    def requests(self):
        while True:
            message = self.outgoing.get()
            if message is _END:
                return
            yield message

    def send(self, message):
        self.outgoing.put(message)

    def take_sequence(self):
        n = self.next_sequence
        self.next_sequence += 1
        return n

    def ack_field(self):
        with self.lock:
            if self.s.zero_acks or self.newest_extension_sequence <= self.acked_extension_sequence:
                return 0
            self.acked_extension_sequence = self.newest_extension_sequence
            return self.newest_extension_sequence

    def run(self, frames, contents, timestamps):
        s, result = self.s, self.result
        stub = extension_pb2_grpc.MediaGraphExtensionStub(self.channel)
        call = stub.ProcessMediaStream(self.requests(), metadata=s.call_metadata())
        reader = threading.Thread(target=self.read, args=(call,), name="ava-sender-reader", daemon=True)
        reader.start()
        try:
            if s.fault == "sample_before_descriptor":
                first = contents[0] if contents else s.content_of(next(iter(frames)))
                self.send(self.sample_message(self.take_sequence(), 0, first, None))
            result.descriptor = s.descriptor_message(self.take_sequence(), self.pool_size)
            self.send(result.descriptor)
            with self.lock:
                self.lock.wait_for(lambda: self.answered or self.ended, s.descriptor_timeout)
                answered = self.answered
            if not answered:
                if not self.ended:
                    result.no_answer = True
                    result.errors.append(f"no descriptor answer within {s.descriptor_timeout}s")
                    result.cancelled_by_sender = True
                    call.cancel()   # nothing to finish: a silent extension would keep the call open
                return
            self.send_samples(frames, contents, timestamps)
            self.drain()
        except SenderError as error:
            result.errors.append(str(error))
        finally:
            self.send(_END)   # half-close: the extension may end the call
            with self.lock:
                if not self.lock.wait_for(lambda: self.ended, s.end_timeout):
                    result.cancelled_by_sender = True
                    call.cancel()
            reader.join(timeout=s.end_timeout)
            with self.lock:
                if result.status is None:
                    result.status = ("CANCELLED", "cancelled by the sender")

    def send_samples(self, frames, contents, timestamps):
        s, result = self.s, self.result
        iterator = iter(contents) if contents is not None else (s.content_of(f) for f in frames)
        for index, content in enumerate(iterator):
            if self.call_over():
                return
            if timestamps is not None:
                timestamp = timestamps[index]
            else:
                timestamp = index * s.frame_interval
            if s.zero_timestamps:
                timestamp = 0
            if index == 0 and s.fault == "wrong_content_length":
                content = content[:-1]
            if index == 0 and s.fault == "bad_jpg":
                content = NOT_A_JPG
            self.wait_for_window()
            sequence = self.take_sequence()
            sample = SentSample(sequence=sequence, timestamp=timestamp, content=content)
            region = None
            if s.fault == "empty_sample" and index == 0:
                message = extension_pb2.MediaStreamMessage(sequence_number=sequence,
                                                           ack_sequence_number=self.ack_field(),
                                                           media_sample=extension_pb2.MediaSample(timestamp=timestamp))
            else:
                if self.pool is not None:
                    region = self.allocate(sample)
                    if region is None:
                        return
                    if index == 0 and s.fault == "shm_outside":
                        sample.offset = self.pool_size - max(1, len(content) // 2)
                    elif s.fault != "missing_shm":
                        self.pool.write(sample.offset, content)
                    if index == 0 and s.fault == "long_reference":
                        sample.length = self.pool_size - sample.offset
                    sample.written_at = time.monotonic()
                message = self.sample_message(sequence, timestamp, content, sample if region else None)
            with self.lock:
                sample.sent_at = time.monotonic()
                result.samples.append(sample)
                self.inflight[sequence] = sample
                if region is not None and region[1]:
                    self.reserved[sequence] = (region[0], region[1], sample)
            self.send(message)
            if index == 0 and s.fault == "second_descriptor":
                again = s.descriptor_message(self.take_sequence(), self.pool_size)
                again.ack_sequence_number = self.ack_field()
                self.send(again)

    def sample_message(self, sequence, timestamp, content, sample):
        media_sample = extension_pb2.MediaSample(timestamp=timestamp)
        if sample is not None:
            media_sample.content_reference.address_offset = sample.offset
            media_sample.content_reference.length_bytes = sample.length or len(content)
        else:
            media_sample.content_bytes.bytes = content
        return extension_pb2.MediaStreamMessage(sequence_number=sequence, ack_sequence_number=self.ack_field(),
                                                media_sample=media_sample)

    def call_over(self):
        with self.lock:
            return self.ended

    def expire(self, now):
        """Moves samples whose ack is overdue out of the window. Call with the lock held."""
        for sequence, sample in list(self.inflight.items()):
            if now - sample.sent_at >= self.s.ack_timeout:
                sample.timed_out = True
                del self.inflight[sequence]

    def next_deadline(self):
        return min((x.sent_at + self.s.ack_timeout for x in self.inflight.values()), default=None)

    def wait_for_window(self):
        with self.lock:
            waited = False
            while len(self.inflight) >= self.s.window and not self.ended:
                waited = True
                deadline = self.next_deadline()
                self.lock.wait(max(0.0, deadline - time.monotonic()) + 0.001)
                self.expire(time.monotonic())
            if waited:
                self.result.window_waits += 1

    def allocate(self, sample):
        """A region for the sample, waiting for acks to free one; None when the session must end."""
        length = max(1, len(sample.content))
        if length > self.pool_size:
            raise SenderError(f"a sample of {length} bytes does not fit {self.pool_size} bytes of shared memory")
        if self.s.fault == "reuse_before_ack":
            slot = -(-length // ALIGNMENT) * ALIGNMENT
            slots = max(1, self.pool_size // slot)
            self.round_robin = getattr(self, "round_robin", -1) + 1
            sample.offset, sample.length = (self.round_robin % slots) * slot, len(sample.content)
            return (sample.offset, 0)
        with self.lock:
            waited = False
            give_up = time.monotonic() + self.s.ack_timeout
            while True:
                region = self.pool.allocate(length)
                if region is not None:
                    break
                if self.ended:
                    return None
                now = time.monotonic()
                if now >= give_up:
                    if self.s.reuse_after_timeout and self.release_timed_out():
                        continue
                    raise SenderError("shared memory exhausted: no region was acknowledged in time")
                waited = True
                self.lock.wait(give_up - now)
                self.expire(time.monotonic())
            if waited:
                self.result.shm_waits += 1
        sample.offset, sample.length = region[0], len(sample.content)
        return region

    def release_timed_out(self):
        released = False
        for sequence, (offset, reserved, sample) in list(self.reserved.items()):
            if sample.timed_out:
                self.free_region(sequence)
                released = True
        return released

    def free_region(self, sequence):
        entry = self.reserved.pop(sequence, None)
        if entry is not None:
            offset, reserved, sample = entry
            self.pool.release(offset, reserved)
            sample.freed_at = time.monotonic()

    def drain(self):
        """Waits until every sample in flight is acked or timed out."""
        with self.lock:
            while self.inflight and not self.ended:
                deadline = self.next_deadline()
                self.lock.wait(max(0.0, deadline - time.monotonic()) + 0.001)
                self.expire(time.monotonic())

    def read(self, call):
        result = self.result
        try:
            for message in call:
                received_at = time.monotonic()
                with self.lock:
                    self.on_message(message, received_at)
                    self.lock.notify_all()
            status = ("OK", call.details() or "") if call.code() == grpc.StatusCode.OK else \
                (call.code().name, call.details() or "")
        except grpc.RpcError as error:
            status = (error.code().name, error.details() or "")
        except Exception as error:  # noqa: BLE001 - recorded, the session ends
            status = ("INTERNAL", f"sender: {error!r}")
        with self.lock:
            result.status = status
            self.ended = True
            self.lock.notify_all()

    def on_message(self, message, received_at):
        result = self.result
        if message.sequence_number > self.newest_extension_sequence:
            self.newest_extension_sequence = message.sequence_number
        case = message.WhichOneof("payload")
        if not self.answered:
            # Key on the payload case of the first answer, not on its numbers.
            if case == "media_stream_descriptor":
                self.answered = True
                result.answer = message
                result.answer_numbers = (message.sequence_number, message.ack_sequence_number)
                result.answer_at = received_at
            else:
                result.other_messages.append(message)
                result.errors.append(f"the extension's first message was {case or 'empty'}, not a descriptor")
            return
        if case != "media_sample":
            result.other_messages.append(message)
            return
        ack = ReceivedAck(message.sequence_number, message.ack_sequence_number, received_at,
                          list(message.media_sample.inferences), message.media_sample.timestamp)
        result.acks.append(ack)
        named = next((x for x in result.samples if x.sequence == ack.ack_sequence_number), None)
        if named is None:
            result.unmatched_acks.append(ack.ack_sequence_number)
            return
        covered = [named]
        if self.s.cumulative_acks:
            covered += [x for x in result.samples if x.sequence < named.sequence and x.acked_at is None]
        for sample in covered:
            if sample.acked_at is None:
                sample.acked_at = received_at
                sample.ack_kind = "explicit" if sample is named else "cumulative"
            if sample is named:
                sample.inferences = ack.inferences
            self.inflight.pop(sample.sequence, None)
            self.free_region(sample.sequence)


def run_session(target, frames, timestamps=None, **options):
    return AvaSender(target, **options).run(frames, timestamps)


# ---------------------------------------------------------------- script

def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="127.0.0.1:5001")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--size", default="320x240")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--encoding", default="raw", choices=("raw", "jpg", "png", "bmp"))
    p.add_argument("--pixel-format", default="rgb24")
    p.add_argument("--stride", type=int, help="bytes between rows; 0: leave stride_bytes out")
    p.add_argument("--shm", nargs="?", const=-1, type=int, metavar="BYTES",
                   help="send through shared memory (BYTES: the file's size; default window x frame)")
    p.add_argument("--auth", metavar="USER:PASSWORD")
    p.add_argument("--configuration", default="")
    p.add_argument("--graph-instance", default="graph-1")
    p.add_argument("--extension-identifier")
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--ack-timeout", type=float, default=2.0)
    p.add_argument("--zero-timestamps", action="store_true")
    p.add_argument("--zero-acks", action="store_true")
    p.add_argument("--fault", choices=FAULTS)
    return p.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    width, height = (int(x) for x in args.size.lower().split("x"))
    encoding = args.encoding.upper()
    pixel_format = args.pixel_format.upper() if encoding == "RAW" else "NONE"
    if encoding == "RAW":
        frames = [common.pattern_frame(width, height, i, pixel_format) for i in range(args.frames)]
    else:
        frames = [common.encode_image(common.pattern_frame(width, height, i), encoding) for i in range(args.frames)]
    shm = None if args.shm is None else (True if args.shm < 0 else args.shm)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    interval = max(1, round(common.DEFAULT_TIMESCALE / args.fps))
    sender = AvaSender(args.target, width=width, height=height, encoding=encoding, pixel_format=pixel_format,
                       stride=args.stride, frame_interval=interval, shared_memory=shm, auth=auth,
                       extension_configuration=args.configuration, graph_instance_name=args.graph_instance,
                       extension_identifier=args.extension_identifier, window=args.window,
                       ack_timeout=args.ack_timeout, zero_timestamps=args.zero_timestamps,
                       zero_acks=args.zero_acks, fault=args.fault)
    result = sender.run(frames)
    for ack in result.acks:
        print(json.dumps({"ack": ack.ack_sequence_number, "sequence_number": ack.sequence_number,
                          **common.inferences_to_json(ack.timestamp, ack.inferences)}), flush=True)
    print(json.dumps({"summary": result.summary()}), flush=True)
    ok = result.code == "OK" and len(result.acked) == len(result.samples)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
