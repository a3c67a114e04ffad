import GRPCCore
import Metrics

/// Refused calls (gRPC and HTTP), for /metrics.
public final class AuthMetrics: Sendable {
  private let unauthenticated = Counter(label: "framerelay_auth_failures_total", dimensions: [("reason", "unauthenticated")])
  private let permissionDenied = Counter(
    label: "framerelay_auth_failures_total", dimensions: [("reason", "permission_denied")])

  public init() {}

  func refused(_ code: RPCError.Code) {
    (code == .unauthenticated ? unauthenticated : permissionDenied).increment()
  }
}
