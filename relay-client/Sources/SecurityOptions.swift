import ArgumentParser
import Foundation
import RelayClient

/// TLS and the bearer token, shared by every subcommand that talks to a server.
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

  func validate() throws {
    if (tlsCert == nil) != (tlsKey == nil) {
      throw ValidationError("--tls-cert and --tls-key go together: the client certificate and its private key, both PEM")
    }
    for (flag, path) in [("--tls-ca", tlsCa), ("--tls-cert", tlsCert), ("--tls-key", tlsKey), ("--token-file", tokenFile)] {
      if let path, !FileManager.default.isReadableFile(atPath: path) {
        throw ValidationError("\(flag) \(path): no such readable file")
      }
    }
  }

  func make() throws -> ClientSecurity {
    var security = ClientSecurity()
    if tls || tlsCa != nil || tlsServerName != nil || tlsCert != nil {
      security.tls = .init(caFile: tlsCa, serverName: tlsServerName, certificateFile: tlsCert, privateKeyFile: tlsKey)
    }
    do {
      security.bearerToken = try tokenFile.map { try ClientSecurity.token(inFile: $0) }
    } catch {
      throw ValidationError("\(error)")
    }
    return security
  }
}
