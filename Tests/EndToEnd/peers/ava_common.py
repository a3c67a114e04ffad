"""Shared pieces of the AVA gRPC extension peers (shared/specs/ava-grpc-extension.md): the generated
stubs, raw frame layouts (pixel formats, stride), image encoding/decoding through FFmpeg, shared-memory
names, and inference results as AVA's JSON.

Stubs: scripts/generate-python-stubs.sh generates protos/ava/*.proto into build/python/ava, imported
here as `ava.extension_pb2` etc. (the Python package is the folder name, so no generated package can
shadow grpc, google or anything else).
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy


def _load_stubs():
    repo = Path(__file__).resolve().parents[3]
    stubs = repo / "build" / "python"
    if not (stubs / "ava" / "extension_pb2_grpc.py").is_file():
        raise RuntimeError(f"no AVA stubs in {stubs}: run scripts/generate-python-stubs.sh")
    if str(stubs) not in sys.path:
        sys.path.insert(0, str(stubs))
    from ava import extension_pb2, extension_pb2_grpc, inferencing_pb2, media_pb2  # noqa: E402
    return extension_pb2, extension_pb2_grpc, media_pb2, inferencing_pb2


extension_pb2, extension_pb2_grpc, media_pb2, inferencing_pb2 = _load_stubs()

PACKAGE = "microsoft.azure.media.live_video_analytics.extensibility.grpc.v1"
SERVICE = f"{PACKAGE}.MediaGraphExtension"
METHOD_PATH = f"/{SERVICE}/ProcessMediaStream"
AUTH_HEADER = "x-ms-authentication"
SHM_DIR = Path("/dev/shm")
DEFAULT_TIMESCALE = 90000

Format = media_pb2.VideoFrameSampleFormat
Encoding = Format.Encoding
PixelFormat = Format.PixelFormat
ENCODINGS = {name: Encoding.Value(name) for name in Encoding.keys()}          # BMP JPG PNG RAW
PIXEL_FORMATS = {name: PixelFormat.Value(name) for name in PixelFormat.keys()}
IMAGE_ENCODINGS = {Encoding.Value("JPG"): "mjpeg", Encoding.Value("PNG"): "png", Encoding.Value("BMP"): "bmp"}

# Bytes per pixel of the packed formats (YUV420P: of the luma plane; its chroma planes follow).
BYTES_PER_PIXEL = {
    PixelFormat.Value("YUV420P"): 1,
    PixelFormat.Value("RGB565BE"): 2, PixelFormat.Value("RGB565LE"): 2,
    PixelFormat.Value("RGB555BE"): 2, PixelFormat.Value("RGB555LE"): 2,
    PixelFormat.Value("RGB24"): 3, PixelFormat.Value("BGR24"): 3,
    PixelFormat.Value("ARGB"): 4, PixelFormat.Value("RGBA"): 4,
    PixelFormat.Value("ABGR"): 4, PixelFormat.Value("BGRA"): 4,
}
_WORD_DTYPE = {
    PixelFormat.Value("RGB565BE"): ">u2", PixelFormat.Value("RGB555BE"): ">u2",
    PixelFormat.Value("RGB565LE"): "<u2", PixelFormat.Value("RGB555LE"): "<u2",
}
YUV420P = PixelFormat.Value("YUV420P")
# FFmpeg's names, for making and checking frames with it.
FFMPEG_PIXEL_FORMATS = {
    "YUV420P": "yuv420p", "RGB565BE": "rgb565be", "RGB565LE": "rgb565le", "RGB555BE": "rgb555be",
    "RGB555LE": "rgb555le", "RGB24": "rgb24", "BGR24": "bgr24", "ARGB": "argb", "RGBA": "rgba",
    "ABGR": "abgr", "BGRA": "bgra",
}


class FrameFormatError(ValueError):
    """A frame, descriptor or content that does not fit its description."""


def encoding_value(encoding):
    """"RAW" / "jpg" / 3 -> the enum number (unknown numbers pass through: proto3 enums are open)."""
    if isinstance(encoding, str):
        return ENCODINGS[encoding.upper()]
    return int(encoding)


def pixel_format_value(pixel_format):
    """"rgb24" / "BGRA" / 60 -> the enum number (unknown numbers pass through)."""
    if isinstance(pixel_format, str):
        return PIXEL_FORMATS[pixel_format.upper()]
    return int(pixel_format)


def pixel_format_name(value):
    try:
        return PixelFormat.Name(value)
    except ValueError:
        return str(value)


def encoding_name(value):
    try:
        return Encoding.Name(value)
    except ValueError:
        return str(value)


class RawLayout:
    """Where a RAW frame's bytes are: row_bytes of pixels per row, rows `stride` bytes apart
    (stride_bytes 0 or absent means packed rows), YUV420P's two chroma planes after the luma plane with
    half the stride (rounded up) and half the rows (rounded up). `length` is the content's exact size."""

    def __init__(self, pixel_format, width, height, stride_bytes=0):
        pixel_format = pixel_format_value(pixel_format)
        if pixel_format not in BYTES_PER_PIXEL:
            raise FrameFormatError(f"pixel format {pixel_format_name(pixel_format)} is not a RAW pixel format")
        if width <= 0 or height <= 0:
            raise FrameFormatError(f"dimensions {width}x{height}: both must be positive")
        self.pixel_format, self.width, self.height = pixel_format, width, height
        self.bpp = BYTES_PER_PIXEL[pixel_format]
        self.row_bytes = width * self.bpp
        if stride_bytes and stride_bytes < self.row_bytes:
            raise FrameFormatError(f"stride {stride_bytes} is smaller than a row of {width} "
                                   f"{pixel_format_name(pixel_format)} pixels ({self.row_bytes} bytes)")
        self.stride = stride_bytes or self.row_bytes
        self.planar = pixel_format == YUV420P
        if self.planar:
            self.chroma_width, self.chroma_height = (width + 1) // 2, (height + 1) // 2
            self.chroma_stride = (self.stride + 1) // 2
            self.luma_length = self.stride * height
            self.chroma_length = self.chroma_stride * self.chroma_height
            self.length = self.luma_length + 2 * self.chroma_length
        else:
            self.length = self.stride * height

    def decode(self, content):
        """Content bytes -> numpy array(s) of the pixels only (padding dropped), copied:
        (h, w, bpp) uint8 for 3- and 4-byte formats, (h, w) uint16 of the format's byte order for the
        16-bit ones, a tuple (y, u, v) of 2-D uint8 planes for YUV420P."""
        if len(content) != self.length:
            raise FrameFormatError(f"content of {len(content)} bytes; a {self.width}x{self.height} "
                                   f"{pixel_format_name(self.pixel_format)} frame with stride {self.stride} "
                                   f"is {self.length} bytes")
        buffer = numpy.frombuffer(content, dtype=numpy.uint8)
        if self.planar:
            def plane(start, rows, stride, width):
                return buffer[start:start + rows * stride].reshape(rows, stride)[:, :width].copy()
            y = plane(0, self.height, self.stride, self.width)
            u = plane(self.luma_length, self.chroma_height, self.chroma_stride, self.chroma_width)
            v = plane(self.luma_length + self.chroma_length, self.chroma_height, self.chroma_stride,
                      self.chroma_width)
            return (y, u, v)
        rows = buffer.reshape(self.height, self.stride)[:, :self.row_bytes]
        if self.pixel_format in _WORD_DTYPE:
            return rows.copy().view(_WORD_DTYPE[self.pixel_format]).reshape(self.height, self.width)
        return rows.reshape(self.height, self.width, self.bpp).copy()

    def encode(self, frame, pad_byte=0xA5):
        """Pixels (as decode returns them, or packed bytes of exactly the pixels) -> content bytes with
        every row padded to the stride with pad_byte."""
        packed = self.pack(frame)
        if self.stride == self.row_bytes:
            return packed
        pixels = numpy.frombuffer(packed, dtype=numpy.uint8)
        out = numpy.full(self.length, pad_byte, dtype=numpy.uint8)

        def place(src_start, dst_start, rows, width, stride):
            src = pixels[src_start:src_start + rows * width].reshape(rows, width)
            out[dst_start:dst_start + rows * stride].reshape(rows, stride)[:, :width] = src
        if self.planar:
            cw, ch = self.chroma_width, self.chroma_height
            place(0, 0, self.height, self.width, self.stride)
            place(self.width * self.height, self.luma_length, ch, cw, self.chroma_stride)
            place(self.width * self.height + cw * ch, self.luma_length + self.chroma_length, ch, cw,
                  self.chroma_stride)
        else:
            place(0, 0, self.height, self.row_bytes, self.stride)
        return out.tobytes()

    def packed_length(self):
        if self.planar:
            return self.width * self.height + 2 * self.chroma_width * self.chroma_height
        return self.row_bytes * self.height

    def pack(self, frame):
        """Pixels -> packed bytes (no padding)."""
        if isinstance(frame, (bytes, bytearray, memoryview)):
            data = bytes(frame)
        elif isinstance(frame, tuple):
            data = b"".join(numpy.ascontiguousarray(p, dtype=numpy.uint8).tobytes() for p in frame)
        else:
            array = numpy.asarray(frame)
            if self.pixel_format in _WORD_DTYPE:
                array = array.astype(_WORD_DTYPE[self.pixel_format], copy=False)
            data = numpy.ascontiguousarray(array).tobytes()
        if len(data) != self.packed_length():
            raise FrameFormatError(f"frame of {len(data)} bytes; {self.width}x{self.height} "
                                   f"{pixel_format_name(self.pixel_format)} pixels are {self.packed_length()}")
        return data


