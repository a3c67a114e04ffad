import GRPCCore
import RelayProtocol

/// The standard gRPC health service: SERVING while the server runs.
struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
  func check(
    request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext
  ) async throws -> Grpc_Health_V1_HealthCheckResponse {
    guard Self.knownServices.contains(request.service) else {
      throw RPCError(code: .notFound, message: "unknown service \"\(request.service)\"")
    }
    return .with { $0.status = .serving }
  }

  func watch(
    request: Grpc_Health_V1_HealthCheckRequest,
    response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    let known = Self.knownServices.contains(request.service)
    try await response.write(.with { $0.status = known ? .serving : .serviceUnknown })
    // The status never changes while the process lives: hold the stream open until the caller leaves.
    while !Task.isCancelled {
      try await Task.sleep(for: .seconds(3600))
    }
  }

  static let knownServices: Set<String> = [
    "", "framerelay.v1.FrameRelay", "chrys.cloud.videostreaming.v1beta1.Image",
  ]
}
