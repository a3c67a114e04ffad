import ArgumentParser
import Foundation
import RelayClient
import Settings

/// TLS and the bearer token, shared by every subcommand that talks to a server. Keys: `tls`,
/// `tls.ca`, `tls.serverName`, `tls.cert`, `tls.key`, `tokenFile`.
struct SecurityOptions: ParsableArguments {
  @Flag(help: "Use TLS, verifying the server against the system trust store.")
  var tls = false

  @Option(help: "PEM CA that signed the server's certificate (a private CA); implies --tls.")
  var tlsCa: String?

  @Option(help: "The name the server's certificate must carry (and the SNI sent) when --server is an address; implies --tls.")
  var tlsServerName: String?

  @Option(help: "PEM client certificate (chain) for a server that requires mTLS; implies --tls.")
  var tlsCert: String?

  @Option(help: "PEM private key of --tls-cert.")
  var tlsKey: String?

  @Option(help: "File whose first line is the bearer token sent with every call (never on the command line, which ps shows).")
  var tokenFile: String?

  func read(_ settings: Settings) -> ClientSecurity {
    let enabled = settings.bool("tls", flag: tls ? true : nil, default: false)
    let ca = settings.string("tls.ca", flag: tlsCa, default: nil)
    let serverName = settings.string("tls.serverName", flag: tlsServerName, default: nil)
    let cert = settings.string("tls.cert", flag: tlsCert, default: nil)
    let key = settings.string("tls.key", flag: tlsKey, default: nil)
    let tokenFile = settings.string("tokenFile", flag: tokenFile, default: nil)
    var security = ClientSecurity()
    if (cert == nil) != (key == nil) {
      settings.problem("tls.cert", "tls.cert (--tls-cert) and tls.key (--tls-key) go together: the client certificate and its private key, both PEM")
    }
    for (name, path) in [("tls.ca", ca), ("tls.cert", cert), ("tls.key", key), ("tokenFile", tokenFile)] {
      if let path, !FileManager.default.isReadableFile(atPath: path) { settings.problem(name, "\(path): no such readable file") }
    }
    if enabled || ca != nil || serverName != nil || cert != nil {
      security.tls = .init(caFile: ca, serverName: serverName, certificateFile: cert, privateKeyFile: key)
    }
    if let tokenFile, FileManager.default.isReadableFile(atPath: tokenFile) {
      do { security.bearerToken = try ClientSecurity.token(inFile: tokenFile) } catch {
        settings.problem("tokenFile", "\(error)")
      }
    }
    return security
  }
}
