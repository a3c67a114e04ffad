"""Security: TLS and mTLS on relay-server's listeners, certificate rotation, bearer tokens (a token file
with roles and device patterns, reloaded while running; JWTs), per-method roles, slowing down failed
attempts, and the rules for non-loopback listeners. relay-client publishes over TLS with a private CA,
a client certificate and a token file; grpcio plays the consumers, Python's ssl and urllib the HTTP side.

The certificates (certs.py) are made once per session with the openssl command: a test CA, a server
certificate for localhost (DNS:localhost, IP:127.0.0.1), an expired one, one for other.example, a second
unrelated CA with its own localhost certificate, client certificates CN edge-pi-1 / edge-pi-2 by the test
CA and CN edge-pi-1 by the unrelated CA.

Every client here is on 127.0.0.1, so all of them share one peer address, and the server slows down each
refused call from that address more than the last (capped at a few seconds). So refused calls get a
generous deadline (REFUSED_CALL_TIMEOUT), the many refusals of one test run side by side (concurrently()),
and nothing polls a refused call in a tight loop.
"""
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import ssl
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import certs
import support
from support import image_pb

from simple import video_pb2  # noqa: E402 (generated stubs; support put them on sys.path)

pytestmark = pytest.mark.binaries

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED

IMAGE_SERVICE = "/chrys.cloud.videostreaming.v1beta1.Image/"
ANALYSE_PATH = "/video/Analyse"
AVA_PATH = "/microsoft.azure.media.live_video_analytics.extensibility.grpc.v1.MediaGraphExtension/ProcessMediaStream"
ROLES = ("publish", "consume", "annotate", "control", "metrics")

PATTERN_SIZE = (160, 120)
PATTERN = ("--test-pattern", "--size", f"{PATTERN_SIZE[0]}x{PATTERN_SIZE[1]}", "--fps", "30")
SIMPLE_SHAPE = (48, 64)  # relay-server --simple-shape for the /video/Analyse calls and relay-client simple
REFUSED_CALL_TIMEOUT = 20.0  # a refused call's answer may be held back a few seconds (slow-down per peer)
ALLOWED_CALL_TIMEOUT = 10.0
TLS_COMPLAINT_TIMEOUT = 15.0
CLIENT_EXIT_TIMEOUT = 40.0


# ---------------------------------------------------------------- certificates, tokens, files

@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return certs.make_test_pki(tmp_path_factory.mktemp("pki"))


def tls_args(pair):
    """relay-server's flags to serve TLS with a certs.KeyPair."""
    return ["--tls-cert", pair.cert, "--tls-key", pair.key]


def new_token():
    return secrets.token_hex(20)


def secret_fragments(token):
    """What an error message must not contain: the token, or the last 16 characters of it."""
    return [token, token[-16:]]


def replace_file(path, data):
    """Replaces path in one step (a new file renamed over it): a reader never sees half of it."""
    path = Path(path)
    staging = path.with_name(path.name + ".staging")
    staging.write_bytes(data if isinstance(data, bytes) else data.encode())
    os.replace(staging, path)
    return path


def write_token_file(path, lines):
    return replace_file(path, "\n".join(lines) + "\n")


@pytest.fixture
def token_file(tmp_path):
    """token_file(token) -> a file whose first line is the token (relay-client --token-file)."""
    made = []

    def write(token):
        path = tmp_path / f"client-token-{len(made)}.txt"
        path.write_text(token + "\n")
        made.append(path)
        return path
    return write


@dataclass
class RoleTokens:
    """For every role R, a token with only R (only[R]) and one with every role but R (all_but[R])."""
    path: Path
    only: dict
    all_but: dict

    def values(self):
        return list(self.only.values()) + list(self.all_but.values())


@pytest.fixture
def role_tokens(tmp_path):
    only = {role: new_token() for role in ROLES}
    all_but = {role: new_token() for role in ROLES}
    lines = ["# relay-server tokens for the role tests", "#   TOKEN ROLES [DEVICES]", ""]
    for role in ROLES:
        lines += [f"{only[role]} {role}", f"{all_but[role]} {','.join(r for r in ROLES if r != role)}", ""]
    return RoleTokens(write_token_file(tmp_path / "tokens.txt", lines), only, all_but)


# ---------------------------------------------------------------- servers

def address_of(server):
    """Where to connect: 127.0.0.1 when the server listens on a wildcard address."""
    if server.host in ("0.0.0.0", "::"):
        return support.framerelay_support.join_host_port("127.0.0.1", server.port)
    return server.address


@pytest.fixture
def secure_server(start_server, pki, role_tokens):
    """TLS with the localhost certificate, the role tokens, metrics (HTTPS) and a small --simple-shape."""
    return start_server(*tls_args(pki.server), "--tokens", role_tokens.path, "--metrics-listen", "127.0.0.1:0",
                        "--simple-shape", "x".join(map(str, SIMPLE_SHAPE)))


@pytest.fixture
def start_bare_server(processes, tmp_path):
    """relay-server with exactly the given flags (plus a data directory); does not wait for the ready line."""
    count = []

    def start(*args):
        count.append(1)
        return processes("relay-server", [support.RELAY_SERVER, "--data-dir", tmp_path / f"bare-data-{len(count)}",
                                          *args])
    return start


def expect_refusal_to_start(process, *phrases):
    __tracebackhide__ = True
    code = process.wait(timeout=15)
    assert code is not None, f"relay-server started where it must refuse to:\n{process.tail()}"
    assert code != 0, f"relay-server exited 0 where it must refuse to start:\n{process.tail()}"
    for phrase in phrases:
        assert phrase in process.stderr(), f"{phrase!r} missing from relay-server's stderr:\n{process.tail()}"


