import Foundation

/// Where the forwarder sends annotations. A delivery reports which entries the upstream confirmed;
/// anything not confirmed stays in the outbox and is sent again.
public protocol AnnotationUpstream: Sendable {
  var description: String { get }
  /// Keeps whatever connection the upstream needs open while `body` runs.
  func run(_ body: @escaping @Sendable () async -> Void) async throws
  func deliver(_ batch: [OutboxEntry]) async -> Delivery
}

public struct Delivery: Sendable {
  /// `seq`s of the entries the upstream confirmed.
  public var confirmed: [Int64]
  /// Why (part of) the batch was not confirmed.
  public var failure: String?
}

/// `--annotations-upstream`, parsed.
public enum UpstreamAddress: Equatable, Sendable {
  case grpc(host: String, port: Int, tls: Bool)
  case http(URL)

  /// Accepts grpc://HOST:PORT, grpcs://HOST:PORT, http(s)://HOST[:PORT]/PATH.
  public init(parsing text: String) throws(UpstreamAddressError) {
    guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty
    else { throw UpstreamAddressError(text: text, reason: "not a URL with a scheme and a host") }
    switch scheme {
    case "grpc", "grpcs":
      guard let port = url.port else { throw UpstreamAddressError(text: text, reason: "a gRPC upstream needs a port") }
      guard url.path.isEmpty || url.path == "/" else {
        throw UpstreamAddressError(text: text, reason: "a gRPC upstream has no path")
      }
      self = .grpc(host: host, port: port, tls: scheme == "grpcs")
    case "http", "https":
      self = .http(url)
    default:
      throw UpstreamAddressError(text: text, reason: "the scheme must be grpc, grpcs, http or https")
    }
  }
}

extension UpstreamAddress: CustomStringConvertible {
  public var description: String {
    switch self {
    case .grpc(let host, let port, let tls): "\(tls ? "grpcs" : "grpc")://\(host):\(port)"
    case .http(let url): url.absoluteString
    }
  }

  public var isTLS: Bool {
    switch self {
    case .grpc(_, _, let tls): tls
    case .http(let url): url.scheme?.lowercased() == "https"
    }
  }

  public var isHTTP: Bool {
    if case .http = self { return true }
    return false
  }
}

public struct UpstreamAddressError: Error, CustomStringConvertible {
  public var text: String
  public var reason: String
  public var description: String {
    "--annotations-upstream \(text): \(reason) (for example grpc://cloud.example:50001 or https://cloud.example/annotations)"
  }
}
