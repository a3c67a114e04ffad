// Authentication: an input is pieces split by Fuzz.messageSeparator:
//   0: a --tokens file (parsed by TokenFile.parse; its grants looked up with pieces 1 and 2),
//   1: an `authorization` header value (Bearer TOKEN, a JWT, garbage), through Authenticator.bearer
//      and a configured Authenticator (a fixed token file and an ES256 --jwt-public-key),
//   2: a device id (checked against every grant, as services do once it is a valid device id) and the
//      name a client certificate carries,
//   3: JWT claims (JSON): when present, the harness signs them with the key the authority trusts, so
//      the claim decoding after the signature check is fuzzed too (an attacker cannot get there, but
//      a token issuer's mistakes can),
//   4: that JWT's header (JSON; empty: {"alg":"ES256","typ":"JWT"}),
//   5: a peer address (the refusal throttle's key),
//   6: a method path SERVICE/METHOD (the role table).
import Crypto
import Foundation
import CFuzzDriver
import FuzzSupport
import GRPCCore
import RelayCore

@testable import RelayServer

/// A fixed P-256 key, so seeds signed by it stay valid (scripts and seeds do not need it: the harness
/// signs piece 3 itself).
private let signingKey = try! P256.Signing.PrivateKey(rawRepresentation: Data(repeating: 0x17, count: 32))

private struct Fixture: Sendable {
  let authenticator: Authenticator
  let authority: JWTAuthority
}

nonisolated(unsafe) private var fixture: Fixture?

private func makeFixture() async -> Fixture {
  let tokens = ScratchFile("tokens")
  let hashed = TokenFile.digest("fuzz-hashed").map { String(format: "%02x", $0) }.joined()
  tokens.write(Data("fuzz-token publish,consume cam-*\nsha256:\(hashed) consume\ncert:camera-1 publish cam1\n".utf8))
  let key = ScratchFile("jwt.pem")
  key.write(Data(signingKey.publicKey.pemRepresentation.utf8))
  do {
    let authority = try await JWTAuthority(publicKeyFile: key.path)
    let store = try TokenStore(path: tokens.path)
    return Fixture(
      authenticator: Authenticator(tokens: store, jwt: authority, clientCertificates: false), authority: authority)
  } catch {
    fatalError("fixture: \(error)")
  }
}

private func text(_ data: Data) -> String { String(decoding: data, as: UTF8.self) }

private func base64URL(_ data: Data) -> String {
  data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    .replacingOccurrences(of: "=", with: "")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let pieces = Fuzz.split(Fuzz.data(start, count), on: Fuzz.messageSeparator)
  @Sendable func piece(_ index: Int) -> Data { index < pieces.count ? pieces[index] : Data() }
  Fuzz.block {
    if fixture == nil { fixture = await makeFixture() }
    let fixture = fixture!
    let header = pieces.count > 1 ? text(piece(1)) : nil
    let deviceText = text(piece(2))
    let device = try? DeviceID(validating: deviceText)
    let names = deviceText.isEmpty ? [] : [deviceText]
    var grants: [Grant] = []

    // The token file.
    switch TokenFile.parse(text(piece(0))) {
    case .success(let file):
      if let bearer = Authenticator.bearer(in: header), let grant = file.grant(forToken: bearer) { grants.append(grant) }
      if let grant = file.grant(forCertificateNames: names) { grants.append(grant) }
    case .failure(let problems):
      Fuzz.require(!problems.all.isEmpty, "a failed parse with no problem")
      for problem in problems.all { _ = problem.description }
    }

    // A configured server's authentication of the header (and the certificate name).
    let bearer = Authenticator.bearer(in: header)
    if let bearer { Fuzz.require(!bearer.isEmpty && !bearer.hasPrefix(" "), "bearer \"\(bearer)\"") }
    switch await fixture.authenticator.authenticate(bearer: bearer, certificateNames: names) {
    case .success(let grant): grants.append(grant)
    case .failure(let refusal): _ = refusal.reason
    }
    if let header, JWTAuthority.looksLikeJWT(header), case .success(let grant) = await fixture.authority.grant(for: header) {
      grants.append(grant)
    }

    // Claims the trusted key signed.
    if !piece(3).isEmpty {
      let jwtHeader = piece(4).isEmpty ? Data(#"{"alg":"ES256","typ":"JWT"}"#.utf8) : piece(4)
      let signingInput = base64URL(jwtHeader) + "." + base64URL(piece(3))
      if let signature = try? signingKey.signature(for: Data(signingInput.utf8)) {
        let token = signingInput + "." + base64URL(signature.rawRepresentation)
        if case .success(let grant) = await fixture.authority.grant(for: token) { grants.append(grant) }
      }
    }

    // What the grants allow, as a service asks once it has a valid device id.
    if let device {
      for grant in grants {
        let allowed = grant.allows(device: device.rawValue)
        if grant.roles.isEmpty { Fuzz.require(!allowed, "a grant without roles allows \(device)") }
      }
    }

    // The refusal throttle's peer key, and the role table.
    var throttle = FailureThrottle()
    let peer = FailureThrottle.address(ofPeer: text(piece(5)))
    for step in 0..<3 {
      let decision = throttle.refused(peer: peer, nowNs: Int64(step) * 1_000_000)
      Fuzz.require(decision.delayMs >= 0 && decision.delayMs <= throttle.maximumMs, "throttle delay \(decision.delayMs)")
    }
    let path = text(piece(6)).split(separator: "/", maxSplits: 1).map(String.init)
    if path.count == 2 {
      _ = MethodRoles.requirement(for: MethodDescriptor(fullyQualifiedService: path[0], method: path[1]))
    }
  }
  return 0
}

@_cdecl("FuzzAuth_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
  framerelay_fuzz_driver(argc, argv)
}
