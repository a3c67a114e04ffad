import NIOCore
import NIOHTTP1
import NIOPosix

/// Serves `GET /metrics` (Prometheus text) on a port of its own; anything else is 404.
struct MetricsServer: Sendable {
  let host: String
  let port: Int
  let render: @Sendable () -> String

  /// Serves until the task is cancelled. `onListening` gets the bound "host:port".
  func run(onListening: @Sendable (String) -> Void) async throws {
    let render = self.render
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        do {
          try channel.pipeline.syncOperations.configureHTTPServerPipeline()
          try channel.pipeline.syncOperations.addHandler(MetricsHandler(render: render))
          return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
          return channel.eventLoop.makeFailedFuture(error)
        }
      }
      .bind(host: host, port: port).get()
    onListening("\(host):\(channel.localAddress?.port ?? port)")
    try await withTaskCancellationHandler {
      try await channel.closeFuture.get()
    } onCancel: {
      channel.close(promise: nil)
    }
  }
}

private final class MetricsHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let render: @Sendable () -> String
  private var path = ""

  init(render: @escaping @Sendable () -> String) { self.render = render }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      path = head.method == .GET ? String(head.uri.prefix { $0 != "?" }) : ""
    case .body:
      break
    case .end:
      let found = path == "/metrics"
      guard found else { return respond(context: context, found: false, body: "not found: try GET /metrics\n") }
      // Rendering reads /proc: blocking work goes to NIO's thread pool, the answer back to the loop.
      let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
      NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { [render] in render() }
        .whenComplete { result in
          let (handler, context) = bound.value
          handler.respond(context: context, found: true, body: (try? result.get()) ?? "")
        }
    }
  }

  private func respond(context: ChannelHandlerContext, found: Bool, body: String) {
      var headers = HTTPHeaders()
      headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4" : "text/plain")
      headers.add(name: "Content-Length", value: "\(body.utf8.count)")
      headers.add(name: "Connection", value: "close")
      let head = HTTPResponseHead(version: .http1_1, status: found ? .ok : .notFound, headers: headers)
      context.write(wrapOutboundOut(.head(head)), promise: nil)
      context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
      let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
      context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
  }
}
