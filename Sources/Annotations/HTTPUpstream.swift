import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import RelayCore
import SwiftProtobuf

/// POSTs a batch as `{"data": [...]}`: each item the AnnotateRequest in proto3 JSON with the proto's
/// field names, plus `annotation_id`. A 2xx answer confirms the whole batch. HTTPS verifies the
/// upstream's certificate against the system trust store, or against `caFile` when given.
public final class HTTPUpstream: AnnotationUpstream {
  public let url: URL
  let signer: RequestSigner?
  let timeout: Duration
  private let client: HTTPClient

  public init(url: URL, secret: String?, caFile: String? = nil, timeout: Duration) throws {
    self.url = url
    self.signer = secret.map(RequestSigner.init(secret:))
    self.timeout = timeout
    var tls = TLSConfiguration.makeClientConfiguration()
    if let caFile { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile)) }
    var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
    configuration.timeout = .init(connect: .init(timeout), read: .init(timeout))
    client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
  }

  public var description: String { "\(url.absoluteString)\(signer == nil ? "" : " (signed)")" }

  public func run(_ body: @escaping @Sendable () async -> Void) async throws {
    await body()
    try await client.shutdown()
  }

  public func deliver(_ batch: [OutboxEntry]) async -> Delivery {
    let body: Data
    do { body = try Self.body(batch) } catch {
      return Delivery(confirmed: [], failure: "cannot encode the batch: \(error)")
    }
    var request = HTTPClientRequest(url: url.absoluteString)
    request.method = .POST
    request.body = .bytes(ByteBuffer(bytes: body))
    request.headers.add(name: "Content-Type", value: "application/json")
    for (name, value) in signer?.headers(body: body, timestampMs: WallClock.nowMs()) ?? [:] {
      request.headers.add(name: name, value: value)
    }
    do {
      let response = try await client.execute(request, timeout: .init(timeout))
      let answer = try await response.body.collect(upTo: 1 << 16)
      guard (200..<300).contains(Int(response.status.code)) else {
        let text = String(buffer: answer).prefix(200)
        return Delivery(confirmed: [], failure: "HTTP \(response.status.code) from \(url.absoluteString): \(text)")
      }
      return Delivery(confirmed: batch.map(\.seq), failure: nil)
    } catch {
      return Delivery(confirmed: [], failure: "POST \(url.absoluteString) failed: \(error)")
    }
  }

  /// The exact bytes sent (and signed).
  static func body(_ batch: [OutboxEntry]) throws -> Data {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    var body = Data(#"{"data":["#.utf8)
    for (index, entry) in batch.enumerated() {
      if index > 0 { body.append(UInt8(ascii: ",")) }
      let request = try AnnotateRequest(serializedBytes: entry.request)
      let fields = try request.jsonString(options: options)
      body.append(contentsOf: #"{"annotation_id":"#.utf8)
      body.append(try JSONEncoder().encode(entry.id))
      // `fields` is a JSON object: splice its members in after the id.
      let members = fields.dropFirst().dropLast()
      if !members.isEmpty {
        body.append(UInt8(ascii: ","))
        body.append(contentsOf: members.utf8)
      }
      body.append(UInt8(ascii: "}"))
    }
    body.append(contentsOf: "]}".utf8)
    return body
  }
}

extension TimeAmount {
  init(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}
