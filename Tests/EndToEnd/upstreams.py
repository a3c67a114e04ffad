"""Test-side upstreams for the annotation forwarder: an HTTP batch receiver and a gRPC Image/Annotate server.

Both listen on 127.0.0.1 (port 0), run in background threads, record what they accept (in arrival order,
duplicates kept) and have a failure `mode` that tests switch at run time. Every wait in here is bounded.
The wire contract they check is written down in docs/annotations-upstream.md.

    with HttpUpstream(secret="s3cret") as http_upstream, GrpcUpstream() as grpc_upstream:
        ... start relay-server with http_upstream.url / "grpc://" + grpc_upstream.address ...
        http_upstream.mode = "refuse"; ...; http_upstream.mode = "ok"
        http_upstream.wait_for_ids(ids, timeout=10)
        assert sorted(http_upstream.unique_ids()) == sorted(ids)

Held ("blackhole") requests are never recorded: when the mode is switched away from "blackhole", or the
upstream is stopped, each held HTTP request has its connection closed without an answer and each held gRPC
call ends with UNAVAILABLE. "lose-reply" (both kinds) records the annotations and then fails the request
(HTTP: connection reset, gRPC: UNAVAILABLE): the upstream has them, the sender does not know, so a correct
at-least-once sender sends them again with the same ids.

Run this file to self-test it: `.venv/bin/python Tests/EndToEnd/upstreams.py`.
"""
import hashlib
import hmac
import http.server
import json
import re
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from google.protobuf import json_format

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import framerelay_support  # noqa: E402

framerelay_support.add_stubs_to_path()
from chrysalis import video_streaming_pb2, video_streaming_pb2_grpc  # noqa: E402

ANNOTATE_PATH = "/chrys.cloud.videostreaming.v1beta1.Image/Annotate"
ID_METADATA_KEY = "x-annotation-id"  # gRPC upstreams: the stable id of the annotation in the call's metadata
ID_FIELD = "annotation_id"           # HTTP upstreams: the stable id, next to the AnnotateRequest fields
TIMESTAMP_HEADER = "X-Relay-Timestamp"
MD5_HEADER = "X-Relay-Content-MD5"
SIGNATURE_HEADER = "X-Relay-Signature"
DEFAULT_MAX_SKEW_MS = 5 * 60 * 1000  # a signed request whose timestamp is further off than this is refused
HOLD_LIMIT = 120.0                   # seconds a blackholed request is held at most, whatever the mode does
MAX_BODY_BYTES = 64 * 1024 * 1024
ANNOTATE_FIELDS = frozenset(f.name for f in video_streaming_pb2.AnnotateRequest.DESCRIPTOR.fields)
LOWER_HEX = re.compile(r"^[0-9a-f]+$")


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- signing (the one definition of the scheme)

def _key(secret):
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def content_md5(body):
    """Lowercase hex MD5 of the raw body bytes, as sent in X-Relay-Content-MD5."""
    return hashlib.md5(body).hexdigest()


def signature(secret, timestamp, md5_hex):
    """Lowercase hex HMAC-SHA256(secret, timestamp + "\\n" + content_md5); timestamp as its decimal text."""
    message = f"{timestamp}\n{md5_hex}".encode("ascii")
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret, timestamp_ms, body_bytes):
    """The three signing headers for one HTTP request body (bytes exactly as sent)."""
    timestamp = str(int(timestamp_ms))
    md5_hex = content_md5(body_bytes)
    return {TIMESTAMP_HEADER: timestamp, MD5_HEADER: md5_hex, SIGNATURE_HEADER: signature(secret, timestamp, md5_hex)}


