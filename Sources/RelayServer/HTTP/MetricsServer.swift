import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import X509

/// Serves `GET /metrics` (Prometheus text) on a port of its own, over TLS when configured, to callers
/// with the `metrics` role when authentication is configured; anything else is 404.
struct MetricsServer: Sendable {
  let host: String
  let port: Int
  let tls: NIOSSLContext?
  let authorize: HTTPAuthorization
  let render: @Sendable () -> String

  /// Serves until the task is cancelled. `onListening` gets the bound "host:port".
  func run(onListening: @Sendable (String) -> Void) async throws {
    let (render, tls, authorize) = (self.render, self.tls, self.authorize)
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        do {
          if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
          try channel.pipeline.syncOperations.configureHTTPServerPipeline()
          try channel.pipeline.syncOperations.addHandler(MetricsHandler(render: render, authorize: authorize))
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

/// The HTTP side's check: the same credentials as gRPC (`Authorization: Bearer …`, or the client
/// certificate), the `metrics` role.
struct HTTPAuthorization: Sendable {
  let authenticator: Authenticator
  let gate: RefusalGate

  enum Outcome: Sendable {
    case allowed
    case refused(HTTPResponseStatus, String)
  }

  func check(header: String?, certificateNames: [String], peer: String) async -> Outcome {
    let bearer = Authenticator.bearer(in: header)
    switch await authenticator.authenticate(bearer: bearer, certificateNames: certificateNames) {
    case .failure(let refusal):
      let error = await gate.refuse(
        .unauthenticated, message: refusal.message, reason: refusal.reason, peer: peer, method: "GET /metrics")
      return .refused(.unauthorized, error.message)
    case .success(let grant) where !grant.roles.contains(.metrics):
      let error = await gate.refuse(
        .permissionDenied, message: "GET /metrics needs the \"metrics\" role, which this caller lacks",
        reason: "\(grant.identity) lacks metrics", peer: peer, method: "GET /metrics")
      return .refused(.forbidden, error.message)
    case .success:
      return .allowed
    }
  }
}

private final class MetricsHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let render: @Sendable () -> String
  private let authorize: HTTPAuthorization
  private var path = ""
  private var authorization: String?

  init(render: @escaping @Sendable () -> String, authorize: HTTPAuthorization) {
    self.render = render
    self.authorize = authorize
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      path = head.method == .GET ? String(head.uri.prefix { $0 != "?" }) : ""
      authorization = head.headers.first(name: "authorization")
    case .body:
      break
    case .end:
      guard path == "/metrics" else {
        return respond(context: context, status: .notFound, body: "not found: try GET /metrics\n")
      }
      let (authorize, header, render) = (self.authorize, authorization, self.render)
      let names = Self.certificateNames(context)
      let peer = Self.peer(context.channel.remoteAddress)
      let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
      let checked = context.eventLoop.makePromise(of: HTTPAuthorization.Outcome.self)
      checked.completeWithTask { await authorize.check(header: header, certificateNames: names, peer: peer) }
      checked.futureResult.whenSuccess { outcome in
        let (handler, context) = bound.value
        if case .refused(let status, let message) = outcome {
          return handler.respond(context: context, status: status, body: message + "\n")
        }
        // Rendering reads /proc: blocking work goes to NIO's thread pool, the answer back to the loop.
        NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { render() }
          .whenComplete { result in
            let (handler, context) = bound.value
            handler.respond(context: context, status: .ok, body: (try? result.get()) ?? "")
          }
      }
    }
  }

  private func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, body: String) {
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4" : "text/plain")
    headers.add(name: "Content-Length", value: "\(body.utf8.count)")
    headers.add(name: "Connection", value: "close")
    if status == .unauthorized { headers.add(name: "WWW-Authenticate", value: "Bearer") }
    let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
    context.write(wrapOutboundOut(.head(head)), promise: nil)
    context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
    let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
    context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
  }

  /// The verified client certificate's names (mTLS), as gRPC's listeners see them.
  private static func certificateNames(_ context: ChannelHandlerContext) -> [String] {
    guard let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
      let peer = tls.peerCertificate, let der = try? peer.toDERBytes(),
      let certificate = try? Certificate(derEncoded: der)
    else { return [] }
    return certificate.identityNames
  }

  /// In gRPC's peer format ("ipv4:127.0.0.1:5000"), so refusals count per address across both sides.
  private static func peer(_ address: SocketAddress?) -> String {
    switch address {
    case .v4(let v4)?: return "ipv4:\(address?.ipAddress ?? v4.host):\(address?.port ?? 0)"
    case .v6?: return "ipv6:[\(address?.ipAddress ?? "")]:\(address?.port ?? 0)"
    default: return "unknown"
    }
  }
}
