import Foundation
import JWTKit

/// Verifies bearer tokens that are JWTs signed by the `--jwt-public-key` key (ES256, RS256 or EdDSA).
/// `sub` names the caller, `roles` lists its roles and an optional `devices` its device patterns;
/// `exp` is required and `nbf` honoured.
public struct JWTAuthority: Sendable {
  private let keys: JWTKeyCollection
  public let algorithm: String

  public init(publicKeyFile path: String) async throws(JWTKeyError) {
    guard let data = FileManager.default.contents(atPath: path), let pem = String(data: data, encoding: .utf8) else {
      throw .unreadable(path: path)
    }
    let keys = JWTKeyCollection()
    if let key = try? ES256PublicKey(pem: pem) {
      await keys.add(ecdsa: key)
      algorithm = "ES256"
    } else if let key = try? EdDSA.PublicKey(pem: pem) {
      await keys.add(eddsa: key)
      algorithm = "EdDSA"
    } else if let key = try? Insecure.RSA.PublicKey(pem: pem) {
      await keys.add(rsa: key, digestAlgorithm: .sha256)
      algorithm = "RS256"
    } else {
      throw .unsupported(path: path)
    }
    self.keys = keys
  }

  /// The token's grant, or why it is refused (for the server's log, not the caller).
  func grant(for token: String) async -> Result<Grant, AuthProblem> {
    let claims: RelayClaims
    do {
      claims = try await keys.verify(token, as: RelayClaims.self)
    } catch {
      return .failure(AuthProblem("JWT refused: \(error)"))
    }
    var roles = Set<Role>()
    for name in claims.roles {
      guard let role = Role(rawValue: name.lowercased()) else { return .failure(AuthProblem("JWT names unknown role \"\(name)\"")) }
      roles.insert(role)
    }
    return .success(Grant(
      identity: "jwt:\(claims.sub.value)", roles: roles, devices: (claims.devices ?? []).map(DevicePattern.init)))
  }

  /// A compact JWS: three base64url parts.
  static func looksLikeJWT(_ token: String) -> Bool { token.split(separator: ".", omittingEmptySubsequences: false).count == 3 }
}

struct RelayClaims: JWTPayload {
  var sub: SubjectClaim
  var exp: ExpirationClaim
  var nbf: NotBeforeClaim?
  var roles: [String]
  var devices: [String]?

  func verify(using algorithm: some JWTAlgorithm) async throws {
    try exp.verifyNotExpired()
    try nbf?.verifyNotBefore()
  }
}

public enum JWTKeyError: Error, CustomStringConvertible {
  case unreadable(path: String)
  case unsupported(path: String)

  public var description: String {
    switch self {
    case .unreadable(let path): return "cannot read --jwt-public-key \(path)"
    case .unsupported(let path):
      return "--jwt-public-key \(path) is not a PEM public key of a kind this server verifies (ES256 P-256, Ed25519 or RSA of at least 2048 bits)"
    }
  }
}
