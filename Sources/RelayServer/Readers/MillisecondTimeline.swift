import Foundation
import Media

/// Muxer timestamps in milliseconds from a start time on the server clock: dts follows the packets'
/// server timestamps (never repeating or going back), pts adds the codec's reordering delay.
struct MillisecondTimeline {
  let startMs: Int64
  private var lastDts: Int64 = -1

  init(startMs: Int64) { self.startMs = startMs }

  mutating func stamps(for packet: StoredPacket) -> (pts: Int64, dts: Int64) {
    let timeBase = packet.codec.description.timeBase
    let reorderMs =
      timeBase.denominator > 0
      ? (packet.pts - packet.dts) * 1000 * Int64(timeBase.numerator) / Int64(timeBase.denominator) : 0
    let dts = max(packet.timestampMs - startMs, lastDts + 1)
    lastDts = dts
    return (dts + max(0, reorderMs), dts)
  }
}

extension StoredPacket {
  /// The codec's parameter sets for a container header: the hello's, or else the ones in this keyframe.
  var parameterSets: Data {
    let description = codec.description
    return description.extradata.isEmpty
      ? ParameterSets.annexB(in: data, codecName: description.name) : description.extradata
  }
}
