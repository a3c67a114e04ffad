import Foundation

/// A stop request one thread can wait on while sleeping (a back-off between reconnects): `wait`
/// returns as soon as `stop` is called instead of polling a flag.
public final class StopSignal: @unchecked Sendable {
  private let condition = NSCondition()  // guards `stopped`
  private var stopped = false

  public init() {}

  public func stop() {
    condition.lock()
    stopped = true
    condition.broadcast()
    condition.unlock()
  }

  public var isStopped: Bool {
    condition.lock()
    defer { condition.unlock() }
    return stopped
  }

  /// Sleeps for `seconds` unless stopped first; returns whether it was stopped.
  @discardableResult
  public func wait(seconds: Double) -> Bool {
    let deadline = Date(timeIntervalSinceNow: seconds)
    condition.lock()
    defer { condition.unlock() }
    while !stopped && condition.wait(until: deadline) {}
    return stopped
  }
}
