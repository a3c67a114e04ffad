import Crypto
import Foundation

/// The HTTP upstream's signature headers (docs/annotations-upstream.md): HMAC-SHA256 with a shared
/// secret over the signing time and the body's MD5, so the upstream knows the batch came from us unaltered.
public struct RequestSigner: Sendable {
  public static let timestampHeader = "X-Relay-Timestamp"
  public static let md5Header = "X-Relay-Content-MD5"
  public static let signatureHeader = "X-Relay-Signature"

  private let key: SymmetricKey

  public init(secret: String) {
    key = SymmetricKey(data: Data(secret.utf8))
  }

  public func headers(body: Data, timestampMs: Int64) -> [String: String] {
    let md5 = Insecure.MD5.hash(data: body).hex
    let signature = HMAC<SHA256>.authenticationCode(for: Data("\(timestampMs)\n\(md5)".utf8), using: key)
    return [
      Self.timestampHeader: "\(timestampMs)",
      Self.md5Header: md5,
      Self.signatureHeader: Data(signature).hex,
    ]
  }
}

extension Sequence where Element == UInt8 {
  var hex: String { map { String(format: "%02x", $0) }.joined() }
}
