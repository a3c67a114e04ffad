/// The best estimate of (server clock − client clock) seen during a session: the sample with the
/// smallest round trip, which leaves the least room for an asymmetric path to skew it. Samples come
/// from the hello (accepted's server time) and then from every ack that carries the server's time.
public struct ClockEstimator: Sendable, Equatable {
  public private(set) var best: ClockOffset?

  public init() {}

  /// Takes a sample; returns it when it is better than the best so far (so it is worth sending).
  public mutating func offer(_ sample: ClockOffset) -> ClockOffset? {
    if let best, sample.roundTripMs >= best.roundTripMs { return nil }
    best = sample
    return sample
  }
}
