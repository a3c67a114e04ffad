import RelayCore

/// Refused calls (gRPC and HTTP), for /metrics.
public final class AuthMetrics: Sendable {
  private let counts = Locked((unauthenticated: 0, permissionDenied: 0))

  public init() {}

  func refused(_ code: RPCError.Code) {
    counts.withLock { code == .unauthenticated ? ($0.unauthenticated += 1) : ($0.permissionDenied += 1) }
  }

  var snapshot: (unauthenticated: Int, permissionDenied: Int) { counts.value }
}

import GRPCCore
