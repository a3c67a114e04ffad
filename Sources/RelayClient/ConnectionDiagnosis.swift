import Foundation
import GRPCCore
import NIOCore
import NIOPosix
import NIOSSL
import RelayCore
import X509

/// Why a connection attempt failed, in one line a person can act on. TLS failures are named by cause
/// (the server's certificate expired, names another host, comes from an unknown CA; the server speaks
/// plaintext, or wants a client certificate); BoringSSL only says "verify failed", so for that case a
/// probe fetches the certificate the server presents and the reason is read off it.
enum ConnectionDiagnosis {
  static func reason(_ error: any Error, server: HostPort, security: ClientSecurity) async -> String {
    let text = chain(error)
    if let tls = security.tls {
      if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("failedToValidateHostname") {
        let presented = await TLSProbe.certificates(of: server, serverName: tls.serverName)
        return "TLS: " + certificateProblem(presented, server: server, tls: tls)
      }
      if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") || text.contains("PACKET_LENGTH_TOO_LONG") {
        return "TLS: the server answered in plaintext, not TLS; drop --tls, or start relay-server with --tls-cert/--tls-key"
      }
      if text.contains("CERTIFICATE_REQUIRED") || (tls.certificateFile == nil && text.contains("HANDSHAKE_FAILURE")) {
        return "TLS: the server requires a client certificate (mTLS); pass --tls-cert and --tls-key"
      }
      if text.contains("UNKNOWN_CA") || text.contains("BAD_CERTIFICATE") || text.contains("CERTIFICATE_UNKNOWN")
        || text.contains("DECRYPT_ERROR") || text.contains("HANDSHAKE_FAILURE")
      {
        return "TLS: the server refused our client certificate \(tls.certificateFile ?? ""): it must be signed by the CA the server trusts (its --tls-client-ca)"
      }
    } else if text.contains("connection preface") {
      // A TLS server hangs up on a plaintext HTTP/2 preface; a probe tells that from a crashed server.
      if await TLSProbe.certificates(of: server, serverName: nil) != nil {
        return "the server expects TLS: pass --tls (and --tls-ca FILE for a private CA)"
      }
    }
    return message(error)
  }

  private static func message(_ error: any Error) -> String {
    guard let rpc = error as? RPCError else { return "\(error)" }
    if let cause = rpc.cause { return "\(rpc.message) (\(cause))" }
    return rpc.message
  }

  /// Every error in the cause chain, described.
  private static func chain(_ error: any Error) -> String {
    var parts: [String] = []
    var next: (any Error)? = error
    while let current = next, parts.count < 8 {
      parts.append(String(reflecting: current))
      if let rpc = current as? RPCError {
        next = rpc.cause
      } else if let runtime = current as? RuntimeError {
        next = runtime.cause
      } else {
        next = nil
      }
    }
    return parts.joined(separator: " | ")
  }

  private static func certificateProblem(_ presented: [NIOSSLCertificate]?, server: HostPort, tls: ClientSecurity.TLS) -> String {
    let trust = tls.caFile.map { "--tls-ca \($0)" } ?? "the system trust store"
    guard let first = presented?.first, let der = try? first.toDERBytes(), let leaf = try? Certificate(derEncoded: der) else {
      return "the server's certificate did not verify against \(trust)"
    }
    let now = Date()
    if now > leaf.notValidAfter {
      return "the server's certificate (\(leaf.subject)) expired on \(leaf.notValidAfter); renew it on the server"
    }
    if now < leaf.notValidBefore {
      return "the server's certificate (\(leaf.subject)) is not valid before \(leaf.notValidBefore); check both clocks"
    }
    // As BoringSSL's check: the name (--tls-server-name, else a host name) against the DNS SANs, or the
    // address we connected to against the IP SANs.
    let expected = tls.serverName ?? server.host
    let names = CertificateNames(leaf)
    if !names.matches(expected) && !names.matches(server.host) {
      return "the server's certificate is not valid for \(expected) (it names \(names.listed)); connect by one of those names or pass --tls-server-name"
    }
    return "the server's certificate is signed by an unknown CA (issuer \(leaf.issuer)), not one in \(trust); pass --tls-ca with the CA that signed it"
  }
}

/// The DNS names and addresses in a certificate's subject alternative names (CN when there are none).
struct CertificateNames {
  var dns: [String] = []
  var addresses: [[UInt8]] = []
  var commonNames: [String] = []

  init(_ certificate: Certificate) {
    for name in (try? certificate.extensions.subjectAlternativeNames) ?? SubjectAlternativeNames([]) {
      switch name {
      case .dnsName(let value): dns.append(value.lowercased())
      case .ipAddress(let value): addresses.append(Array(value.bytes))
      default: break
      }
    }
    for rdn in certificate.subject {
      for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
        if let name = String(attribute.value) { commonNames.append(name) }
      }
    }
  }

  var listed: String {
    let all = dns + addresses.map(Self.format) + (dns.isEmpty && addresses.isEmpty ? commonNames.map { "CN=\($0)" } : [])
    return all.isEmpty ? "no name" : all.joined(separator: ", ")
  }

  func matches(_ host: String) -> Bool {
    if let address = Self.parse(address: host) { return addresses.contains(address) }
    let host = host.lowercased()
    return dns.contains { name in
      if name == host { return true }
      guard name.hasPrefix("*.") else { return false }
      let suffix = name.dropFirst(1)
      return host.hasSuffix(suffix) && !host.dropLast(suffix.count).contains(".")
    }
  }

  static func parse(address: String) -> [UInt8]? {
    var v4 = in_addr()
    if inet_pton(AF_INET, address, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, address, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
    return nil
  }

  static func format(_ bytes: [UInt8]) -> String {
    bytes.count == 4 ? bytes.map(String.init).joined(separator: ".") : bytes.map { String(format: "%02x", $0) }.joined()
  }
}

/// Fetches the certificates a server presents, without trusting them (the handshake is then failed on
/// purpose). Only used to explain a failure; verification stays BoringSSL's.
enum TLSProbe {
  static func certificates(of server: HostPort, serverName: String?) async -> [NIOSSLCertificate]? {
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.certificateVerification = .noHostnameVerification
    configuration.applicationProtocols = ["h2"]
    guard let context = try? NIOSSLContext(configuration: configuration) else { return nil }
    let isAddress = CertificateNames.parse(address: server.host) != nil
    let sni = serverName ?? (isAddress ? nil : server.host)
    let captured = Locked<[NIOSSLCertificate]?>(nil)
    do {
      let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connectTimeout(.seconds(1))
        .channelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            let handler = try NIOSSLClientHandler(
              context: context, serverHostname: sni,
              customVerificationCallback: { (certificates: [NIOSSLCertificate], promise: EventLoopPromise<NIOSSLVerificationResult>) in
                captured.value = certificates
                promise.succeed(NIOSSLVerificationResult.failed)
              })
            try channel.pipeline.syncOperations.addHandler(handler)
          }
        }
        .connect(host: server.host, port: server.port).get()
      channel.eventLoop.scheduleTask(in: TimeAmount.seconds(1)) { channel.close(promise: nil) }
      try? await channel.closeFuture.get()
    } catch {
      return nil
    }
    return captured.value
  }
}
