import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RelayCore
import ServiceLifecycle

/// Builds the HTTP/2 transport every sender uses, in one place: TLS, the server name to verify, and the
/// bearer token on every call.
enum ClientTransport {
  /// One connection per stream attempt: a fresh connect after a partition heals is faster and more
  /// predictable than waiting out a half-dead connection's own back-off.
  static func make(_ server: HostPort, security: ClientSecurity) throws -> HTTP2ClientTransport.Posix {
    var config = HTTP2ClientTransport.Posix.Config.defaults
    config.http2.targetWindowSize = 16 << 20
    config.http2.maxFrameSize = 1 << 20
    config.backoff = .init(initial: .milliseconds(250), max: .seconds(2), multiplier: 2, jitter: 0.2)
    config.connection.keepalive = .init(time: .seconds(5), timeout: .seconds(3), allowWithoutCalls: true)
    var resolvers = NameResolverRegistry.defaults
    resolvers.registerFactory(NamedTargetResolver())
    return try HTTP2ClientTransport.Posix(
      target: NamedTarget(server: server, name: security.tls?.serverName), transportSecurity: transportSecurity(security),
      config: config, resolverRegistry: resolvers)
  }

  /// A client on a fresh transport, with the bearer token (if any) added to every call.
  static func withClient<Result: Sendable>(
    _ server: HostPort, security: ClientSecurity, shared: SharedConnection? = nil,
    _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
  ) async throws -> Result {
    if let shared { return try await body(shared.client) }
    let interceptors: [any ClientInterceptor] = security.bearerToken.map { [BearerToken(token: $0)] } ?? []
    return try await withGRPCClient(transport: try make(server, security: security), interceptors: interceptors, handleClient: body)
  }

  private static func transportSecurity(_ security: ClientSecurity) -> HTTP2ClientTransport.Posix.TransportSecurity {
    guard let tls = security.tls else { return .plaintext }
    func configure(_ config: inout HTTP2ClientTransport.Posix.TransportSecurity.TLS) {
      if let ca = tls.caFile { config.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
    }
    if let certificate = tls.certificateFile, let key = tls.privateKeyFile {
      return .mTLS(certificateChain: [.file(path: certificate, format: .pem)], privateKey: .file(path: key, format: .pem), configure: configure)
    }
    return .tls(configure: configure)
  }
}

/// `authorization: Bearer TOKEN` on every call.
struct BearerToken: ClientInterceptor {
  let token: String

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    var request = request
    request.metadata.replaceOrAddString("Bearer \(token)", forKey: "authorization")
    return try await next(request, context)
  }
}

/// The server's address, and the name its certificate must carry (`--tls-server-name`) when that is
/// not the host we connect to: the name becomes the authority, so SNI and verification use it.
struct NamedTarget: ResolvableTarget {
  let server: HostPort
  let name: String?
}

struct NamedTargetResolver: NameResolverFactory {
  typealias Target = NamedTarget

  func resolver(for target: NamedTarget) -> NameResolver {
    let resolved: NameResolver
    // Address literals resolve without an authority: TLS then verifies the certificate's IP SAN (an IP
    // is not allowed as SNI).
    if target.server.host.contains(":") {
      resolved = NameResolvers.IPv6().resolver(for: .ipv6(address: target.server.host, port: target.server.port))
    } else if target.server.isIPv4Literal {
      resolved = NameResolvers.IPv4().resolver(for: .ipv4(address: target.server.host, port: target.server.port))
    } else {
      resolved = NameResolvers.DNS().resolver(for: .dns(host: target.server.host, port: target.server.port))
    }
    guard let name = target.name else { return resolved }
    return NameResolver(names: resolved.names, updateMode: resolved.updateMode, authority: name)
  }
}

extension HostPort {
  var isIPv4Literal: Bool {
    var address = in_addr()
    return inet_pton(AF_INET, host, &address) == 1
  }
}

/// One HTTP/2 connection (a gRPC client) that several publishers share: a gateway's cameras each open
/// their own Publish stream on it. A Service: it connects until its graceful shutdown, which comes
/// after the publishers have stopped.
public final class SharedConnection: Service, Sendable {
  public let client: GRPCClient<HTTP2ClientTransport.Posix>

  public init(server: HostPort, security: ClientSecurity) throws {
    let interceptors: [any ClientInterceptor] = security.bearerToken.map { [BearerToken(token: $0)] } ?? []
    client = GRPCClient(transport: try ClientTransport.make(server, security: security), interceptors: interceptors)
  }

  public func run() async throws {
    try await withGracefulShutdownHandler {
      try await client.runConnections()
    } onGracefulShutdown: {
      self.client.beginGracefulShutdown()
    }
  }
}
