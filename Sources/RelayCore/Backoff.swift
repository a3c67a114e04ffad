import Foundation

/// Exponential back-off with full jitter, capped: the wait before retry n (0-based).
public struct Backoff: Sendable {
  public var initialSeconds: Double
  public var maximumSeconds: Double
  public var multiplier: Double

  public init(initialSeconds: Double = 0.25, maximumSeconds: Double = 10, multiplier: Double = 2) {
    self.initialSeconds = initialSeconds
    self.maximumSeconds = maximumSeconds
    self.multiplier = multiplier
  }

  /// The upper bound of the wait before retry `attempt`.
  public func ceiling(attempt: Int) -> Double {
    min(maximumSeconds, initialSeconds * pow(multiplier, Double(min(attempt, 30))))
  }

  /// A wait drawn between half the ceiling and the ceiling, so many clients do not retry in step.
  public func delay<G: RandomNumberGenerator>(attempt: Int, using generator: inout G) -> Double {
    let ceiling = ceiling(attempt: attempt)
    return Double.random(in: (ceiling / 2)...ceiling, using: &generator)
  }

  public func delay(attempt: Int) -> Double {
    var generator = SystemRandomNumberGenerator()
    return delay(attempt: attempt, using: &generator)
  }
}
