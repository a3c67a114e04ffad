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