def verify(secret, headers, body_bytes, now=None, max_skew_ms=DEFAULT_MAX_SKEW_MS):
    """Checks a signed request; returns None when it is good, else the reason it is refused.

    headers: any mapping (looked up case-insensitively). max_skew_ms=None skips the freshness check.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    values = {}
    for name in (TIMESTAMP_HEADER, MD5_HEADER, SIGNATURE_HEADER):
        value = lowered.get(name.lower())
        if value is None:
            return f"missing header {name}"
        values[name] = value.strip()
    timestamp, md5_hex, given = values[TIMESTAMP_HEADER], values[MD5_HEADER], values[SIGNATURE_HEADER]
    if not timestamp.isascii() or not timestamp.isdigit():
        return f"{TIMESTAMP_HEADER} is not a decimal count of milliseconds since the Unix epoch: {timestamp!r}"
    if not LOWER_HEX.match(md5_hex) or len(md5_hex) != 32:
        return f"{MD5_HEADER} is not 32 lowercase hex digits: {md5_hex!r}"
    if not hmac.compare_digest(md5_hex, content_md5(body_bytes)):
        return f"{MD5_HEADER} does not match the body (it is the hex MD5 of the raw body bytes)"
    if not LOWER_HEX.match(given) or len(given) != 64:
        return f"{SIGNATURE_HEADER} is not 64 lowercase hex digits"
    if not hmac.compare_digest(given, signature(secret, timestamp, md5_hex)):
        return (f"{SIGNATURE_HEADER} does not match: expected hex HMAC-SHA256(secret, "
                f"{TIMESTAMP_HEADER} + \"\\n\" + {MD5_HEADER})")
    if max_skew_ms is not None:
        skew = abs((now_ms() if now is None else now) - int(timestamp))
        if skew > max_skew_ms:
            return f"{TIMESTAMP_HEADER} is {skew} ms away from the receiver's clock (limit {max_skew_ms} ms)"
    return None


# ---------------------------------------------------------------- the HTTP batch format

def annotation_item(request, annotation_id):
    """One item of an HTTP batch: the AnnotateRequest as proto3 JSON with proto field names, plus the id."""
    item = json_format.MessageToDict(request, preserving_proto_field_name=True)
    item[ID_FIELD] = annotation_id
    return item


def batch_body(items):
    return json.dumps({"data": list(items)}, separators=(",", ":")).encode("utf-8")


class BadBatch(ValueError):
    pass


def parse_batch(body):
    """[(annotation_id, AnnotateRequest, item dict)] of a batch body; raises BadBatch with the reason."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise BadBatch(f"body is not UTF-8 JSON: {error}") from None
    if not isinstance(document, dict) or set(document) != {"data"} or not isinstance(document["data"], list):
        raise BadBatch('body must be a JSON object {"data": [...]} with no other key')
    parsed = []
    for index, item in enumerate(document["data"]):
        if not isinstance(item, dict):
            raise BadBatch(f"data[{index}] is not a JSON object")
        annotation_id = item.get(ID_FIELD)
        if not isinstance(annotation_id, str) or not annotation_id:
            raise BadBatch(f"data[{index}] has no {ID_FIELD} (a non-empty string)")
        unknown = sorted(set(item) - ANNOTATE_FIELDS - {ID_FIELD})
        if unknown:
            raise BadBatch(f"data[{index}] has unknown keys {unknown}: use the proto's snake_case field names")
        fields = {k: v for k, v in item.items() if k != ID_FIELD}
        try:
            request = json_format.ParseDict(fields, video_streaming_pb2.AnnotateRequest())
        except json_format.ParseError as error:
            raise BadBatch(f"data[{index}] is not an AnnotateRequest: {error}") from None
        parsed.append((annotation_id, request, item))
    return parsed


def _ids_in(body):
    """The annotation ids a body carries, best effort (for the attempt log of refused requests)."""
    try:
        return [item.get(ID_FIELD) for item in json.loads(body)["data"] if isinstance(item, dict)]
    except Exception:  # noqa: BLE001 - anything unparseable simply has no ids to log
        return []


# ---------------------------------------------------------------- what both upstreams record

@dataclass(frozen=True)
class Received:
    """One accepted annotation."""
    annotation_id: str
    request: object          # video_streaming_pb2.AnnotateRequest
    arrived_ms: int          # receiver's clock, ms since the Unix epoch
    attempt: int             # index into .attempts of the request that brought it
    item: dict = None        # HTTP: the JSON item exactly as received
    metadata: tuple = ()     # gRPC: the call's invocation metadata


