import GRPCNIOTransportHTTP2
import Logging
import NIOCertificateReloading
import NIOSSL
import RelayCore

/// TLS and authentication, built once from the configuration: the certificate reloader (a Service of
/// its own), the transport security of every listener, the HTTP side's TLS context, and who may call.
struct ServerSecurity: Sendable {
  let reloader: TimedCertificateReloader?
  let clientCA: String?
  let authenticator: Authenticator
  let refusals: RefusalGate
  let metrics: AuthMetrics

  static func make(_ configuration: ServerConfiguration, logger: Logger) async throws -> ServerSecurity {
    let reloader = try configuration.tls.map { try makeReloader($0, logger: logger) }
    let tokens = try configuration.tokensFile.map { try TokenStore(path: $0) }
    let jwt = try await configuration.jwtPublicKeyFile.asyncMap { try await JWTAuthority(publicKeyFile: $0) }
    let metrics = AuthMetrics()
    return ServerSecurity(
      reloader: reloader, clientCA: configuration.tls?.clientCA,
      authenticator: Authenticator(tokens: tokens, jwt: jwt, clientCertificates: configuration.tls?.clientCA != nil),
      refusals: RefusalGate(metrics: metrics, logger: logger), metrics: metrics)
  }

  var interceptor: AuthInterceptor { AuthInterceptor(authenticator: authenticator, gate: refusals) }

  /// TLS (or mTLS) from the reloader, so a renewed certificate reaches new connections.
  func grpcTransportSecurity() throws -> HTTP2ServerTransport.Posix.TransportSecurity {
    guard let reloader else { return .plaintext }
    guard let clientCA else { return try .tls(certificateReloader: reloader) }
    return try .mTLS(certificateReloader: reloader) { config in
      config.trustRoots = .certificates([.file(path: clientCA, format: .pem)])
      config.clientCertificateVerification = .noHostnameVerification
    }
  }

  /// The HTTP side's TLS, from the same certificate (and client CA).
  func httpTLSConfiguration() throws -> TLSConfiguration? {
    guard let reloader else { return nil }
    var tls: TLSConfiguration
    if let clientCA {
      tls = try .makeServerConfigurationWithMTLS(
        certificateReloader: reloader, trustRoots: .certificates(try NIOSSLCertificate.fromPEMFile(clientCA)))
    } else {
      tls = try .makeServerConfiguration(certificateReloader: reloader)
    }
    tls.applicationProtocols = ["http/1.1"]
    return tls
  }

  private static func makeReloader(_ files: ServerConfiguration.TLSFiles, logger: Logger) throws -> TimedCertificateReloader {
    let lastFailure = Locked<String?>(nil)
    let configuration = TimedCertificateReloader.Configuration(
      refreshInterval: files.reloadInterval,
      certificateSource: .init(location: .file(path: files.certificateChain), format: .pem),
      privateKeySource: .init(location: .file(path: files.privateKey), format: .pem)
    ) { configuration in
      configuration.onCertificateLoaded = { diff in
        lastFailure.value = nil
        guard let previous = diff.previousX509CertificateChain, previous != diff.currentX509CertificateChain else { return }
        logger.notice(
          "TLS certificate reloaded; new connections get it, open ones keep theirs",
          metadata: ["subject": "\(diff.currentX509CertificateChain.first?.subject.description ?? "")",
                     "not_after": "\(diff.currentX509CertificateChain.first?.notValidAfter.description ?? "")"])
      }
      configuration.onCertificateLoadFailed = { failure in
        let message = "\(failure.error)"
        let isNew = lastFailure.withLock { last in
          defer { last = message }
          return last != message
        }
        if isNew {
          logger.warning(
            "cannot reload the TLS certificate from \(files.certificateChain) and \(files.privateKey): \(message); still serving the one loaded before")
        }
      }
    }
    do {
      return try TimedCertificateReloader.makeReloaderValidatingSources(configuration: configuration)
    } catch {
      throw ServerSecurityError.certificate("cannot load --tls-cert \(files.certificateChain) / --tls-key \(files.privateKey): \(error)")
    }
  }
}

enum ServerSecurityError: Error, CustomStringConvertible {
  case certificate(String)
  var description: String {
    switch self { case .certificate(let message): message }
  }
}

extension Optional {
  fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
    guard let self else { return nil }
    return try await transform(self)
  }
}
