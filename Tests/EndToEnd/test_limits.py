"""Bounds against hostile load: --max-connections refuses the calls of connections over it clearly and
closes them, while the connections within it keep being served."""
import time

import grpc
import pytest

import support
from support import image_grpc, image_pb


def connection(address):
    """A channel with a connection of its own (grpcio shares connections between channels otherwise)."""
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def list_streams(channel):
    return list(image_grpc.ImageStub(channel).ListStreams(image_pb.ListStreamRequest(), timeout=5))


def test_connections_over_the_bound_get_a_clear_refusal(start_server):
    server = start_server("--max-connections", "2", "--metrics-listen", "127.0.0.1:0")
    first, second, third = connection(server.address), connection(server.address), connection(server.address)
    try:
        assert list_streams(first) == [] and list_streams(second) == []
        with pytest.raises(grpc.RpcError) as refused:
            list_streams(third)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-connections" in refused.value.details() and "limit of 2" in refused.value.details()
        assert list_streams(first) == [], "the connections within the bound are still served"
        text = support.framerelay_support.metric_value(server.metrics_address, "framerelay_connections_refused_total")
        assert text >= 1
        first.close()
        deadline = time.monotonic() + 10
        while True:  # a connection freed: a new one is served again
            fresh = connection(server.address)
            try:
                assert list_streams(fresh) == []
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                assert time.monotonic() < deadline, "no connection was admitted after one closed"
                time.sleep(0.3)
            finally:
                fresh.close()
    finally:
        for channel in (first, second, third):
            channel.close()


def server_settings(address):
    """The SETTINGS relay-server sends on a new HTTP/2 connection: {identifier: value}."""
    import socket
    import struct
    host, port = support.framerelay_support.parse_host_port(address)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0))
        data = b""
        while True:
            while len(data) < 9:
                chunk = sock.recv(65536)
                assert chunk, "the server closed the connection before its SETTINGS"
                data += chunk
            length = int.from_bytes(data[:3], "big")
            kind, flags = data[3], data[4]
            while len(data) < 9 + length:
                data += sock.recv(65536)
            payload, data = data[9:9 + length], data[9 + length:]
            if kind == 4 and not flags & 1:  # SETTINGS, not an ACK
                return {struct.unpack(">H", payload[i:i + 2])[0]: struct.unpack(">I", payload[i + 2:i + 6])[0]
                        for i in range(0, len(payload), 6)}


MAX_CONCURRENT_STREAMS = 0x3


def test_streams_per_connection_are_bounded_by_default_and_by_the_flag(start_server):
    # The transport's own default is no bound: one connection could open streams (and unread responses) without end.
    assert server_settings(start_server().address).get(MAX_CONCURRENT_STREAMS) == 100
    server = start_server("--max-streams-per-connection", "3")
    assert server_settings(server.address).get(MAX_CONCURRENT_STREAMS) == 3
    channel = connection(server.address)
    try:  # grpcio queues calls past the bound instead of failing them
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(10) as pool:
            assert list(pool.map(lambda _: list_streams(channel), range(10))) == [[]] * 10
    finally:
        channel.close()
