import Foundation
import X509

/// Turns what a caller presents (a bearer token, a verified client certificate) into a `Grant`.
/// Without tokens, JWT or client certificates configured, every caller gets everything (the server
/// only starts that way on loopback, or with --insecure).
public struct Authenticator: Sendable {
  public let tokens: TokenStore?
  public let jwt: JWTAuthority?
  /// Client certificates are required and verified by the TLS layer (--tls-client-ca).
  public let clientCertificates: Bool

  public init(tokens: TokenStore?, jwt: JWTAuthority?, clientCertificates: Bool) {
    self.tokens = tokens
    self.jwt = jwt
    self.clientCertificates = clientCertificates
  }

  public var isConfigured: Bool { tokens != nil || jwt != nil || clientCertificates }

  /// Why a caller is not authenticated: `reason` is for the log; the caller only hears `message`.
  struct Refusal: Error {
    let message: String
    let reason: String
  }

  func authenticate(bearer: String?, certificateNames: [String]) async -> Result<Grant, Refusal> {
    guard isConfigured else { return .success(.everything) }
    if let bearer {
      if let grant = tokens?.current.grant(forToken: bearer) { return .success(grant) }
      if let jwt, JWTAuthority.looksLikeJWT(bearer) {
        return await jwt.grant(for: bearer).mapError { Refusal(message: Self.unknownToken, reason: $0.description) }
      }
      return .failure(Refusal(message: Self.unknownToken, reason: "unknown bearer token"))
    }
    if !certificateNames.isEmpty {
      if let grant = tokens?.current.grant(forCertificateNames: certificateNames) { return .success(grant) }
      // Client certificates alone are the configured authentication: a verified one may do everything.
      if clientCertificates && tokens == nil && jwt == nil {
        return .success(Grant(identity: "cert:\(certificateNames[0])", roles: Set(Role.allCases)))
      }
      return .failure(Refusal(
        message: "this client certificate has no rights here and no bearer token was sent",
        reason: "certificate \(certificateNames.joined(separator: ",")) is not listed"))
    }
    return .failure(Refusal(
      message: "this server needs a bearer token (metadata authorization: Bearer TOKEN)", reason: "no token"))
  }

  static let unknownToken = "the bearer token is not valid here (unknown, expired or not yet valid)"

  /// `authorization: Bearer TOKEN` (the scheme's case does not matter).
  static func bearer(in header: String?) -> String? {
    guard let header else { return nil }
    let parts = header.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    let token = parts[1].trimmingCharacters(in: .whitespaces)
    return token.isEmpty ? nil : token
  }
}

extension Certificate {
  /// The names a rule `cert:NAME` can match: the subject's common names, then its DNS SANs.
  var identityNames: [String] {
    var names: [String] = []
    for rdn in subject {
      for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
        if let name = String(attribute.value) { names.append(name) }
      }
    }
    if let sans = try? extensions.subjectAlternativeNames {
      for name in sans {
        if case .dnsName(let dns) = name { names.append(dns) }
      }
    }
    return names
  }
}