@dataclass
class Attempt:
    """One request that reached the upstream, whatever became of it."""
    index: int
    arrived_ms: int
    mode: str
    ids: list
    outcome: str = "pending"  # "200", "401: reason", "503", "reset", "dropped (released)", "OK", "UNAVAILABLE", ...
    headers: dict = field(default_factory=dict)   # HTTP request headers / gRPC metadata


class _Recorder:
    MODES = ("ok",)
    KIND = "upstream"

    def __init__(self, hold_limit):
        self.hold_limit = hold_limit
        self._cond = threading.Condition()
        self._mode = "ok"
        self._generation = 0  # bumped by stop(): held requests of the old server let go
        self._held = 0
        self.received = []    # [Received], arrival order, duplicates kept
        self.attempts = []    # [Attempt]

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        if value not in self.MODES:
            raise ValueError(f"{self.KIND} mode must be one of {self.MODES}, not {value!r}")
        with self._cond:
            self._mode = value
            self._cond.notify_all()

    @property
    def held(self):
        """How many requests the blackhole holds right now."""
        with self._cond:
            return self._held

    def received_ids(self):
        with self._cond:
            return [r.annotation_id for r in self.received]

    def unique_ids(self):
        """Ids in order of first arrival, each once."""
        return list(dict.fromkeys(self.received_ids()))

    def duplicates(self):
        """{id: times received} for ids received more than once."""
        counts = {}
        for annotation_id in self.received_ids():
            counts[annotation_id] = counts.get(annotation_id, 0) + 1
        return {k: n for k, n in counts.items() if n > 1}

    def clear(self):
        with self._cond:
            self.received.clear()
            self.attempts.clear()

    def wait_until(self, predicate, timeout, what="the condition"):
        """Waits (bounded) until predicate(self) holds; raises TimeoutError saying what was seen."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.KIND}: {what} not reached within {timeout}s; "
                                       f"{len(self.received)} annotations received "
                                       f"({len(set(r.annotation_id for r in self.received))} unique), "
                                       f"{len(self.attempts)} requests, mode {self._mode!r}")
                self._cond.wait(min(remaining, 0.1))

    def wait_for_ids(self, ids, timeout):
        wanted = set(ids)
        self.wait_until(lambda u: wanted <= {r.annotation_id for r in u.received}, timeout,
                        f"all of {len(wanted)} ids received")

    def wait_for_count(self, unique_count, timeout):
        self.wait_until(lambda u: len({r.annotation_id for r in u.received}) >= unique_count, timeout,
                        f"{unique_count} unique ids received")

    def wait_for_attempts(self, count, timeout):
        self.wait_until(lambda u: len(u.attempts) >= count, timeout, f"{count} requests")

    # -- for the servers

    def _new_attempt(self, mode, ids, headers):
        with self._cond:
            attempt = Attempt(index=len(self.attempts), arrived_ms=now_ms(), mode=mode, ids=list(ids),
                              headers=dict(headers))
            self.attempts.append(attempt)
            self._cond.notify_all()
            return attempt

    def _finish(self, attempt, outcome):
        with self._cond:
            attempt.outcome = outcome
            self._cond.notify_all()

    def _record(self, entries):
        with self._cond:
            self.received.extend(entries)
            self._cond.notify_all()

    def _hold(self, peer_alive):
        """Holds a blackholed request; returns why it was let go ("released", "stopped", "peer gone", ...)."""
        deadline = time.monotonic() + self.hold_limit
        with self._cond:
            generation = self._generation
            self._held += 1
            self._cond.notify_all()
        try:
            while True:
                with self._cond:
                    if self._generation != generation:
                        return "stopped"
                    if self._mode != "blackhole":
                        return "released"
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return "hold limit"
                    self._cond.wait(min(remaining, 0.05))
                if not peer_alive():
                    return "peer gone"
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- HTTP

class _HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, upstream):
        self.upstream = upstream
        super().__init__(address, _HttpHandler)

    def handle_error(self, request, client_address):
        pass  # a client that went away mid-request is normal here


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients use it
    timeout = 60                   # an idle or stalled connection is closed after this
    server_version = "FrameRelayTestUpstream/1"

    def log_message(self, format, *args):
        pass

    def setup(self):
        super().setup()
        self.server.upstream._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.upstream._track(self.connection, False)

    def do_POST(self):
        self.server.upstream._handle_post(self)

    def _not_allowed(self):
        self.server.upstream._drain_and_answer(self, 405, "only POST")

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed


def _read_body(handler):
    headers = handler.headers
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        chunks, total = [], 0
        while True:
            line = handler.rfile.readline(65537)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadBatch("bad chunk size line") from None
            if size == 0:
                while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise BadBatch(f"body over {MAX_BODY_BYTES} bytes")
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline(3)  # the CRLF after the chunk
    try:
        length = int(headers.get("Content-Length", "0"))
    except ValueError:
        raise BadBatch("bad Content-Length") from None
    if length < 0 or length > MAX_BODY_BYTES:
        raise BadBatch(f"Content-Length {length} out of range")
    body = handler.rfile.read(length)
    if len(body) != length:
        raise BadBatch("body shorter than Content-Length")
    return body


def _answer(handler, status, payload):
    body = json.dumps(payload).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def _reset(handler):
    """Closes the connection with a TCP RST and no answer at all."""
    connection = handler.connection
    handler.close_connection = True
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    for stream in (handler.rfile, handler.wfile):
        try:
            stream.close()
        except OSError:
            pass
    connection.close()


def _drop(handler):
    """Closes the connection without an answer (FIN)."""
    handler.close_connection = True


def _peer_alive(connection):
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        if not readable:
            return True
        return connection.recv(1, socket.MSG_PEEK) != b""
    except (BlockingIOError, InterruptedError):
        return True
    except (OSError, ValueError):
        return False


class HttpUpstream(_Recorder):
    """An HTTP receiver of annotation batches: POST {"data": [item, ...]} to .url, 2xx confirms the batch.

    mode: "ok" (200 and record), "refuse" (503), "reset" (read the request, then TCP RST, no answer),
    "blackhole" (read the request, never answer: see the module doc), "lose-reply" (record, then RST).
    With a secret, requests must carry valid signing headers (else 401 with the reason in the JSON body);
    bodies that are not {"data": [items]} with valid items get 400. Other paths get 404.
    """
    MODES = ("ok", "refuse", "reset", "blackhole", "lose-reply")
    KIND = "HTTP upstream"

    def __init__(self, secret=None, path="/annotations", max_skew_ms=DEFAULT_MAX_SKEW_MS, hold_limit=HOLD_LIMIT,
                 ssl_context=None):
        super().__init__(hold_limit)
        self.ssl_context = ssl_context  # a server-side ssl.SSLContext: HTTPS
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        self.secret = secret
        self.path = path
        self.max_skew_ms = max_skew_ms
        self.port = 0
        self._server = None
        self._thread = None
        self._connections = set()
        self._connections_lock = threading.Lock()
        self.start()

    @property
    def url(self):
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}{self.path}"

    def start(self):
        """Starts listening (again, on the same port after stop())."""
        if self._server is not None:
            raise RuntimeError("HTTP upstream already running")
        deadline = time.monotonic() + 5
        while True:
            try:
                server = _HttpServer(("127.0.0.1", self.port), self)
                break
            except OSError:
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.port = server.server_address[1]
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"http-upstream-{self.port}", daemon=True)
        self._thread.start()

    def stop(self):
        """Stops listening and drops every open connection (held ones too); records are kept."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        thread.join(5)

    close = stop

    def requests(self):
        """[AnnotateRequest] in arrival order, duplicates kept."""
        with self._cond:
            return [r.request for r in self.received]

    def _track(self, connection, add):
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def _drain_and_answer(self, handler, status, reason):
        try:
            _read_body(handler)
        except BadBatch:
            handler.close_connection = True
        _answer(handler, status, {"error": reason})

    def _handle_post(self, handler):
        if urlsplit(handler.path).path != self.path:
            self._drain_and_answer(handler, 404, f"not found: POST to {self.path}")
            return
        mode = self._mode
        try:
            body = _read_body(handler)
        except BadBatch as error:
            attempt = self._new_attempt(mode, [], handler.headers.items())
            handler.close_connection = True
            _answer(handler, 400, {"error": str(error)})
            self._finish(attempt, f"400: {error}")
            return
        attempt = self._new_attempt(mode, _ids_in(body), handler.headers.items())
        if mode == "refuse":
            _answer(handler, 503, {"error": "refusing: test upstream mode 'refuse'"})
            self._finish(attempt, "503")
            return
        if mode == "reset":
            _reset(handler)
            self._finish(attempt, "reset")
            return
        if mode == "blackhole":
            why = self._hold(lambda: _peer_alive(handler.connection))
            _drop(handler)
            self._finish(attempt, f"dropped ({why})")
            return
        if self.secret is not None:
            reason = verify(self.secret, handler.headers, body, max_skew_ms=self.max_skew_ms)
            if reason:
                _answer(handler, 401, {"error": reason})
                self._finish(attempt, f"401: {reason}")
                return
        try:
            parsed = parse_batch(body)
        except BadBatch as error:
            _answer(handler, 400, {"error": str(error)})
            self._finish(attempt, f"400: {error}")
            return
        arrived = attempt.arrived_ms
        self._record([Received(annotation_id=i, request=r, arrived_ms=arrived, attempt=attempt.index, item=item)
                      for i, r, item in parsed])
        if mode == "lose-reply":
            _reset(handler)
            self._finish(attempt, "recorded, then reset")
            return
        _answer(handler, 200, {"accepted": len(parsed)})
        self._finish(attempt, "200")