def frames_equal(a, b):
    """Compares frames as RawLayout.decode returns them (arrays, YUV tuples) or bytes."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
                and all(frames_equal(x, y) for x, y in zip(a, b)))
    if isinstance(a, (bytes, bytearray)) or isinstance(b, (bytes, bytearray)):
        return bytes(a) == bytes(b)
    a, b = numpy.asarray(a), numpy.asarray(b)
    return a.shape == b.shape and numpy.array_equal(a, b)


def pattern_frame(width, height, index, pixel_format="RGB24"):
    """A deterministic frame that differs per index, as RawLayout.decode returns frames."""
    layout = RawLayout(pixel_format, width, height)
    generator = numpy.random.default_rng(1000 + index)
    data = generator.integers(0, 256, layout.packed_length(), dtype=numpy.uint8).tobytes()
    return layout.decode(data)


def sha256(data):
    return hashlib.sha256(bytes(data)).hexdigest()


def run_ffmpeg(argv, data, timeout=10):
    result = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *argv], input=data,
                            capture_output=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr.decode(errors="replace").strip()


def encode_image(frame, encoding="JPG", pixel_format="RGB24", quality=3):
    """Pixels (h, w, 3) of pixel_format -> JPG/PNG/BMP bytes, through FFmpeg."""
    encoding = encoding_value(encoding)
    array = numpy.ascontiguousarray(frame, dtype=numpy.uint8)
    height, width = array.shape[:2]
    ffmpeg_format = FFMPEG_PIXEL_FORMATS[pixel_format_name(pixel_format_value(pixel_format))]
    extra = ["-q:v", str(quality)] if encoding == Encoding.Value("JPG") else []
    rc, out, err = run_ffmpeg(["-f", "rawvideo", "-pix_fmt", ffmpeg_format, "-s", f"{width}x{height}",
                               "-i", "pipe:0", "-frames:v", "1", "-c:v", IMAGE_ENCODINGS[encoding], *extra,
                               "-f", "image2pipe", "pipe:1"], array.tobytes())
    if rc != 0 or not out:
        raise RuntimeError(f"ffmpeg could not encode a {width}x{height} image: {err}")
    return out


def decode_image(data, encoding, width, height):
    """JPG/PNG/BMP bytes -> (h, w, 3) RGB24 array through FFmpeg; FrameFormatError when the bytes do not
    decode cleanly (FFmpeg reports an error) or decode to other dimensions than width x height."""
    encoding = encoding_value(encoding)
    codec = IMAGE_ENCODINGS.get(encoding)
    if codec is None:
        raise FrameFormatError(f"encoding {encoding_name(encoding)} is not an image encoding")
    rc, out, err = run_ffmpeg(["-f", "image2pipe", "-c:v", codec, "-i", "pipe:0", "-frames:v", "1",
                               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], bytes(data))
    if rc != 0 or err or not out:
        raise FrameFormatError(f"{encoding_name(encoding)} content of {len(data)} bytes does not decode: "
                               f"{err or f'ffmpeg exit {rc}'}")
    if len(out) != width * height * 3:
        raise FrameFormatError(f"{encoding_name(encoding)} content decodes to {len(out)} bytes of RGB24, "
                               f"not {width}x{height}")
    return numpy.frombuffer(out, dtype=numpy.uint8).reshape(height, width, 3).copy()


def shm_path(handle_name):
    """The /dev/shm file a descriptor's handle_name names: a bare file name (one leading "/", as
    shm_open names have, is tolerated). Anything that would leave /dev/shm raises FrameFormatError."""
    name = handle_name[1:] if handle_name.startswith("/") else handle_name
    if not name or "/" in name or name in (".", ".."):
        raise FrameFormatError(f"shared-memory handle_name {handle_name!r} does not name a file under /dev/shm")
    return SHM_DIR / name


def basic_auth_value(user, password):
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------- inference results

def rectangle(l, t, w, h):
    return inferencing_pb2.Rectangle(l=l, t=t, w=w, h=h)


def entity_inference(tag, confidence, box, entity_id="", inference_id="", subtype=""):
    return inferencing_pb2.Inference(
        type=inferencing_pb2.Inference.ENTITY, subtype=subtype, inference_id=inference_id,
        entity=inferencing_pb2.Entity(tag=inferencing_pb2.Tag(value=tag, confidence=confidence),
                                      box=rectangle(*box), id=entity_id))


def classification_inference(tag, confidence, related=(), inference_id="", subtype=""):
    return inferencing_pb2.Inference(
        type=inferencing_pb2.Inference.CLASSIFICATION, subtype=subtype, inference_id=inference_id,
        related_inferences=list(related),
        classification=inferencing_pb2.Classification(tag=inferencing_pb2.Tag(value=tag, confidence=confidence)))


def event_inference(name, properties, inference_id="", subtype=""):
    return inferencing_pb2.Inference(
        type=inferencing_pb2.Inference.EVENT, subtype=subtype, inference_id=inference_id,
        event=inferencing_pb2.Event(name=name, properties={k: str(v) for k, v in properties.items()}))


def inference_to_json(inference):
    """One Inference as AVA's inference metadata item: type, subtype, inferenceId, relatedInferences and
    one of classification/motion/entity/text/event/other (boxes as {l, t, w, h} fractions)."""
    from google.protobuf import json_format
    item = {"type": inferencing_pb2.Inference.InferenceType.Name(inference.type),
            "subtype": inference.subtype, "inferenceId": inference.inference_id,
            "relatedInferences": list(inference.related_inferences)}
    case = inference.WhichOneof("value")
    if case is not None:
        item[case] = json_format.MessageToDict(getattr(inference, case), preserving_proto_field_name=False)
    if inference.sequence_id:
        item["sequenceId"] = inference.sequence_id
    if inference.extensions:
        item["extensions"] = dict(inference.extensions)
    return item


def inferences_to_json(timestamp, inferences):
    """AVA's inference metadata shape: {"timestamp": ..., "inferences": [...]}."""
    return {"timestamp": timestamp, "inferences": [inference_to_json(i) for i in inferences]}


def status_name(code):
    return None if code is None else getattr(code, "name", str(code))

