import Metrics
import RelayCore

/// Per protocol and device, for /metrics: frames in (received), acks written, and the time from a
/// frame's arrival to its ack going out (the server's share of the publisher's ack round trip).
struct IngestMetrics: Sendable {
  private let framesIn: Counter
  private let acks: Counter
  private let ackLatency: Metrics.Timer

  init(protocol name: String, device: DeviceID) {
    let dimensions = [("protocol", name), ("device", device.rawValue)]
    framesIn = Counter(label: "framerelay_frames_in_total", dimensions: dimensions)
    acks = Counter(label: "framerelay_frames_acked_total", dimensions: dimensions)
    ackLatency = Metrics.Timer(label: "framerelay_ack_latency_seconds", dimensions: [("protocol", name)])
  }

  /// Call when a frame arrives; returns when it arrived, for `acked(since:)`.
  func received() -> UInt64 {
    framesIn.increment()
    return WallClock.monotonicNs()
  }

  func acked(since arrivedNs: UInt64) {
    acks.increment()
    ackLatency.recordNanoseconds(Int64(WallClock.monotonicNs() - arrivedNs))
  }
}
