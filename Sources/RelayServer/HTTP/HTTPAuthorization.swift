import Hummingbird
import NIOCore
import NIOSSL
import X509

/// The HTTP side's check: the same credentials as gRPC (`Authorization: Bearer …`, or the verified
/// client certificate), and the role the path needs.
struct HTTPAuthorization: Sendable {
  let authenticator: Authenticator
  let gate: RefusalGate

  enum Outcome: Sendable {
    case allowed(Grant)
    case refused(HTTPResponse.Status, String)
  }

  func check(_ role: Role, path: String, header: String?, channel: any Channel) async -> Outcome {
    let peer = PeerName.of(channel.remoteAddress)
    let names = await Self.certificateNames(channel)
    switch await authenticator.authenticate(bearer: Authenticator.bearer(in: header), certificateNames: names) {
    case .failure(let refusal):
      let error = await gate.refuse(
        .unauthenticated, message: refusal.message, reason: refusal.reason, peer: peer, method: "GET \(path)")
      return .refused(.unauthorized, error.message)
    case .success(let grant) where !grant.roles.contains(role):
      let error = await gate.refuse(
        .permissionDenied, message: "GET \(path) needs the \"\(role)\" role, which this caller lacks",
        reason: "\(grant.identity) lacks \(role)", peer: peer, method: "GET \(path)")
      return .refused(.forbidden, error.message)
    case .success(let grant):
      return .allowed(grant)
    }
  }

  /// The verified client certificate's names (mTLS), as gRPC's listeners see them.
  private static func certificateNames(_ channel: any Channel) async -> [String] {
    guard let peer = try? await channel.nioSSL_peerCertificate().get(), let der = try? peer.toDERBytes(),
      let certificate = try? Certificate(derEncoded: der)
    else { return [] }
    return certificate.identityNames
  }
}
