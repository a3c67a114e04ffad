import GRPCCore
import GRPCNIOTransportHTTP2
import RelayProtocol

/// Another Image API (a cloud relay-server, say): one Annotate call per annotation with the stable id
/// in `x-annotation-id`. Devices are sent side by side; each device's annotations one after another,
/// stopping at its first failure so they arrive in order.
public final class GRPCUpstream: AnnotationUpstream {
  public static let idMetadataKey = "x-annotation-id"

  let host: String
  let port: Int
  let tls: Bool
  let timeout: Duration
  let bearerToken: String?
  private let client: GRPCClient<HTTP2ClientTransport.Posix>

  /// With `tls`, the upstream's certificate is verified against the system trust store, or against
  /// `caFile` (PEM) when given. `bearerToken` goes with every call (an upstream relay-server with
  /// --tokens wants the annotate role).
  public init(
    host: String, port: Int, tls: Bool, caFile: String? = nil, bearerToken: String? = nil, timeout: Duration
  ) throws {
    self.bearerToken = bearerToken
    self.host = host
    self.port = port
    self.tls = tls
    self.timeout = timeout
    var config = HTTP2ClientTransport.Posix.Config.defaults
    config.backoff = .init(initial: .milliseconds(250), max: .seconds(5), multiplier: 2, jitter: 0.2)
    client = GRPCClient(
      transport: try HTTP2ClientTransport.Posix(
        target: Self.target(host: host, port: port), transportSecurity: tls ? .tls { tlsConfig in
          if let caFile { tlsConfig.trustRoots = .certificates([.file(path: caFile, format: .pem)]) }
        } : .plaintext, config: config))
  }

  /// An address literal resolves without an authority, so TLS verifies the certificate's IP SAN (an IP
  /// may not be sent as SNI).
  private static func target(host: String, port: Int) -> any ResolvableTarget {
    if host.contains(":") { return .ipv6(address: host, port: port) }
    if host.split(separator: ".").count == 4, host.allSatisfy({ $0.isNumber || $0 == "." }) {
      return .ipv4(address: host, port: port)
    }
    return .dns(host: host, port: port)
  }

  public var description: String { "\(tls ? "grpcs" : "grpc")://\(host):\(port)" }

  public func run(_ body: @escaping @Sendable () async -> Void) async throws {
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await self.client.runConnections() }
      await body()
      client.beginGracefulShutdown()
    }
  }

  public func deliver(_ batch: [OutboxEntry]) async -> Delivery {
    let byDevice = Dictionary(grouping: batch, by: \.device)
    return await withTaskGroup(of: Delivery.self) { group in
      for entries in byDevice.values {
        group.addTask { await self.deliverInOrder(entries) }
      }
      var total = Delivery(confirmed: [], failure: nil)
      for await delivery in group {
        total.confirmed += delivery.confirmed
        total.failure = total.failure ?? delivery.failure
      }
      return total
    }
  }

  private func deliverInOrder(_ entries: [OutboxEntry]) async -> Delivery {
    let image = Chrys_Cloud_Videostreaming_V1beta1_Image.Client(wrapping: client)
    var options = CallOptions.defaults
    options.timeout = timeout
    options.waitForReady = false  // a refused connection fails the call now, not at the deadline
    var confirmed: [Int64] = []
    for entry in entries {
      do {
        let request = try AnnotateRequest(serializedBytes: entry.request)
        var metadata: Metadata = [Self.idMetadataKey: .string(entry.id)]
        if let bearerToken { metadata.addString("Bearer \(bearerToken)", forKey: "authorization") }
        _ = try await image.annotate(request, metadata: metadata, options: options)
        confirmed.append(entry.seq)
      } catch {
        return Delivery(confirmed: confirmed, failure: "Annotate on \(description) failed: \(error)")
      }
    }
    return Delivery(confirmed: confirmed, failure: nil)
  }
}
