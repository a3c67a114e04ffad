import Synchronization

/// Counts since start, for /metrics.
public final class AnnotationMetrics: Sendable {
  public let stored = Atomic<Int>(0)
  public let storeFailures = Atomic<Int>(0)
  public let forwarded = Atomic<Int>(0)
  public let forwardFailures = Atomic<Int>(0)

  public init() {}
}
