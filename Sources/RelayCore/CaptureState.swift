/// What a client says about its camera; ListStreams shows it.
public enum CaptureState: String, Sendable {
  case running
  case reconnecting
  case failed
  case stopped
}

/// Where a publisher's frames come from, as its hello says.
public enum SourceKind: Sendable {
  case rtsp, v4l2, file, testPattern, synthetic
}
