import Foundation
import Media

/// Muxer timestamps in milliseconds from a start time on the server clock: dts follows the packets'
/// server timestamps (never repeating or going back), pts adds the codec's reordering delay.
struct MillisecondTimeline {
  let startMs: Int64
  private var lastDts: Int64 = -1

  init(startMs: Int64) { self.startMs = startMs }

  mutating func stamps(for packet: StoredPacket) -> (pts: Int64, dts: Int64) {
    let dts = max(packet.timestampMs - startMs, lastDts + 1)
    lastDts = dts
    return (dts + Self.reorderMs(packet), dts)
  }

  /// The codec's reordering delay, pts - dts in ms. The publisher's pts and dts can be any 64-bit
  /// numbers: a delay that is negative, overflows or exceeds `largestReorderMs` is taken as none.
  static func reorderMs(_ packet: StoredPacket) -> Int64 {
    let timeBase = packet.codec.description.timeBase
    guard timeBase.denominator > 0 else { return 0 }
    let (ticks, overflow) = packet.pts.subtractingReportingOverflow(packet.dts)
    let (scaled, beyond) = ticks.multipliedReportingOverflow(by: 1000 * Int64(timeBase.numerator))
    guard !overflow, !beyond else { return 0 }
    let ms = scaled / Int64(timeBase.denominator)
    return (0...largestReorderMs).contains(ms) ? ms : 0
  }

  /// Far beyond any encoder's B-frame delay (a few frames).
  static let largestReorderMs: Int64 = 10_000
}

extension StoredPacket {
  /// The codec's parameter sets for a container header: the hello's, or else the ones in this keyframe.
  var parameterSets: Data {
    let description = codec.description
    return description.extradata.isEmpty
      ? ParameterSets.annexB(in: data, codecName: description.name) : description.extradata
  }
}
