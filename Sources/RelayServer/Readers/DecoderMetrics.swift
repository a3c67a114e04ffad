import Metrics

/// What the live decoders report through swift-metrics: packets decoded and corrupt, decode time (a
/// histogram and a running total), and jumps to the live edge.
final class DecoderMetrics: Sendable {
  private let decoded = Counter(label: "framerelay_packets_decoded_total")
  private let corrupt = Counter(label: "framerelay_packets_corrupt_total")
  private let jumps = Counter(label: "framerelay_decoder_jumps_total")
  private let decodeSeconds = FloatingPointCounter(label: "framerelay_decode_seconds_total")
  private let decodeTime = Timer(label: "framerelay_decode_duration_seconds")

  func recordDecode(nanoseconds: UInt64, corrupt isCorrupt: Bool) {
    decoded.increment()
    decodeSeconds.increment(by: Double(nanoseconds) / 1e9)
    decodeTime.recordNanoseconds(Int64(nanoseconds))
    if isCorrupt { corrupt.increment() }
  }

  func recordJump() { jumps.increment() }
}
