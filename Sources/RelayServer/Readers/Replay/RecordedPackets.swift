import Foundation
import Logging
import Media
import RelayCore

/// Packets read back from a device's recording segments, for a VideoBufferedImage range the memory
/// ring no longer covers. A packet's server time is its segment's start (in the name) plus its dts.
enum RecordedPackets {
  /// The recorded packets a replay of [fromMs, beforeMs) needs: from the keyframe at or before
  /// `fromMs` to the last packet before `beforeMs`, oldest first.
  static func read(
    _ segments: [Recordings.SegmentFile], fromMs: Int64, beforeMs: Int64, logger: Logger
  ) -> [StoredPacket] {
    var packets: [StoredPacket] = []
    for (position, segment) in segments.enumerated() {
      let nextStart = position + 1 < segments.count ? segments[position + 1].startMs : Int64.max
      guard segment.startMs < beforeMs, nextStart > fromMs else { continue }
      do {
        try read(segment, beforeMs: beforeMs, into: &packets)
      } catch {
        logger.warning("cannot read recording segment \(segment.path): \(error)")
      }
    }
    // Decoding starts at the last keyframe at or before the range.
    if let start = packets.lastIndex(where: { $0.isKeyframe && $0.timestampMs <= fromMs }) {
      packets.removeFirst(start)
    }
    return packets
  }

  private static func read(
    _ segment: Recordings.SegmentFile, beforeMs: Int64, into packets: inout [StoredPacket]
  ) throws(MediaError) {
    let input = try MediaInput(url: segment.path, format: "mp4")
    let stream = input.stream
    let timeBase = Rational(stream.timeBaseNumerator, stream.timeBaseDenominator)
    let codec = CodecConfiguration(
      CodecDescription(
        name: stream.codecName, width: stream.width, height: stream.height, pixelFormat: stream.pixelFormat,
        extradata: stream.extradata, timeBase: timeBase, frameRate: stream.frameRate))
    var first = true
    while let packet = try input.readVideoPacket() {
      let dts = packet.dts ?? packet.pts ?? 0
      let timestampMs =
        segment.startMs + dts * 1000 * Int64(timeBase.numerator) / Int64(max(1, timeBase.denominator))
      guard timestampMs < beforeMs else { break }
      packets.append(
        StoredPacket(
          index: 0, sequence: 0, data: packet.data, pts: packet.pts ?? dts, dts: dts, isKeyframe: packet.isKeyframe,
          timestampMs: timestampMs, followsGap: first, codec: codec))
      first = false
    }
  }
}
