import GRPCNIOTransportHTTP2
import RelayCore

/// Builds the HTTP/2 transport every sender uses, in one place.
enum ClientTransport {
  /// One connection per stream attempt: a fresh connect after a partition heals is faster and more
  /// predictable than waiting out a half-dead connection's own back-off.
  static func make(_ server: HostPort) throws -> HTTP2ClientTransport.Posix {
    var config = HTTP2ClientTransport.Posix.Config.defaults
    config.http2.targetWindowSize = 16 << 20
    config.http2.maxFrameSize = 1 << 20
    config.backoff = .init(initial: .milliseconds(250), max: .seconds(2), multiplier: 2, jitter: 0.2)
    config.connection.keepalive = .init(time: .seconds(5), timeout: .seconds(3), allowWithoutCalls: true)
    let target: any ResolvableTarget
    if server.host.contains(":") {
      target = ResolvableTargets.IPv6.ipv6(address: server.host, port: server.port)
    } else {
      target = ResolvableTargets.DNS.dns(host: server.host, port: server.port)
    }
    return try HTTP2ClientTransport.Posix(target: target, transportSecurity: .plaintext, config: config)
  }
}
