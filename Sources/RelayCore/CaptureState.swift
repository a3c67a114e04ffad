/// What a client says about its camera; ListStreams shows it.
public enum CaptureState: String, Sendable {
  case running
  case reconnecting
  case failed
  case stopped
}
