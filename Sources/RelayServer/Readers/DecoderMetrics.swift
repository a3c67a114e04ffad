import Synchronization

/// Counters the live decoders keep; shown in logs now, and the base for Prometheus metrics later.
final class DecoderMetrics: Sendable {
  private let decoded = Atomic<Int>(0)
  private let corrupt = Atomic<Int>(0)
  private let jumps = Atomic<Int>(0)
  private let decodeNanoseconds = Atomic<Int>(0)

  func recordDecode(nanoseconds: UInt64, corrupt isCorrupt: Bool) {
    decoded.add(1, ordering: .relaxed)
    decodeNanoseconds.add(Int(nanoseconds), ordering: .relaxed)
    if isCorrupt { corrupt.add(1, ordering: .relaxed) }
  }

  func recordJump() { jumps.add(1, ordering: .relaxed) }

  var packetsDecoded: Int { decoded.load(ordering: .relaxed) }
  var packetsCorrupt: Int { corrupt.load(ordering: .relaxed) }
  var jumpsToLive: Int { jumps.load(ordering: .relaxed) }
  var decodeSeconds: Double { Double(decodeNanoseconds.load(ordering: .relaxed)) / 1e9 }
}