# ---------------------------------------------------------------- gRPC

class _ImageServicer(video_streaming_pb2_grpc.ImageServicer):
    def __init__(self, upstream):
        self.upstream = upstream

    def Annotate(self, request, context):
        return self.upstream._annotate(request, context)


class GrpcUpstream(_Recorder):
    """Another Image API's Annotate: one unary call per annotation, its id in metadata x-annotation-id.

    mode: "ok" (record, answer with the echo), "unavailable" (UNAVAILABLE, nothing recorded), "blackhole"
    (never answer: see the module doc), "lose-reply" (record, then UNAVAILABLE). A call without exactly one
    x-annotation-id gets INVALID_ARGUMENT when require_id (the default). Other Image methods: UNIMPLEMENTED.
    """
    MODES = ("ok", "unavailable", "blackhole", "lose-reply")
    KIND = "gRPC upstream"

    def __init__(self, require_id=True, hold_limit=HOLD_LIMIT, max_workers=16):
        super().__init__(hold_limit)
        self.require_id = require_id
        self.max_workers = max_workers
        self.port = 0
        self._server = None
        self.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"grpc://{self.address}"

    def start(self):
        """Starts serving (again, on the same port after stop())."""
        if self._server is not None:
            raise RuntimeError("gRPC upstream already running")
        deadline = time.monotonic() + 5
        while True:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers,
                                                            thread_name_prefix="grpc-upstream"),
                                 options=[("grpc.so_reuseport", 0)])
            video_streaming_pb2_grpc.add_ImageServicer_to_server(_ImageServicer(self), server)
            try:
                port = server.add_insecure_port(f"127.0.0.1:{self.port}")
            except RuntimeError:
                port = 0
            if port:
                break
            server.stop(0)
            if self.port == 0 or time.monotonic() > deadline:
                raise RuntimeError(f"gRPC upstream could not bind 127.0.0.1:{self.port}")
            time.sleep(0.05)
        self.port = port
        server.start()
        self._server = server

    def stop(self, grace=0):
        """Stops serving: calls in flight (held ones too) end with an error; records are kept."""
        server = self._server
        if server is None:
            return
        self._server = None
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        server.stop(grace).wait(5)

    close = stop

    def requests(self):
        with self._cond:
            return [r.request for r in self.received]

    def _annotate(self, request, context):
        mode = self._mode
        metadata = tuple((m.key, m.value) for m in context.invocation_metadata())
        ids = [value for key, value in metadata if key == ID_METADATA_KEY]
        attempt = self._new_attempt(mode, ids, dict(metadata))
        if mode == "unavailable":
            self._finish(attempt, "UNAVAILABLE")
            context.abort(grpc.StatusCode.UNAVAILABLE, "test upstream mode 'unavailable'")
        if mode == "blackhole":
            why = self._hold(context.is_active)
            self._finish(attempt, f"UNAVAILABLE (blackhole: {why})")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"test upstream: held in blackhole, then {why}")
        if self.require_id and len(ids) != 1:
            self._finish(attempt, "INVALID_ARGUMENT")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"expected exactly one {ID_METADATA_KEY} metadata entry, got {len(ids)}")
        copy = video_streaming_pb2.AnnotateRequest()
        copy.CopyFrom(request)
        self._record([Received(annotation_id=ids[0] if ids else None, request=copy, arrived_ms=attempt.arrived_ms,
                               attempt=attempt.index, metadata=metadata)])
        if mode == "lose-reply":
            self._finish(attempt, "recorded, then UNAVAILABLE")
            context.abort(grpc.StatusCode.UNAVAILABLE, "test upstream mode 'lose-reply': recorded, reply lost")
        self._finish(attempt, "OK")
        return video_streaming_pb2.AnnotateResponse(device_name=request.device_name,
                                                    remote_stream_id=request.remote_stream_id,
                                                    type=request.type, start_timestamp=request.start_timestamp)


