import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RelayCore

/// Authenticates every call and checks the role its method needs, then runs the handler with the
/// caller's `Access.grant` set (device checks happen in the services, which know the device). Refused
/// calls are answered only after the peer's throttle delay, so a flood of bad tokens slows itself down.
struct AuthInterceptor: ServerInterceptor {
  let authenticator: Authenticator
  let gate: RefusalGate

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let role: Role
    switch MethodRoles.requirement(for: context.descriptor) {
    case .open:
      return try await Access.$grant.withValue(.nothing) { try await next(request, context) }
    case .unlisted:
      throw RPCError(code: .permissionDenied, message: "\(context.descriptor) has no role assigned on this server")
    case .role(let needed):
      role = needed
    }
    let certificate = (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate
    let bearer = Authenticator.bearer(in: request.metadata[stringValues: "authorization"].first(where: { _ in true }))
    let grant: Grant
    switch await authenticator.authenticate(bearer: bearer, certificateNames: certificate?.identityNames ?? []) {
    case .success(let granted):
      grant = granted
    case .failure(let refusal):
      throw await gate.refuse(
        .unauthenticated, message: refusal.message, reason: refusal.reason, peer: context.remotePeer,
        method: context.descriptor.fullyQualifiedMethod)
    }
    guard grant.roles.contains(role) else {
      throw await gate.refuse(
        .permissionDenied, message: "\(context.descriptor.method) needs the \"\(role)\" role, which this caller lacks",
        reason: "\(grant.identity) lacks \(role)", peer: context.remotePeer,
        method: context.descriptor.fullyQualifiedMethod)
    }
    return try await Access.$grant.withValue(grant) {
      var response = try await next(request, context)
      // Streaming handlers run their body in the producer, after this returns: carry the grant there too.
      if case .success(var contents) = response.accepted {
        let producer = contents.producer
        contents.producer = { writer in try await Access.$grant.withValue(grant) { try await producer(writer) } }
        response.accepted = .success(contents)
      }
      return response
    }
  }
}

/// Counts, logs and delays refusals (per peer address, see FailureThrottle).
final class RefusalGate: Sendable {
  private let throttle = Locked(FailureThrottle())
  private let metrics: AuthMetrics
  private let logger: Logger

  init(metrics: AuthMetrics, logger: Logger) {
    self.metrics = metrics
    self.logger = logger
  }

  /// Waits the peer's delay and returns the error to answer with.
  func refuse(_ code: RPCError.Code, message: String, reason: String, peer: String, method: String) async -> RPCError {
    metrics.refused(code)
    let address = FailureThrottle.address(ofPeer: peer)
    let decision = throttle.withLock { $0.refused(peer: address, nowNs: Int64(WallClock.monotonicNs())) }
    if decision.log {
      logger.warning(
        "refused \(method) from \(address): \(reason)",
        metadata: ["refusals_since_last_log": "\(decision.refusalsSinceLog)", "next_delay_ms": "\(decision.delayMs)"])
    }
    try? await Task.sleep(for: .milliseconds(decision.delayMs))
    return RPCError(code: code, message: message)
  }
}
