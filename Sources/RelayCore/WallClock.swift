import Foundation

public enum WallClock {
  /// Milliseconds since the Unix epoch: the one unit every timestamp of the Image API uses.
  public static func nowMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
  }

  /// CPU time the calling thread has used, in nanoseconds: what a piece of work cost, whatever else
  /// the machine was doing meanwhile.
  public static func threadCPUNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }

  /// A monotonic reading in nanoseconds, for durations and round-trip times.
  public static func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }
}

/// The difference between a server's clock and ours, from one request/response exchange
/// (Cristian's algorithm: assume the server read its clock half-way through the round trip).
public struct ClockOffset: Equatable, Sendable {
  public var offsetMs: Int64
  public var roundTripMs: Int64

  public init(offsetMs: Int64, roundTripMs: Int64) {
    self.offsetMs = offsetMs
    self.roundTripMs = roundTripMs
  }

  public init(sentAtMs: Int64, serverTimeMs: Int64, receivedAtMs: Int64) {
    let roundTrip = max(0, receivedAtMs - sentAtMs)
    self.roundTripMs = roundTrip
    self.offsetMs = serverTimeMs - (sentAtMs + roundTrip / 2)
  }
}
