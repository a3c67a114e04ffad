/// Keeps the most recent latency samples (bounded) and answers percentiles over them.
public struct LatencySamples: Sendable {
  private var samples: [Double] = []
  private var next = 0
  public let capacity: Int

  public init(capacity: Int = 4096) {
    self.capacity = capacity
    samples.reserveCapacity(capacity)
  }

  public var count: Int { samples.count }

  public mutating func record(_ value: Double) {
    if samples.count < capacity {
      samples.append(value)
    } else {
      samples[next] = value
      next = (next + 1) % capacity
    }
  }

  /// Nearest-rank percentile, `p` in 0...100; nil with no samples.
  public func percentile(_ p: Double) -> Double? {
    guard !samples.isEmpty else { return nil }
    let sorted = samples.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
  }
}
