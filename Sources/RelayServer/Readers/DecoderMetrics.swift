import Metrics

/// What the live decoders report through swift-metrics: packets decoded and corrupt, decode time (a
/// histogram and a running total), how long after it was stored a packet's picture was ready, and
/// jumps to the live edge.
final class DecoderMetrics: Sendable {
  private let decoded = Counter(label: "framerelay_packets_decoded_total")
  private let corrupt = Counter(label: "framerelay_packets_corrupt_total")
  private let jumps = Counter(label: "framerelay_decoder_jumps_total")
  private let decodeSeconds = FloatingPointCounter(label: "framerelay_decode_seconds_total")
  private let decodeTime = Timer(label: "framerelay_decode_duration_seconds")
  private let decodeLag = Timer(label: DecoderMetrics.decodeLagLabel)

  static let decodeLagLabel = "framerelay_decode_lag_seconds"

  func recordDecode(nanoseconds: UInt64, corrupt isCorrupt: Bool) {
    decoded.increment()
    decodeSeconds.increment(by: Double(nanoseconds) / 1e9)
    decodeTime.recordNanoseconds(Int64(nanoseconds))
    if isCorrupt { corrupt.increment() }
  }

  /// A live picture is ready: stored -> decoded, waiting in the subscription included.
  func recordReady(_ frame: LiveFrame) {
    guard frame.storedNs > 0, frame.decodedNs >= frame.storedNs else { return }
    decodeLag.recordNanoseconds(Int64(frame.decodedNs - frame.storedNs))
  }

  func recordJump() { jumps.increment() }
}