# ---------------------------------------------------------------- grpcio consumers

_CallDetails = namedtuple("_CallDetails", "method timeout metadata credentials wait_for_ready compression")


class _CallDetailsWithToken(_CallDetails, grpc.ClientCallDetails):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer TOKEN` to every call (grpcio sends call credentials on TLS channels only)."""

    def __init__(self, token):
        self.entry = ("authorization", f"Bearer {token}")

    def _details(self, details):
        return _CallDetailsWithToken(details.method, details.timeout, list(details.metadata or []) + [self.entry],
                                     details.credentials, getattr(details, "wait_for_ready", None),
                                     getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


def grpc_channel(address, ca=None, token=None, client=None):
    """A channel of its own (no subchannel shared with other channels: a new connection sees the certificate
    served now). ca: TLS verified against that CA file, the name checked being localhost; client: a
    certs.KeyPair presented for mTLS; token: sent as `authorization: Bearer TOKEN` on every call."""
    options = [("grpc.max_receive_message_length", support.RECEIVE_LIMIT), ("grpc.use_local_subchannel_pool", 1)]
    if ca is None:
        channel = grpc.insecure_channel(address, options=options)
        return grpc.intercept_channel(channel, BearerToken(token)) if token else channel
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes(),
                                               private_key=client.key.read_bytes() if client else None,
                                               certificate_chain=client.cert.read_bytes() if client else None)
    if token:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(address, credentials, options=options + [("grpc.ssl_target_name_override", "localhost")])


@pytest.fixture
def connect():
    """connect(server, ca=None, token=None, client=None) -> a grpc channel, closed after the test."""
    opened = []

    def open_channel(server, ca=None, token=None, client=None):
        channel = grpc_channel(address_of(server), ca=ca, token=token, client=client)
        opened.append(channel)
        return channel
    yield open_channel
    for channel in opened:
        channel.close()


def image_stub(channel):
    return support.image_grpc.ImageStub(channel)


@dataclass(frozen=True)
class Method:
    """One gRPC method as the role table names it, with a request that needs nothing else to be answered."""
    role: str
    path: str
    kind: str        # unary_unary, unary_stream or stream_stream
    request: object  # a message; for stream_stream the list of messages sent before half-closing

    @property
    def name(self):
        return self.path.rsplit("/", 1)[-1]


def image_method(role, name, kind, request):
    return Method(role, IMAGE_SERVICE + name, kind, request)


def list_streams_method():
    return image_method("consume", "ListStreams", "unary_stream", image_pb.ListStreamRequest())


def probe_method(device):
    return image_method("consume", "VideoProbe", "unary_unary", image_pb.VideoProbeRequest(device_id=device))


def latest_image_method(device):
    return image_method("consume", "VideoLatestImage", "stream_stream", [image_pb.VideoFrameRequest(device_id=device)])


def system_time_method():
    return image_method("consume", "SystemTime", "unary_unary", image_pb.SystemTimeRequest())


def methods_of(role, device="cam-1"):
    """Every gRPC method the role table gives to `role`."""
    now = support.now_ms()
    table = [
        Method("publish", support.PUBLISH_PATH, "stream_stream", [support.h264_hello(device)]),
        Method("publish", ANALYSE_PATH, "stream_stream",
               [video_pb2.MsgRequest(img=bytes(SIMPLE_SHAPE[0] * SIMPLE_SHAPE[1]))]),
        Method("publish", AVA_PATH, "stream_stream", []),
        latest_image_method(device),
        image_method("consume", "VideoBufferedImage", "unary_stream",
                     image_pb.VideoFrameBufferedRequest(device_id=device)),
        probe_method(device),
        list_streams_method(),
        system_time_method(),
        image_method("annotate", "Annotate", "unary_unary",
                     image_pb.AnnotateRequest(device_name=device, type="person", start_timestamp=now,
                                              end_timestamp=now + 40, object_type="human", confidence=0.9)),
        image_method("control", "Proxy", "unary_unary", image_pb.ProxyRequest(device_id=device, passthrough=False)),
        image_method("control", "Storage", "unary_unary", image_pb.StorageRequest(device_id=device, start=False)),
    ]
    return [method for method in table if method.role == role]


def call_status(channel, method, timeout=REFUSED_CALL_TIMEOUT):
    """Calls the method (reading every answer) and returns (status code, details)."""
    multicallable = getattr(channel, method.kind)(method.path, request_serializer=lambda m: m.SerializeToString(),
                                                  response_deserializer=lambda raw: raw)
    try:
        if method.kind == "stream_stream":
            list(multicallable(iter(method.request), timeout=timeout))
        elif method.kind == "unary_stream":
            list(multicallable(method.request, timeout=timeout))
        else:
            multicallable(method.request, timeout=timeout)
        return OK, ""
    except grpc.RpcError as error:
        return error.code(), error.details() or ""


def concurrently(calls):
    """{label: function of no arguments} -> {label: its result}; all run at once, so that the slow-down of
    refused calls costs one delay rather than the sum of them."""
    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        futures = {label: pool.submit(function) for label, function in calls.items()}
        return {label: future.result() for label, future in futures.items()}


def assert_allowed(outcome, what):
    """Authentication and authorisation passed: any answer but UNAUTHENTICATED / PERMISSION_DENIED (NOT_FOUND
    for a device nobody publishes is fine). No answer in time, or no connection, is a failure too."""
    __tracebackhide__ = True
    code, details = outcome
    assert code not in (UNAUTHENTICATED, PERMISSION_DENIED, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.UNAVAILABLE), f"{what}: {code.name}: {details}"


def assert_refused(outcome, code, what, secrets_=(), naming=None):
    """The call got `code`; its details name `naming` (if given) and contain none of the secrets."""
    __tracebackhide__ = True
    got, details = outcome
    assert got == code, f"{what}: expected {code.name}, got {got.name}: {details!r}"
    for secret in secrets_:
        for fragment in secret_fragments(secret):
            assert fragment not in details, f"{what}: the error message gives a token away: {details!r}"
    if naming is not None:
        assert naming in details, f"{what}: PERMISSION_DENIED should name the role {naming!r}: {details!r}"


def stream_names(channel):
    """ListStreams' device names (the call must succeed)."""
    return set(support.list_streams(image_stub(channel)))


def eventually_allowed(channel, method, within, what, first_try_after=1.0):
    """Tries the call after first_try_after seconds, then every 0.5 s, until it is allowed or `within` seconds
    (since the call of this function) are over; returns the outcome. Each refused try is slowed down by the
    server, so the tries are few and spaced."""
    __tracebackhide__ = True
    deadline = time.monotonic() + within
    time.sleep(first_try_after)
    while True:
        outcome = call_status(channel, method)
        if outcome[0] not in (UNAUTHENTICATED, PERMISSION_DENIED):
            assert_allowed(outcome, what)
            return outcome
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {outcome[0].name} ({outcome[1]}) after {within}s")
        time.sleep(0.5)


def health_check(channel):
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                     timeout=support.CALL_TIMEOUT).status


# ---------------------------------------------------------------- TLS as Python's ssl module sees it

def served_certificate(address, ca, server_name="localhost"):
    """The certificate a new TLS connection (ALPN h2, verified against ca) gets from the server."""
    host, port = support.framerelay_support.parse_host_port(address)
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.getpeercert()


def common_name(certificate):
    return dict(pair for rdn in certificate["subject"] for pair in rdn).get("commonName")


# ---------------------------------------------------------------- HTTP /metrics

def get_metrics(server, ca=None, token=None):
    """(HTTP status, body) of GET /metrics, over HTTPS verified against ca when it is given."""
    scheme = "https" if ca else "http"
    address = server.metrics_address.replace("0.0.0.0:", "127.0.0.1:")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{scheme}://{address}/metrics", headers=headers)
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(request, timeout=REFUSED_CALL_TIMEOUT, context=context) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def metric_total(text, name):
    """The sum of every series of `name` (labelled or not) in Prometheus text; None when there is none."""
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})?[ \t]+([0-9.eE+-]+)[ \t]*$",
                                                     text, re.M)]
    return sum(values) if values else None


# ---------------------------------------------------------------- relay-client

def publish_client(start_client, address, device, *args, frames=None):
    """relay-client publish with the small test pattern (and --frames N when frames is given)."""
    return start_client(address, device, *PATTERN, *(["--frames", str(frames)] if frames else []), *args)


def summary_of(client):
    lines = [line for line in client.stdout().splitlines()
             if line.startswith("{") and '"event":"summary"' in line.replace(" ", "")]
    assert lines, f"relay-client printed no summary; stdout: {client.stdout()!r}\nstderr:\n{client.tail()}"
    return json.loads(lines[-1])


def finished_summary(client, timeout=CLIENT_EXIT_TIMEOUT):
    """Waits for relay-client to exit 0 and returns its summary."""
    __tracebackhide__ = True
    code = client.wait(timeout)
    assert code == 0, f"relay-client exited {code} (None: still running after {timeout}s); stderr:\n{client.tail()}"
    return summary_of(client)


def stopped_summary(client):
    """SIGTERM; relay-client exits 0 and prints its summary."""
    __tracebackhide__ = True
    assert client.stop(timeout=5) == 0, f"relay-client did not exit 0 on SIGTERM; stderr:\n{client.tail()}"
    return summary_of(client)


def expect_publish_refused(client, *phrases):
    """relay-client exits non-zero, its output saying why in one of the phrases (compared in lower case)."""
    __tracebackhide__ = True
    code = client.wait(timeout=30)
    assert code is not None, f"relay-client kept running although the server refused it:\n{client.tail()}"
    assert code != 0, f"relay-client exited 0 although the server refused it:\n{client.tail()}"
    said = (client.stderr() + client.stdout()).lower()
    assert any(phrase in said for phrase in phrases), f"none of {phrases} in relay-client's output:\n{client.tail()}"


def retry_line_pattern(address, phrases):
    """relay-client's `cannot reach relay-server at ADDRESS: CAUSE; retrying ...` with every phrase (a regex)
    in the CAUSE part of the line."""
    lookaheads = "".join(f"(?=[^\n]*{phrase})" for phrase in phrases)
    return rf"cannot reach relay-server at {re.escape(address)}: {lookaheads}[^\n]*retrying"


def expect_tls_complaint(client, address, *phrases, timeout=TLS_COMPLAINT_TIMEOUT):
    """relay-client logs the TLS problem (a retry line with the phrases) at least twice, keeps running, and
    after SIGTERM has acked nothing. Returns the first such line."""
    __tracebackhide__ = True
    pattern = retry_line_pattern(address, phrases)
    first = client.wait_for_output(pattern, timeout=timeout, stream="stderr").group(0)
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, client.stderr())) < 2:
        assert client.alive(), f"relay-client exited ({client.returncode}) instead of retrying:\n{client.tail()}"
        assert time.monotonic() < deadline, f"relay-client did not retry within {timeout}s:\n{client.tail()}"
        time.sleep(0.1)
    assert client.alive(), f"relay-client exited ({client.returncode}) instead of retrying:\n{client.tail()}"
    assert stopped_summary(client)["frames_acked"] == 0
    return first


# ================================================================ 1. TLS

@pytest.mark.parametrize("server_name", [None, "localhost"], ids=["ip-san", "tls-server-name"])
def test_relay_client_publishes_over_tls_and_a_tls_consumer_reads_the_frames(start_server, start_client, connect,
                                                                             pki, server_name):
    server = start_server(*tls_args(pki.server))
    assert common_name(served_certificate(server.address, pki.ca.cert)) == "localhost"
    name_args = ["--tls-server-name", server_name] if server_name else []
    client = publish_client(start_client, server.address, "tls-cam", "--tls-ca", pki.ca.cert, *name_args, frames=60)
    summary = finished_summary(client)
    assert summary["frames_acked"] == 60, summary
    frame = support.wait_for_frame(image_stub(connect(server, ca=pki.ca.cert)), "tls-cam")
    assert (frame.width, frame.height) == PATTERN_SIZE
    assert len(frame.data) == PATTERN_SIZE[0] * PATTERN_SIZE[1] * 3


# ================================================================ 2. mTLS

def mtls_server(start_server, pki, *args):
    return start_server(*tls_args(pki.server), "--tls-client-ca", pki.ca.cert, *args)


def client_cert_args(pair):
    return ["--tls-cert", pair.cert, "--tls-key", pair.key]


def test_mtls_client_with_a_certificate_of_the_ca_publishes(start_server, start_client, connect, pki):
    server = mtls_server(start_server, pki)
    client = publish_client(start_client, server.address, "mtls-cam", "--tls-ca", pki.ca.cert,
                            *client_cert_args(pki.client), frames=30)
    assert finished_summary(client)["frames_acked"] == 30
    frame = support.wait_for_frame(image_stub(connect(server, ca=pki.ca.cert, client=pki.client)), "mtls-cam")
    assert (frame.width, frame.height) == PATTERN_SIZE


@pytest.mark.parametrize("certificate", [None, "client_unknown_ca"],
                         ids=["no-certificate", "certificate-of-another-ca"])
def test_mtls_server_refuses_clients_without_a_certificate_of_its_ca(start_server, start_client, connect, pki,
                                                                     certificate):
    server = mtls_server(start_server, pki)
    pair = getattr(pki, certificate) if certificate else None
    client = publish_client(start_client, server.address, "mtls-refused", "--tls-ca", pki.ca.cert,
                            *(client_cert_args(pair) if pair else []), frames=30)
    # Without a certificate the client can say so; a certificate the server does not trust is refused by the
    # server during or right after the handshake, so any cause will do as long as it keeps retrying.
    expect_tls_complaint(client, server.address, *(["(?i:client certificate)"] if pair is None else []))
    outcome = call_status(connect(server, ca=pki.ca.cert, client=pair), list_streams_method())
    assert outcome[0] == grpc.StatusCode.UNAVAILABLE, f"a grpcio consumer got {outcome} (no TLS session expected)"
    good = connect(server, ca=pki.ca.cert, client=pki.client)
    assert "mtls-refused" not in stream_names(good)


def test_a_cert_line_gives_rights_to_a_client_certificate(start_server, start_client, connect, pki, tmp_path):
    tokens = write_token_file(tmp_path / "tokens.txt", ["# identities from client certificates",
                                                        "cert:edge-pi-1 publish", f"{new_token()} consume"])
    server = mtls_server(start_server, pki, "--tokens", tokens)
    edge = publish_client(start_client, server.address, "edge-pi-1-cam", "--tls-ca", pki.ca.cert,
                          *client_cert_args(pki.client), frames=30)
    stranger = publish_client(start_client, server.address, "edge-pi-2-cam", "--tls-ca", pki.ca.cert,
                              *client_cert_args(pki.client_other_cn), frames=30)
    assert finished_summary(edge)["frames_acked"] == 30
    expect_publish_refused(stranger, "unauthenticated")
    outcomes = concurrently({
        "edge-pi-2": lambda: call_status(connect(server, ca=pki.ca.cert, client=pki.client_other_cn),
                                         list_streams_method()),
        "edge-pi-1": lambda: call_status(connect(server, ca=pki.ca.cert, client=pki.client), list_streams_method()),
    })
    assert_refused(outcomes["edge-pi-2"], UNAUTHENTICATED, "ListStreams with a certificate no line names")
    assert_refused(outcomes["edge-pi-1"], PERMISSION_DENIED, "ListStreams as edge-pi-1 (publish only)",
                   naming="consume")


# ================================================================ 3. TLS failures as relay-client reports them

TLS_FAILURES = {
    # case: (the server's certificate, or None for plaintext; relay-client's flags given the CA; cause phrases)
    "name-mismatch-ip": ("other_name", lambda pki: ["--tls-ca", pki.ca.cert],
                         ["not valid for", re.escape("127.0.0.1")]),
    "name-mismatch-server-name": ("other_name", lambda pki: ["--tls-ca", pki.ca.cert, "--tls-server-name", "localhost"],
                                  ["not valid for", "localhost"]),
    "unknown-ca": ("unknown_ca_server", lambda pki: ["--tls-ca", pki.ca.cert], ["(?i:unknown CA)"]),
    "private-ca-not-in-system-store": ("server", lambda pki: ["--tls"], ["(?i:unknown CA)"]),
    "expired": ("expired", lambda pki: ["--tls-ca", pki.ca.cert], ["expired"]),
    "plaintext-server": (None, lambda pki: ["--tls-ca", pki.ca.cert], ["plaintext"]),
    "tls-server-plaintext-client": ("server", lambda pki: [], ["TLS"]),
}


@pytest.mark.parametrize("case", list(TLS_FAILURES))
def test_relay_client_names_the_tls_problem_and_keeps_retrying(start_server, start_client, pki, case):
    certificate, client_args, phrases = TLS_FAILURES[case]
    server = start_server(*(tls_args(getattr(pki, certificate)) if certificate else []))
    client = publish_client(start_client, server.address, "tls-trouble", *client_args(pki), frames=30)
    expect_tls_complaint(client, server.address, *phrases)


# ================================================================ 4. certificate rotation

def test_a_rotated_certificate_is_served_to_new_connections_while_a_live_stream_stays(start_server, start_client,
                                                                                      connect, pki, tmp_path):
    cert, key = tmp_path / "live-cert.pem", tmp_path / "live-key.pem"
    replace_file(cert, pki.server.cert.read_bytes())
    replace_file(key, pki.server.key.read_bytes())
    server = start_server("--tls-cert", cert, "--tls-key", key, "--tls-reload-seconds", "1")
    assert common_name(served_certificate(server.address, pki.ca.cert)) == "localhost"
    client = publish_client(start_client, server.address, "rotating-cam", "--tls-ca", pki.ca.cert, "--duration", "10")
    client.wait_for_output(r"acked [1-9]", timeout=15, stream="stderr")

    replace_file(key, pki.rotated.key.read_bytes())
    replace_file(cert, pki.rotated.cert.read_bytes())
    rotated_at = time.monotonic()
    seen = None
    while time.monotonic() - rotated_at < 6:
        seen = common_name(served_certificate(server.address, pki.ca.cert))
        if seen == "rotated":
            break
        time.sleep(0.25)
    assert seen == "rotated", (f"new connections still get CN {seen!r} "
                               f"{time.monotonic() - rotated_at:.1f}s after the rotation")
    assert client.alive(), "the stream ended before the rotation could be seen by a live stream"
    frame = support.wait_for_frame(image_stub(connect(server, ca=pki.ca.cert)), "rotating-cam")
    assert (frame.width, frame.height) == PATTERN_SIZE

    summary = finished_summary(client)
    assert summary["frames_acked"] == summary["frames_captured"] > 0, summary
    assert summary["frames_dropped"] == 0, summary
    assert summary["reconnects"] == 0, f"the live stream was dropped by the rotation: {summary}"
    assert "reconnected to relay-server" not in client.stderr()


# ================================================================ 5. roles per method

OTHER_ROLE_FOR = {"publish": "consume", "consume": "annotate", "annotate": "consume", "control": "consume"}


@pytest.mark.parametrize("role", ["publish", "consume", "annotate", "control"])
def test_each_method_needs_its_role(secure_server, connect, pki, role_tokens, role):
    methods = methods_of(role)
    allowed = connect(secure_server, ca=pki.ca.cert, token=role_tokens.only[role])
    for method in methods:
        assert_allowed(call_status(allowed, method, timeout=ALLOWED_CALL_TIMEOUT),
                       f"{method.name} with a token of role {role}")

    every_other = connect(secure_server, ca=pki.ca.cert, token=role_tokens.all_but[role])
    nobody = connect(secure_server, ca=pki.ca.cert)
    unknown_token = new_token()
    stranger = connect(secure_server, ca=pki.ca.cert, token=unknown_token)
    calls = {("every-other-role", m.name): (lambda m=m: call_status(every_other, m)) for m in methods}
    calls[("no-token", methods[0].name)] = lambda: call_status(nobody, methods[0])
    calls[("unknown-token", methods[0].name)] = lambda: call_status(stranger, methods[0])
    secrets_ = role_tokens.values() + [unknown_token]
    for (who, name), outcome in concurrently(calls).items():
        if who == "every-other-role":
            assert_refused(outcome, PERMISSION_DENIED, f"{name} with every role but {role}", secrets_, naming=role)
        else:
            assert_refused(outcome, UNAUTHENTICATED, f"{name} with {who}", secrets_)


def test_relay_client_publishes_with_a_token_file_and_is_refused_without_the_role(secure_server, start_client,
                                                                                  pki, role_tokens, token_file):
    tls = ["--tls-ca", pki.ca.cert]
    good = publish_client(start_client, secure_server.address, "token-cam", *tls,
                          "--token-file", token_file(role_tokens.only["publish"]), frames=30)
    lacking = publish_client(start_client, secure_server.address, "lacking-cam", *tls,
                             "--token-file", token_file(role_tokens.all_but["publish"]), frames=30)
    without = publish_client(start_client, secure_server.address, "tokenless-cam", *tls, frames=30)
    assert finished_summary(good)["frames_acked"] == 30
    expect_publish_refused(lacking, "permission")
    expect_publish_refused(without, "unauthenticated")
    for client in (lacking, without):
        for token in role_tokens.values():
            assert token not in client.stderr() + client.stdout(), "relay-client printed a token"


@pytest.mark.parametrize("mode", ["simple", "ava"])
def test_relay_client_simple_and_ava_publish_over_tls_with_a_token(secure_server, processes, connect, pki,
                                                                    role_tokens, token_file, mode):
    device = f"{mode}-tls"
    mode_args = (["--shape", "x".join(map(str, SIMPLE_SHAPE))] if mode == "simple"
                 else ["--extension-configuration", device])
    client = processes("relay-client", [support.RELAY_CLIENT, mode, "--server", secure_server.address,
                                        "--device", device, "--test-pattern", "--size", "160x120", "--fps", "15",
                                        *mode_args, "--tls-ca", pki.ca.cert,
                                        "--token-file", token_file(role_tokens.only["publish"])])
    reader = connect(secure_server, ca=pki.ca.cert, token=role_tokens.only["consume"])
    support.wait_for_frame(image_stub(reader), device)
    assert stopped_summary(client)["frames_acked"] > 0


def test_health_check_needs_no_token(secure_server, connect, pki):
    assert health_check(connect(secure_server, ca=pki.ca.cert)) == health_pb2.HealthCheckResponse.SERVING


def test_a_token_can_be_given_as_its_sha256(start_server, connect, tmp_path):
    token = new_token()
    digest = hashlib.sha256(token.encode()).hexdigest()
    path = write_token_file(tmp_path / "tokens.txt", ["# only the hash of the token is stored", "",
                                                      f"sha256:{digest} consume"])
    server = start_server("--tokens", path)
    assert_allowed(call_status(connect(server, token=token), list_streams_method()), "ListStreams with the token")
    assert_refused(call_status(connect(server, token=digest), list_streams_method()), UNAUTHENTICATED,
                   "ListStreams with the hash itself as the token", [token, digest])


# ================================================================ 6. device patterns

def test_device_patterns_limit_what_a_token_sees_and_publishes(start_server, start_client, connect, tmp_path,
                                                               token_file):
    publisher, cam_publisher, reader, cam_reader = (new_token() for _ in range(4))
    path = write_token_file(tmp_path / "tokens.txt", [
        f"{publisher} publish", f"{cam_publisher} publish cam-*",
        f"{reader} consume", f"{cam_reader} consume cam-*,lab-*"])
    server = start_server("--tokens", path)
    for device in ("cam-1", "other-1"):
        publish_client(start_client, server.address, device, "--token-file", token_file(publisher))
    everything = connect(server, token=reader)
    for device in ("cam-1", "other-1"):
        support.wait_for_frame(image_stub(everything), device)
    assert {"cam-1", "other-1"} <= stream_names(everything)

    limited = connect(server, token=cam_reader)
    assert stream_names(limited) == {"cam-1"}, "ListStreams shows only the devices the token's patterns match"
    probed = call_status(limited, probe_method("cam-1"))
    assert probed[0] == OK, f"VideoProbe on cam-1 with a cam-* token: {probed}"
    secrets_ = [publisher, cam_publisher, reader, cam_reader]
    outcomes = concurrently({"probe": lambda: call_status(limited, probe_method("other-1")),
                             "latest": lambda: call_status(limited, latest_image_method("other-1"))})
    assert_refused(outcomes["probe"], PERMISSION_DENIED, "VideoProbe on other-1 with a cam-* token", secrets_)
    assert_refused(outcomes["latest"], PERMISSION_DENIED, "VideoLatestImage on other-1 with a cam-* token", secrets_)

    wrong_device = publish_client(start_client, server.address, "other-2", "--token-file", token_file(cam_publisher),
                                  frames=10)
    right_device = publish_client(start_client, server.address, "cam-2", "--token-file", token_file(cam_publisher),
                                  frames=10)
    expect_publish_refused(wrong_device, "permission")
    assert finished_summary(right_device)["frames_acked"] == 10
    assert "other-2" not in stream_names(everything)


# ================================================================ 7. token file reload

def names_line(text, number, path):
    return re.search(rf"(?i)\bline\s*{number}\b|{re.escape(Path(path).name)}:{number}\b", text) is not None


def test_the_token_file_is_reloaded_and_a_bad_one_keeps_the_old_set(start_server, connect, tmp_path):
    a, b, c, d, e = (new_token() for _ in range(5))
    path = write_token_file(tmp_path / "tokens.txt", ["# reloaded while the server runs", f"{a} consume"])
    server = start_server("--tokens", path)
    as_a, as_b, as_d, as_e = (connect(server, token=t) for t in (a, b, d, e))
    listing = list_streams_method()
    assert_allowed(call_status(as_a, listing), "A at start")
    assert_refused(call_status(as_b, listing), UNAUTHENTICATED, "B before it is in the file", [a, b])

    write_token_file(path, ["# reloaded while the server runs", f"{a} consume", f"{b} consume"])
    eventually_allowed(as_b, listing, within=3.5, what="B after it was added to the file", first_try_after=2.0)

    bad = ["# reloaded while the server runs", f"{a} consume", f"{b} consume", f"{c} fly", f"{d} consume"]
    write_token_file(path, bad)  # line 4 has an unknown role
    deadline = time.monotonic() + 5
    while not names_line(server.process.stderr(), 4, path):
        assert time.monotonic() < deadline, f"no stderr line naming line 4 of the token file:\n{server.process.tail()}"
        time.sleep(0.1)
    assert server.process.alive()
    assert_allowed(call_status(as_a, listing), "A after a bad file")
    assert_allowed(call_status(as_b, listing), "B after a bad file")
    assert_refused(call_status(as_d, listing), UNAUTHENTICATED, "D, on a valid line of a file that was refused",
                   [a, b, c, d])

    # A valid change the periodic check cannot tell from the file before (same inode, size and mtime): the
    # SIGHUP applies it. (Should the server notice anyway, by content or ctime, the test passes just the same.)
    before = path.stat()
    text = "\n".join(["# reloaded while the server runs", f"{a} consume", f"{e} consume"]) + "\n"
    text += "#" * (before.st_size - len(text) - 1) + "\n"
    assert len(text) == before.st_size
    with open(path, "r+") as file:
        file.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    server.process.process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert server.process.alive(), f"relay-server died of SIGHUP (exit {server.process.returncode})"
    eventually_allowed(as_e, listing, within=2.5, what="E after a valid change and SIGHUP", first_try_after=0.0)
    assert_refused(call_status(as_b, listing), UNAUTHENTICATED, "B after it was removed (SIGHUP)", [a, b, e])
    assert_allowed(call_status(as_a, listing), "A after SIGHUP")


def test_a_bad_token_file_at_startup_stops_the_server_naming_the_line(start_bare_server, tmp_path):
    path = write_token_file(tmp_path / "tokens.txt", ["# line 1", f"{new_token()} consume", f"{new_token()} fly"])
    process = start_bare_server("--listen", "127.0.0.1:0", "--tokens", path)
    expect_refusal_to_start(process)
    assert names_line(process.stderr(), 3, path), f"stderr does not name line 3:\n{process.tail()}"


# ================================================================ 8. slowing down failed attempts

FLOOD_THREADS = 8
FLOOD_CALLS = 200
FLOOD_SECONDS = 8.0
FLOOD_LATE_MINIMUM = 0.2  # seconds: on a loaded machine contention alone can make late calls 10x the first


def test_a_flood_of_bad_tokens_is_slowed_down_while_a_good_client_is_answered_quickly(start_server, connect, tmp_path):
    good = new_token()
    server = start_server("--tokens", write_token_file(tmp_path / "tokens.txt", [f"{good} consume,metrics"]),
                          "--metrics-listen", "127.0.0.1:0")
    method = system_time_method()
    flooders = [connect(server, token=new_token()) for _ in range(FLOOD_THREADS)]
    good_channel = connect(server, token=good)
    for channel in flooders + [good_channel]:
        grpc.channel_ready_future(channel).result(timeout=5)  # measure calls, not connecting
    assert call_status(good_channel, method)[0] == OK

    def timed(channel):
        started = time.monotonic()
        code, details = call_status(channel, method, timeout=30)
        return started, time.monotonic() - started, code, details

    first = timed(flooders[0])  # alone: the first failure of this peer address
    flood = [first]
    lock = threading.Lock()
    stop_starting = time.monotonic() + FLOOD_SECONDS

    def flood_from(channel):
        while time.monotonic() < stop_starting:
            with lock:
                if len(flood) >= FLOOD_CALLS:
                    return
            result = timed(channel)
            with lock:
                flood.append(result)

    threads = [threading.Thread(target=flood_from, args=(channel,), daemon=True) for channel in flooders]
    for thread in threads:
        thread.start()
    good_latencies, good_failures = [], []
    while any(thread.is_alive() for thread in threads):
        started = time.monotonic()
        code, details = call_status(good_channel, method, timeout=5)
        good_latencies.append(time.monotonic() - started)
        if code != OK:
            good_failures.append(f"{code.name}: {details}")
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=35)

    assert all(code == UNAUTHENTICATED for _, _, code, _ in flood), {code.name for _, _, code, _ in flood}
    ordered = sorted(flood)  # by start time
    assert len(ordered) >= 8, f"only {len(ordered)} refused calls"
    quarter = max(4, len(ordered) // 4)
    early = [duration for _, duration, _, _ in ordered[:quarter]]
    late = [duration for _, duration, _, _ in ordered[-quarter:]]
    assert statistics.median(late) >= 10 * max(first[1], 0.001), (
        f"{len(ordered)} refused calls; the late ones took {statistics.median(late):.3f}s (median), the first "
        f"{first[1]:.3f}s: not slowed down")
    assert statistics.median(late) >= FLOOD_LATE_MINIMUM, (
        f"late refusals took {statistics.median(late):.3f}s (median): a delay growing to a few seconds should "
        f"be past {FLOOD_LATE_MINIMUM}s after {len(ordered)} failures")
    assert statistics.median(early) < statistics.median(late), "refusals did not get slower as they went on"
    assert not good_failures, f"the good client was refused during the flood: {good_failures[:3]}"
    assert len(good_latencies) >= 10, f"only {len(good_latencies)} good calls during the flood"
    assert max(good_latencies) <= 0.5, (f"the good client waited up to {max(good_latencies):.2f}s during the flood "
                                        f"(p50 {statistics.median(good_latencies):.3f}s)")

    status, text = get_metrics(server, token=good)
    assert status == 200
    assert metric_total(text, "framerelay_auth_failures_total") >= len(flood)


# ================================================================ 9. JWT

def jwt_for(keys, roles, devices=None, sub="jwt-tester", expires_in=600, valid_from=-60):
    now = int(time.time())
    claims = {"sub": sub, "roles": list(roles), "iat": now, "nbf": now + valid_from, "exp": now + expires_in}
    if devices is not None:
        claims["devices"] = list(devices)
    return certs.sign_jwt(claims, keys)


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256"])
def test_jwt_bearer_tokens(start_server, start_client, connect, tmp_path, token_file, algorithm):
    keys = certs.jwt_key_pair(tmp_path, algorithm, name="issuer")
    stranger_keys = certs.jwt_key_pair(tmp_path, algorithm, name="stranger")
    server = start_server("--jwt-public-key", keys.public)
    publisher = token_file(jwt_for(keys, ["publish"]))
    for device in ("cam-1", "other-1"):
        publish_client(start_client, server.address, device, "--token-file", publisher)
    reader = connect(server, token=jwt_for(keys, ["consume"]))
    for device in ("cam-1", "other-1"):
        support.wait_for_frame(image_stub(reader), device)
    assert {"cam-1", "other-1"} <= stream_names(reader)

    refused = {
        "expired": (jwt_for(keys, ["consume"], expires_in=-3600, valid_from=-7200), UNAUTHENTICATED, None),
        "not yet valid": (jwt_for(keys, ["consume"], expires_in=7200, valid_from=3600), UNAUTHENTICATED, None),
        "signed by another key": (jwt_for(stranger_keys, ["consume"]), UNAUTHENTICATED, None),
        "roles [annotate]": (jwt_for(keys, ["annotate"]), PERMISSION_DENIED, "consume"),
    }
    outcomes = concurrently({what: (lambda token=token: call_status(connect(server, token=token),
                                                                    list_streams_method()))
                             for what, (token, _, _) in refused.items()})
    for what, (token, code, naming) in refused.items():
        assert_refused(outcomes[what], code, f"ListStreams with a JWT {what}", [token], naming=naming)

    limited_token = jwt_for(keys, ["consume"], devices=["cam-*"])
    limited = connect(server, token=limited_token)
    assert stream_names(limited) == {"cam-1"}
    probed = call_status(limited, probe_method("cam-1"))
    assert probed[0] == OK, f"VideoProbe on cam-1 with a JWT for cam-*: {probed}"
    assert_refused(call_status(limited, probe_method("other-1")), PERMISSION_DENIED,
                   "VideoProbe on other-1 with a JWT for cam-*", [limited_token])


# ================================================================ 10. loopback, non-loopback, --insecure

def test_non_loopback_plaintext_needs_insecure(start_bare_server):
    process = start_bare_server("--listen", "0.0.0.0:0")
    expect_refusal_to_start(process, "--insecure")


def test_non_loopback_plaintext_with_insecure_starts_warns_and_says_so_in_metrics(start_bare_server, connect):
    process = start_bare_server("--listen", "0.0.0.0:0", "--insecure", "--metrics-listen", "127.0.0.1:0")
    server = support.relay_server_ready(process)
    deadline = time.monotonic() + 3
    while not re.search(r"(?i)insecure|plaintext", process.stderr()):
        assert time.monotonic() < deadline, f"no warning on stderr:\n{process.tail()}"
        time.sleep(0.1)
    status, text = get_metrics(server)
    assert status == 200
    assert metric_total(text, "framerelay_insecure") == 1, re.findall(r"^framerelay_insecure.*$", text, re.M)
    assert_allowed(call_status(connect(server), list_streams_method()), "ListStreams on an --insecure server")


def test_non_loopback_tls_without_any_authentication_refuses_to_start(start_bare_server, pki):
    process = start_bare_server("--listen", "0.0.0.0:0", *tls_args(pki.server))
    expect_refusal_to_start(process)


def test_non_loopback_tls_with_tokens_starts(start_bare_server, connect, pki, role_tokens):
    process = start_bare_server("--listen", "0.0.0.0:0", *tls_args(pki.server), "--tokens", role_tokens.path,
                                "--metrics-listen", "127.0.0.1:0")
    server = support.relay_server_ready(process)
    reader = connect(server, ca=pki.ca.cert, token=role_tokens.only["consume"])
    assert_allowed(call_status(reader, list_streams_method()), "ListStreams with a consume token")
    assert_refused(call_status(connect(server, ca=pki.ca.cert), list_streams_method()), UNAUTHENTICATED,
                   "ListStreams without a token on 0.0.0.0", role_tokens.values())
    status, text = get_metrics(server, ca=pki.ca.cert, token=role_tokens.only["metrics"])
    assert status == 200
    assert metric_total(text, "framerelay_insecure") == 0


def test_loopback_without_authentication_is_not_insecure(start_server, connect):
    server = start_server("--metrics-listen", "127.0.0.1:0")
    status, text = get_metrics(server)
    assert status == 200
    assert metric_total(text, "framerelay_insecure") == 0, re.findall(r"^framerelay_insecure.*$", text, re.M)
    assert_allowed(call_status(connect(server), list_streams_method()), "ListStreams on loopback without tokens")


# ================================================================ 11. /metrics over HTTPS with tokens

def test_metrics_over_https_need_the_metrics_role(secure_server, connect, pki, role_tokens):
    ca = pki.ca.cert
    unknown = new_token()
    statuses = concurrently({
        "no token": lambda: get_metrics(secure_server, ca=ca)[0],
        "unknown token": lambda: get_metrics(secure_server, ca=ca, token=unknown)[0],
        "consume token": lambda: get_metrics(secure_server, ca=ca, token=role_tokens.only["consume"])[0],
        "every role but metrics": lambda: get_metrics(secure_server, ca=ca, token=role_tokens.all_but["metrics"])[0],
    })
    assert statuses == {"no token": 401, "unknown token": 401, "consume token": 403, "every role but metrics": 403}

    status, text = get_metrics(secure_server, ca=ca, token=role_tokens.only["metrics"])
    assert status == 200
    for token in role_tokens.values() + [unknown]:
        assert token not in text
    before = metric_total(text, "framerelay_auth_failures_total")
    assert before is not None, "no framerelay_auth_failures_total in /metrics"
    nobody = connect(secure_server, ca=ca)
    stranger = connect(secure_server, ca=ca, token=unknown)
    reader = connect(secure_server, ca=ca, token=role_tokens.only["consume"])
    outcomes = concurrently({
        "no token": lambda: call_status(nobody, system_time_method()),
        "unknown token": lambda: call_status(stranger, system_time_method()),
        "without the role": lambda: call_status(reader, methods_of("control")[0]),
    })
    assert [outcome[0] for outcome in outcomes.values()] == [UNAUTHENTICATED, UNAUTHENTICATED, PERMISSION_DENIED]
    status, text = get_metrics(secure_server, ca=ca, token=role_tokens.only["metrics"])
    assert status == 200
    assert metric_total(text, "framerelay_auth_failures_total") - before == 3, "three refused gRPC calls"
