import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOPosix

/// The gRPC transport with each call pinned to one event loop: the loop its task starts on, normally its
/// connection's (the transport starts a call from its connection's task, which the connection's reads
/// resume there). All of a call's writes then run on one thread, inline on its stream's loop (or, if the
/// call started elsewhere, each queued to it from that one loop), in the order the call made them.
///
/// Without the pin a call followed whichever loop resumed it (`EventLoopTaskExecutor` over the group):
/// some of its writes ran inline on the stream's loop and others were queued to it from the other loop,
/// and NIO keeps the order of writes only within one of those paths. When relay-server stopped under
/// load, a message then reached the stream after the call's status, which grpc-swift-nio-transport treats
/// as unreachable: a debug build stopped with "Server can't send a message if it's closed", and a release
/// build would drop the message.
struct LoopPinnedTransport<Base: ListeningServerTransport>: ListeningServerTransport {
  typealias Bytes = Base.Bytes

  let base: Base
  /// One executor per loop; nil runs calls where `Base` starts them (`--handler-threads pool`).
  let executors: LoopExecutors?

  func configure(context: GRPCServerContext) {
    base.configure(context: context)
  }

  var listeningAddress: GRPCNIOTransportCore.SocketAddress {
    get async throws { try await base.listeningAddress }
  }

  func listen(
    streamHandler: @escaping @Sendable (_ stream: RPCStream<Inbound, Outbound>, _ context: ServerContext) async -> Void
  ) async throws {
    guard let executors else { return try await base.listen(streamHandler: streamHandler) }
    try await base.listen { stream, context in
      await withTaskExecutorPreference(executors.current) { await streamHandler(stream, context) }
    }
  }

  func beginGracefulShutdown() {
    base.beginGracefulShutdown()
  }
}

/// An `EventLoopTaskExecutor` for each loop of a group, each running its tasks on its own loop only.
struct LoopExecutors: Sendable {
  private let byLoop: [(loop: any EventLoop, executor: EventLoopTaskExecutor)]

  init(group: MultiThreadedEventLoopGroup) {
    byLoop = group.makeIterator().map { ($0, EventLoopTaskExecutor(group: $0)) }
  }

  /// The calling thread's loop's executor, or the first loop's when not called on one.
  var current: EventLoopTaskExecutor {
    let loop = MultiThreadedEventLoopGroup.currentEventLoop
    return byLoop.first { $0.loop === loop }?.executor ?? byLoop[0].executor
  }
}