# ---------------------------------------------------------------- self-test

def _self_test():
    import signal
    import urllib.error
    import urllib.request
    import http.client

    signal.alarm(90)  # the whole self-test is bounded

    def post(url, body, headers=None, timeout=3.0, chunked=False):
        data = iter([body[:5], body[5:]]) if chunked else body
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())
        except urllib.error.URLError as error:
            return None, error.reason
        except OSError as error:
            return None, error

    def annotation(n, device="cam-1"):
        return video_streaming_pb2.AnnotateRequest(
            device_name=device, remote_stream_id=f"stream-{n}", type="person", start_timestamp=1_700_000_000_000 + n,
            confidence=0.5, object_bouding_box=video_streaming_pb2.BoudingBox(top=1, left=2, width=3, height=4),
            mask=[video_streaming_pb2.Coordinate(x=0.25, y=0.5)], object_signature=[0.1, 0.2], custom_meta_5="m")

    def body_of(*numbers):
        return batch_body(annotation_item(annotation(n), f"id-{n}") for n in numbers)

    # -- the signing scheme, against a vector computed with openssl (see docs/annotations-upstream.md)
    vector = sign("s3cret", 1700000000000, b'{"data":[]}')
    assert vector == {TIMESTAMP_HEADER: "1700000000000", MD5_HEADER: "e0234245cb00aa260ccfa99a9a0b235e",
                      SIGNATURE_HEADER: "ae41ed409b588ab2357de9611e8bf3908e7bacc59e534a661edd487a5d3645e7"}, vector
    assert verify("s3cret", vector, b'{"data":[]}', now=1700000000000) is None

    # -- the item format: snake_case names, int64 as strings (proto3 JSON), the id next to the fields
    item = annotation_item(annotation(7), "id-7")
    assert item["object_bouding_box"] == {"top": 1, "left": 2, "width": 3, "height": 4}, item
    assert item["start_timestamp"] == "1700000000007" and item[ID_FIELD] == "id-7", item
    assert parse_batch(batch_body([item]))[0][1] == annotation(7)

    # -- HTTP without a secret
    with HttpUpstream() as up:
        assert up.url.startswith("http://127.0.0.1:") and up.url.endswith("/annotations")
        assert post(up.url, body_of(1, 2)) == (200, {"accepted": 2})
        assert post(up.url, body_of(2, 3), chunked=True) == (200, {"accepted": 2})  # duplicate id-2, chunked body
        assert up.received_ids() == ["id-1", "id-2", "id-2", "id-3"]
        assert up.unique_ids() == ["id-1", "id-2", "id-3"] and up.duplicates() == {"id-2": 2}
        assert up.received[0].request == annotation(1) and up.received[0].item[ID_FIELD] == "id-1"
        assert abs(up.received[0].arrived_ms - now_ms()) < 5000

        # keep-alive: two requests on one connection
        connection = http.client.HTTPConnection("127.0.0.1", up.port, timeout=3)
        for n in (4, 5):
            connection.request("POST", up.path, body=body_of(n), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"accepted": 1}
        connection.close()

        # bodies that are not {"data": [...]} with good items: 400 with a reason, nothing recorded
        before = up.received_ids()
        for bad, why in [(b"not json", "not UTF-8 JSON"), (b"[]", '{"data": [...]}'),
                         (b'{"data": {}}', '{"data": [...]}'), (b'{"data": [], "more": 1}', "no other key"),
                         (b'{"data": [1]}', "not a JSON object"),
                         (b'{"data": [{"device_name": "x"}]}', "annotation_id"),
                         (b'{"data": [{"annotation_id": "a", "deviceName": "x"}]}', "snake_case"),
                         (b'{"data": [{"annotation_id": "a", "start_timestamp": "soon"}]}', "not an AnnotateRequest")]:
            status, answer = post(up.url, bad)
            assert status == 400 and why in answer["error"], (bad, status, answer)
        assert up.received_ids() == before
        assert post(up.url.replace("/annotations", "/elsewhere"), body_of(1))[0] == 404
        assert post(up.url, b'{"data":[]}') == (200, {"accepted": 0})

        up.mode = "refuse"
        assert post(up.url, body_of(6))[0] == 503
        up.mode = "reset"
        status, error = post(up.url, body_of(6))
        assert status is None and isinstance(error, ConnectionError), error
        up.mode = "lose-reply"
        status, error = post(up.url, body_of(6))
        assert status is None and isinstance(error, ConnectionError), error
        assert up.received_ids()[-1] == "id-6", "lose-reply records before it drops the reply"
        up.mode = "blackhole"
        started = time.monotonic()
        status, error = post(up.url, body_of(7), timeout=0.5)
        assert status is None and isinstance(error, TimeoutError), error
        assert 0.4 < time.monotonic() - started < 2
        # a held request is let go (closed, no answer, not recorded) as soon as the mode changes
        outcome = {}
        worker = threading.Thread(target=lambda: outcome.update(r=post(up.url, body_of(8), timeout=10),
                                                                t=time.monotonic()))
        worker.start()
        up.wait_until(lambda u: u.held >= 1, 5, "a held request")
        time.sleep(0.2)
        released = time.monotonic()
        up.mode = "ok"
        worker.join(5)
        assert not worker.is_alive()
        status, error = outcome["r"]
        assert status is None and isinstance(error, ConnectionError) and outcome["t"] - released < 1, outcome
        assert "id-7" not in up.received_ids() and "id-8" not in up.received_ids()
        assert [a.outcome for a in up.attempts[-5:]] == ["503", "reset", "recorded, then reset",
                                                         "dropped (peer gone)", "dropped (released)"], up.attempts[-5:]
        assert up.attempts[-1].ids == ["id-8"]
        assert post(up.url, body_of(8)) == (200, {"accepted": 1})

        # stop and start again on the same port
        url = up.url
        up.stop()
        status, error = post(url, body_of(9), timeout=2)
        assert status is None and isinstance(error, ConnectionRefusedError), error
        up.start()
        assert up.url == url and post(url, body_of(9)) == (200, {"accepted": 1})
        up.wait_for_ids(["id-1", "id-9"], timeout=1)
        try:
            up.wait_for_ids(["never"], timeout=0.2)
            raise AssertionError("wait_for_ids did not time out")
        except TimeoutError:
            pass

    # -- HTTP with a secret
    with HttpUpstream(secret="s3cret", path="/v1/annotations") as up:
        body = body_of(1)
        assert post(up.url, body, sign("s3cret", now_ms(), body)) == (200, {"accepted": 1})
        checks = [
            (sign("wrong", now_ms(), body), body, SIGNATURE_HEADER + " does not match"),
            (sign("s3cret", now_ms(), body_of(2)), body, MD5_HEADER + " does not match the body"),
            ({}, body, "missing header " + TIMESTAMP_HEADER),
            ({**sign("s3cret", now_ms(), body), MD5_HEADER: content_md5(body).upper()}, body, "lowercase hex"),
            (sign("s3cret", now_ms() - 10 * 60 * 1000, body), body, "away from the receiver's clock"),
        ]
        for headers, sent, why in checks:
            status, answer = post(up.url, sent, headers)
            assert status == 401 and why in answer["error"], (why, status, answer)
        assert up.received_ids() == ["id-1"]
        assert post(up.url, body, sign(b"s3cret", now_ms(), body), chunked=True)[0] == 200  # bytes secret too
        assert up.received_ids() == ["id-1", "id-1"] and up.unique_ids() == ["id-1"]

    # -- gRPC
    with GrpcUpstream() as up:
        channel = grpc.insecure_channel(up.address)
        stub = video_streaming_pb2_grpc.ImageStub(channel)

        def call(n, timeout=3.0, with_id=True, **kwargs):
            metadata = [(ID_METADATA_KEY, f"id-{n}")] if with_id else []
            try:
                return stub.Annotate(annotation(n), metadata=metadata, timeout=timeout, **kwargs)
            except grpc.RpcError as error:
                return error.code()

        answer = call(1)
        assert answer == video_streaming_pb2.AnnotateResponse(device_name="cam-1", remote_stream_id="stream-1",
                                                              type="person", start_timestamp=1_700_000_000_001)
        assert isinstance(call(1), video_streaming_pb2.AnnotateResponse)
        assert up.received_ids() == ["id-1", "id-1"] and up.unique_ids() == ["id-1"]
        assert up.received[0].request == annotation(1)
        assert (ID_METADATA_KEY, "id-1") in up.received[0].metadata
        assert call(2, with_id=False) == grpc.StatusCode.INVALID_ARGUMENT

        up.mode = "unavailable"
        assert call(3) == grpc.StatusCode.UNAVAILABLE
        up.mode = "lose-reply"
        assert call(4) == grpc.StatusCode.UNAVAILABLE and up.received_ids()[-1] == "id-4"
        up.mode = "blackhole"
        started = time.monotonic()
        assert call(5, timeout=0.5) == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 2
        up.wait_until(lambda u: u.held == 0, 3, "the expired call let go")
        future = stub.Annotate.future(annotation(6), metadata=[(ID_METADATA_KEY, "id-6")], timeout=10)
        up.wait_until(lambda u: u.held >= 1, 5, "a held call")
        released = time.monotonic()
        up.mode = "ok"
        error = future.exception(timeout=5)
        assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, error
        assert time.monotonic() - released < 1
        assert "id-3" not in up.received_ids() and "id-5" not in up.received_ids() and "id-6" not in up.received_ids()
        assert [a.outcome for a in up.attempts[-4:]] == ["UNAVAILABLE", "recorded, then UNAVAILABLE",
                                                         "UNAVAILABLE (blackhole: peer gone)",
                                                         "UNAVAILABLE (blackhole: released)"], up.attempts[-4:]
        assert isinstance(call(6), video_streaming_pb2.AnnotateResponse)

        # stop while a call is held; the upstream goes away and comes back on the same port
        up.mode = "blackhole"
        future = stub.Annotate.future(annotation(7), metadata=[(ID_METADATA_KEY, "id-7")], timeout=10)
        up.wait_until(lambda u: u.held >= 1, 5, "a held call")
        address = up.address
        up.stop()
        error = future.exception(timeout=5)
        assert error is not None and error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), error
        up.mode = "ok"
        assert call(8, timeout=2) == grpc.StatusCode.UNAVAILABLE  # nobody listens
        up.start()
        assert up.address == address
        # the same channel reconnects (as a forwarder's would); wait_for_ready rides out its backoff
        assert isinstance(call(8, timeout=15, wait_for_ready=True), video_streaming_pb2.AnnotateResponse)
        assert up.unique_ids() == ["id-1", "id-4", "id-6", "id-8"], up.unique_ids()
        up.wait_for_count(4, timeout=1)
        channel.close()

    print("upstreams self-test: ok")


if __name__ == "__main__":
    _self_test()
