import Foundation
import RelayCore
import SwiftProtobuf

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// POSTs a batch as `{"data": [...]}`: each item the AnnotateRequest in proto3 JSON with the proto's
/// field names, plus `annotation_id`. A 2xx answer confirms the whole batch.
public struct HTTPUpstream: AnnotationUpstream {
  public let url: URL
  let signer: RequestSigner?
  let session: URLSession

  public init(url: URL, secret: String?, timeout: Duration) {
    self.url = url
    self.signer = secret.map(RequestSigner.init(secret:))
    let configuration = URLSessionConfiguration.ephemeral
    let seconds = timeout / .seconds(1)
    configuration.timeoutIntervalForRequest = seconds
    configuration.timeoutIntervalForResource = seconds
    self.session = URLSession(configuration: configuration)
  }

  public var description: String { "\(url.absoluteString)\(signer == nil ? "" : " (signed)")" }

  public func run(_ body: @escaping @Sendable () async -> Void) async throws { await body() }

  public func deliver(_ batch: [OutboxEntry]) async -> Delivery {
    let body: Data
    do { body = try Self.body(batch) } catch {
      return Delivery(confirmed: [], failure: "cannot encode the batch: \(error)")
    }
    var request = URLRequest(url: url)
    request.httpMethod = "POST"
    request.httpBody = body
    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    for (name, value) in signer?.headers(body: body, timestampMs: WallClock.nowMs()) ?? [:] {
      request.setValue(value, forHTTPHeaderField: name)
    }
    do {
      let (answer, response) = try await post(request)
      let status = (response as? HTTPURLResponse)?.statusCode ?? 0
      guard (200..<300).contains(status) else {
        let text = String(decoding: answer.prefix(200), as: UTF8.self)
        return Delivery(confirmed: [], failure: "HTTP \(status) from \(url.absoluteString): \(text)")
      }
      return Delivery(confirmed: batch.map(\.seq), failure: nil)
    } catch {
      return Delivery(confirmed: [], failure: "POST \(url.absoluteString) failed: \(error.localizedDescription)")
    }
  }

  /// The completion-handler form on purpose: cancelling FoundationNetworking's async `data(for:)` while
  /// its answer is arriving deadlocks (seen on Linux at server shutdown). The request timeout bounds it.
  private func post(_ request: URLRequest) async throws -> (Data, URLResponse) {
    try await withCheckedThrowingContinuation { continuation in
      session.dataTask(with: request) { data, response, error in
        if let error {
          continuation.resume(throwing: error)
        } else if let response {
          continuation.resume(returning: (data ?? Data(), response))
        } else {
          continuation.resume(throwing: URLError(.badServerResponse))
        }
      }.resume()
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
