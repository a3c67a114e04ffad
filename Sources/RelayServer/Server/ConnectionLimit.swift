import GRPCCore
import Metrics
import NIOCore
import RelayCore

/// `--max-connections`: connections over the bound are not dropped unexplained. Each call on one is
/// answered RESOURCE_EXHAUSTED naming the limit (AuthInterceptor asks `refuses`), and the connection is
/// closed a little later, so a client that opens connections and never uses them cannot pile them up.
final class ConnectionLimit: Sendable {
  let maximum: Int
  private let state = Locked((open: 0, refused: Set<String>()))
  private let openGauge = Gauge(label: "framerelay_connections")
  private let refusedCounter = Counter(label: "framerelay_connections_refused_total")
  /// How long a refused connection stays open to carry its answer.
  static let refusalGrace: TimeAmount = .seconds(2)

  init(maximum: Int) { self.maximum = maximum }

  /// The transport accepted a TCP connection (called on its event loop).
  func accepted(_ channel: any Channel) {
    let peer = PeerName.of(channel.remoteAddress)
    let admitted = state.withLock { state -> Bool in
      guard state.open < maximum else {
        state.refused.insert(peer)
        return false
      }
      state.open += 1
      return true
    }
    if admitted {
      openGauge.record(state.value.open)
      channel.closeFuture.whenComplete { [self] _ in
        let open = state.withLock { state -> Int in
          state.open -= 1
          return state.open
        }
        openGauge.record(open)
      }
    } else {
      refusedCounter.increment()
      channel.eventLoop.scheduleTask(in: Self.refusalGrace) { channel.close(promise: nil) }
      channel.closeFuture.whenComplete { [self] _ in _ = state.withLock { $0.refused.remove(peer) } }
    }
  }

  /// Whether calls from `remotePeer` (gRPC's "ipv4:HOST:PORT") come on a connection over the bound.
  func refuses(_ remotePeer: String) -> Bool {
    state.withLock { $0.refused.contains(remotePeer) }
  }
}

/// Answers every call on a connection over `--max-connections` with RESOURCE_EXHAUSTED, first.
struct ConnectionLimitInterceptor: ServerInterceptor {
  let limit: ConnectionLimit

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard limit.refuses(context.remotePeer) else { return try await next(request, context) }
    throw RPCError(
      code: .resourceExhausted,
      message: "relay-server already holds its limit of \(limit.maximum) connections (--max-connections); this one closes in 2 s: retry later, or raise the limit")
  }
}
