"""Annotations forwarded over TLS: a grpcs:// upstream relay-server with a private CA and tokens, and an
https:// upstream with a private CA; without the CA nothing is delivered (and nothing is lost)."""
import ssl
import time

import pytest

import certs
from test_annotate import FAST_RETRIES, annotation, assert_delivered_once_each, send_ok, start_relay, wait_for_numbers
from upstreams import GrpcUpstream, HttpUpstream


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return certs.make_test_pki(tmp_path_factory.mktemp("upstream-pki"))


def annotate_token(tmp_path, role="annotate"):
    tokens = tmp_path / "cloud-tokens"
    tokens.write_text(f"edge-forwarder-token {role}\n")
    token_file = tmp_path / "forwarder.token"
    token_file.write_text("edge-forwarder-token\n")
    return tokens, token_file


def test_grpcs_upstream_with_a_private_ca_and_a_token(processes, consumer, tmp_path, pki):
    tag = "grpcs"
    sent = {n: annotation(tag, n) for n in range(20)}
    tokens, token_file = annotate_token(tmp_path)
    with GrpcUpstream() as end:
        cloud = start_relay(processes, tmp_path / "cloud", "--tls-cert", pki.server.cert, "--tls-key", pki.server.key,
                            "--tokens", tokens, "--annotations-upstream", end.url, *FAST_RETRIES)
        edge = start_relay(processes, tmp_path / "edge", "--annotations-upstream", f"grpcs://{cloud.address}",
                           "--annotations-upstream-ca", pki.ca.cert,
                           "--annotations-upstream-token-file", token_file, *FAST_RETRIES)
        stub = consumer(edge.address)
        for n, request in sent.items():
            send_ok(stub, request)
        wait_for_numbers(end, tag, sent, timeout=30)
        assert_delivered_once_each(end, tag, sent)
        edge.wait_for_metrics({"framerelay_annotations_pending": 0})


@pytest.mark.parametrize("problem", ["no CA", "no token", "token without annotate"])
def test_grpcs_upstream_refusals_keep_annotations_pending(processes, consumer, tmp_path, pki, problem):
    tokens, token_file = annotate_token(tmp_path, role="consume" if problem == "token without annotate" else "annotate")
    cloud = start_relay(processes, tmp_path / "cloud", "--tls-cert", pki.server.cert, "--tls-key", pki.server.key,
                        "--tokens", tokens)
    flags = ["--annotations-upstream", f"grpcs://{cloud.address}"]
    if problem != "no CA":
        flags += ["--annotations-upstream-ca", pki.ca.cert]
    if problem != "no token":
        flags += ["--annotations-upstream-token-file", token_file]
    edge = start_relay(processes, tmp_path / "edge", *flags, *FAST_RETRIES)
    stub = consumer(edge.address)
    for n in range(5):
        send_ok(stub, annotation("refused", n))
    wait_for_forwarding_failures(edge, 2)
    assert edge.metrics()["framerelay_annotations_pending"] == 5, "refused annotations stay in the outbox"


def wait_for_forwarding_failures(relay, at_least, timeout=15.0):
    deadline = time.monotonic() + timeout
    while relay.metrics()["framerelay_annotations_forward_failures_total"] < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} forwarding failures counted: {relay.metrics()}"
        time.sleep(0.2)


def https_context(pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    return context


def test_https_upstream_with_a_private_ca(processes, consumer, tmp_path, pki):
    tag = "https"
    sent = {n: annotation(tag, n) for n in range(15)}
    with HttpUpstream(ssl_context=https_context(pki)) as upstream:
        assert upstream.url.startswith("https://")
        edge = start_relay(processes, tmp_path / "edge", "--annotations-upstream", upstream.url,
                           "--annotations-upstream-ca", pki.ca.cert, *FAST_RETRIES)
        stub = consumer(edge.address)
        for n, request in sent.items():
            send_ok(stub, request)
        wait_for_numbers(upstream, tag, sent, timeout=30)
        assert_delivered_once_each(upstream, tag, sent)


def test_https_upstream_without_its_ca_is_not_trusted(processes, consumer, tmp_path, pki):
    with HttpUpstream(ssl_context=https_context(pki)) as upstream:
        edge = start_relay(processes, tmp_path / "edge", "--annotations-upstream", upstream.url, *FAST_RETRIES)
        stub = consumer(edge.address)
        for n in range(3):
            send_ok(stub, annotation("untrusted", n))
        wait_for_forwarding_failures(edge, 2)
        assert not upstream.received, "an upstream whose certificate does not verify got annotations"
        assert edge.metrics()["framerelay_annotations_pending"] == 3
