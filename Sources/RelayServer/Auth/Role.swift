/// What a caller may do. Each gRPC method needs exactly one role (`MethodRoles`); the HTTP side's
/// `/metrics` needs `metrics`.
public enum Role: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
  /// Ingest, any protocol: FrameRelay Publish, the minimal protocol's Analyse, AVA ProcessMediaStream.
  case publish
  /// VideoLatestImage, VideoBufferedImage, VideoProbe, ListStreams, SystemTime.
  case consume
  case annotate
  /// Proxy (RTMP passthrough) and Storage (recording).
  case control
  case metrics

  public var description: String { rawValue }

  /// "publish,consume" → roles, or the word that is not one.
  static func parseList(_ text: some StringProtocol) -> Result<Set<Role>, AuthProblem> {
    var roles = Set<Role>()
    for word in text.split(separator: ",") {
      guard let role = Role(rawValue: word.lowercased()) else {
        return .failure(AuthProblem("unknown role \"\(word)\" (roles: \(Role.allCases.map(\.rawValue).joined(separator: ", ")))"))
      }
      roles.insert(role)
    }
    return roles.isEmpty ? .failure(AuthProblem("no role given")) : .success(roles)
  }
}

/// A reason, for a log line or an error message.
struct AuthProblem: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
