import NIOCore

/// A peer as gRPC names it in `ServerContext.remotePeer` ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000"), so
/// refusals and connection bounds key the HTTP side and gRPC alike.
enum PeerName {
  static func of(_ address: SocketAddress?) -> String {
    switch address {
    case .v4?: return "ipv4:\(address?.ipAddress ?? ""):\(address?.port ?? 0)"
    case .v6?: return "ipv6:[\(address?.ipAddress ?? "")]:\(address?.port ?? 0)"
    default: return "<unknown>"
    }
  }
}
