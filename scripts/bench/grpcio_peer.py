#!/usr/bin/env python3
"""A Python grpcio peer speaking our own Publish protocol, as the baseline for scripts/bench-ingest.

Both sides use the relay.proto stubs generated into build/python, so they do the same protobuf work as
relay-server and relay-client: hello -> accepted, then Frame messages each answered by Ack(sequence).

  grpcio_peer.py server [--listen 127.0.0.1:0] [--window N]
      prints "grpcio-peer listening on HOST:PORT" on stdout when ready; stops on SIGTERM/SIGINT.
  grpcio_peer.py client --server HOST:PORT --frame-bytes N --frames N [--window N] [--timeout S]
      prints one JSON summary line with the same keys as relay-client's.
"""
import argparse
import collections
import concurrent.futures
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import framerelay_support  # noqa: E402
from framerelay_support import percentile  # noqa: E402

framerelay_support.add_stubs_to_path()
import grpc  # noqa: E402
from framerelay.v1 import relay_pb2, relay_pb2_grpc  # noqa: E402

# Both ends must allow messages larger than grpcio's 4 MiB default: a 1080p bgr24 frame is 6.2 MB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MESSAGE_SIZE_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def now_ms():
    return int(time.time() * 1000)


class PublishServicer(relay_pb2_grpc.FrameRelayServicer):
    def __init__(self, window, ring_max_bytes):
        self.window = window
        self.ring_max_bytes = ring_max_bytes

    def Publish(self, request_iterator, context):
        hello = next(request_iterator, None)
        if hello is None or hello.WhichOneof("message") != "hello":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first Publish message must be a hello")
        yield relay_pb2.PublishResponse(accepted=relay_pb2.Accepted(
            resume_after=0, max_frame_bytes=MAX_MESSAGE_BYTES, window=self.window,
            server_time_ms=now_ms()))
        ring = collections.deque()
        ring_bytes = 0
        for request in request_iterator:
            if request.WhichOneof("message") != "frame":
                continue
            frame = request.frame
            data = frame.data
            ring.append(data)
            ring_bytes += len(data)
            while ring_bytes > self.ring_max_bytes:
                ring_bytes -= len(ring.popleft())
            yield relay_pb2.PublishResponse(ack=relay_pb2.Ack(sequence=frame.sequence))


def run_server(args):
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4), options=MESSAGE_SIZE_OPTIONS)
    relay_pb2_grpc.add_FrameRelayServicer_to_server(PublishServicer(args.window, args.ring_max_bytes), server)
    host = args.listen.rsplit(":", 1)[0]
    port = server.add_insecure_port(args.listen)
    if port == 0:
        sys.exit(f"grpcio-peer: cannot listen on {args.listen}")
    server.start()
    print(f"grpcio-peer listening on {host}:{port}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # Bounded even if nobody stops us: the bench kills us, this is only a safety net.
    stop.wait(args.max_seconds)
    server.stop(grace=1).wait(2)


def run_client(args):
    payload = os.urandom(args.frame_bytes)  # one buffer reused for every frame, as a synthetic source
    send_times = [0.0] * (args.frames + 1)   # by sequence number
    rtts_ms = []
    accepted = threading.Event()
    window_slots = threading.Semaphore(0)   # released once accepted tells us the window
    failure = []
    started_at = [0.0]

    def frame_request(sequence):
        # Filled in place: PublishRequest(frame=Frame(data=...)) would copy the payload into the
        # nested message and again into the outer one, about 8 ms per 6.2 MB frame with upb.
        request = relay_pb2.PublishRequest()
        frame = request.frame
        frame.sequence = sequence
        frame.data = payload
        frame.pts = frame.dts = sequence
        frame.keyframe = True
        frame.capture_time_ms = now_ms()
        send_times[sequence] = time.perf_counter()
        return request

    def requests():
        yield relay_pb2.PublishRequest(hello=relay_pb2.Hello(
            device_id="grpcio-bench", session_id=f"grpcio-{os.getpid()}-{now_ms()}",
            codec=relay_pb2.CodecDescription(name="rawvideo", pix_fmt="unknown",
                                             time_base_num=1, time_base_den=1000),
            source_kind=relay_pb2.SOURCE_KIND_SYNTHETIC, source=f"synthetic {args.frame_bytes} bytes",
            client=relay_pb2.ClientInfo(host="localhost", pid=os.getpid(), version="grpcio-peer"),
            client_time_ms=now_ms()))
        if not accepted.wait(args.timeout):
            return
        started_at[0] = time.perf_counter()
        for sequence in range(1, args.frames + 1):
            # Bounded wait: if acks stop coming the deadline below ends the call anyway.
            if not window_slots.acquire(timeout=args.timeout) or failure:
                return
            yield frame_request(sequence)

    channel = grpc.insecure_channel(args.server, options=MESSAGE_SIZE_OPTIONS)
    stub = relay_pb2_grpc.FrameRelayStub(channel)
    acked = 0
    finished_at = time.perf_counter()
    try:
        for response in stub.Publish(requests(), timeout=args.timeout):
            kind = response.WhichOneof("message")
            if kind == "accepted":
                window = min(args.window, response.accepted.window or args.window)
                for _ in range(window):
                    window_slots.release()
                accepted.set()
            elif kind == "ack":
                finished_at = time.perf_counter()
                rtts_ms.append((finished_at - send_times[response.ack.sequence]) * 1000)
                acked += 1
                window_slots.release()
                if acked == args.frames:
                    break
    except grpc.RpcError as error:
        failure.append(f"{error.code().name}: {error.details()}")
    finally:
        window_slots.release()  # let a waiting request generator notice the end
        channel.close()

    seconds = max(finished_at - started_at[0], 1e-9) if started_at[0] else 0.0
    summary = {
        "event": "summary", "device": "grpcio-bench",
        "frames_sent": sum(1 for t in send_times[1:] if t), "frames_acked": acked,
        "bytes_sent": acked * args.frame_bytes, "seconds": round(seconds, 6),
        "fps": round(acked / seconds, 3) if seconds else 0.0,
        "ack_rtt_p50_ms": round(percentile(rtts_ms, 50) or 0.0, 3),
        "ack_rtt_p99_ms": round(percentile(rtts_ms, 99) or 0.0, 3),
    }
    if failure:
        summary["error"] = failure[0]
    print(json.dumps(summary), flush=True)
    return 0 if acked == args.frames and not failure else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("--listen", default="127.0.0.1:0")
    server.add_argument("--window", type=int, default=32, help="window announced in accepted")
    # Like relay-server's per-device ring: keep the latest frames up to this many bytes, so the
    # server holds on to what it acknowledges instead of dropping it at once.
    server.add_argument("--ring-max-bytes", type=int, default=512 * 1024 * 1024)
    server.add_argument("--max-seconds", type=float, default=900, help="exit after this long regardless")
    client = roles.add_parser("client")
    client.add_argument("--server", required=True)
    client.add_argument("--frame-bytes", type=int, required=True)
    client.add_argument("--frames", type=int, required=True)
    client.add_argument("--window", type=int, default=32, help="frames in flight at most")
    client.add_argument("--timeout", type=float, default=120, help="deadline of the whole call, seconds")
    args = parser.parse_args()
    if args.role == "server":
        run_server(args)
        return 0
    return run_client(args)


if __name__ == "__main__":
    sys.exit(main())
