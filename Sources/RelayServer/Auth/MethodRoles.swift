import GRPCCore

/// The role each gRPC method needs. A method missing here is refused, so a new one cannot slip through
/// unprotected; the health check needs none (load balancers and probes call it).
enum MethodRoles {
  enum Requirement: Equatable {
    case open
    case role(Role)
    case unlisted
  }

  static func requirement(for method: MethodDescriptor) -> Requirement {
    if method.service.fullyQualifiedService == "grpc.health.v1.Health" { return .open }
    guard let role = table[method.service.fullyQualifiedService]?[method.method] else { return .unlisted }
    return .role(role)
  }

  private static let table: [String: [String: Role]] = [
    "framerelay.v1.FrameRelay": ["Publish": .publish],
    "video": ["Analyse": .publish],
    "microsoft.azure.media.live_video_analytics.extensibility.grpc.v1.MediaGraphExtension": [
      "ProcessMediaStream": .publish
    ],
    "chrys.cloud.videostreaming.v1beta1.Image": [
      "VideoLatestImage": .consume, "VideoBufferedImage": .consume, "VideoProbe": .consume,
      "ListStreams": .consume, "SystemTime": .consume, "Annotate": .annotate, "Proxy": .control,
      "Storage": .control,
    ],
  ]
}
