import Foundation

/// How relay-client reaches a server: TLS (and a client certificate for mTLS), and the bearer token
/// sent with every call.
public struct ClientSecurity: Sendable {
  public struct TLS: Sendable {
    /// PEM CA for a private PKI; nil: the system trust store.
    public var caFile: String?
    /// The name the server's certificate must carry (and SNI) when connecting by address.
    public var serverName: String?
    /// Client certificate (chain) and key, PEM, for servers that require mTLS.
    public var certificateFile: String?
    public var privateKeyFile: String?

    public init(caFile: String? = nil, serverName: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil) {
      self.caFile = caFile
      self.serverName = serverName
      self.certificateFile = certificateFile
      self.privateKeyFile = privateKeyFile
    }
  }

  public var tls: TLS?
  public var bearerToken: String?

  public init(tls: TLS? = nil, bearerToken: String? = nil) {
    self.tls = tls
    self.bearerToken = bearerToken
  }

  /// The first non-blank line of a token file (never a flag: `ps` shows the command line).
  public static func token(inFile path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
      throw ClientSecurityError("cannot read --token-file \(path)")
    }
    guard let line = text.split(whereSeparator: \.isNewline).map({ $0.trimmingCharacters(in: .whitespaces) })
      .first(where: { !$0.isEmpty && !$0.hasPrefix("#") })
    else {
      throw ClientSecurityError("--token-file \(path) holds no token")
    }
    return line
  }
}

public struct ClientSecurityError: Error, CustomStringConvertible {
  public let description: String
  init(_ description: String) { self.description = description }
}
