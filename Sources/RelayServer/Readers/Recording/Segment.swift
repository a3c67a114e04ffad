import Foundation
import Media

/// One MP4 file of a recording. Timestamps are milliseconds from its first packet, whose server time
/// is in the file name, so a packet's server time comes back as name + dts.
struct Segment {
  let path: String
  let codec: CodecConfiguration
  let muxer: PacketMuxer
  private var timeline: MillisecondTimeline

  init(first packet: StoredPacket, directory: String) throws(MediaError) {
    let description = packet.codec.description
    let startMs = packet.timestampMs
    codec = packet.codec
    timeline = MillisecondTimeline(startMs: startMs)
    path = (directory as NSString).appendingPathComponent(SegmentName.make(startMs: startMs))
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw MediaError(operation: "create \(directory)", message: error.localizedDescription)
    }
    muxer = try PacketMuxer(
      url: path, format: "mp4", codecName: description.name, width: description.width,
      height: description.height, extradata: packet.parameterSets, timeBase: (1, 1000),
      // Fragmented: a segment cut short (power loss, SIGKILL) still plays up to its last fragment.
      options: ["movflags": "+frag_keyframe+empty_moov+default_base_moof"])
  }

  var startMs: Int64 { timeline.startMs }

  mutating func write(_ packet: StoredPacket) throws(MediaError) {
    let (pts, dts) = timeline.stamps(for: packet)
    try muxer.write(packet.data, pts: pts, dts: dts, isKeyframe: packet.isKeyframe)
  }
}

/// Segment file names: the UTC time of the first packet to the millisecond, so they sort by time.
enum SegmentName {
  static func make(startMs: Int64) -> String {
    formatter().string(from: Date(timeIntervalSince1970: Double(startMs) / 1000)) + ".mp4"
  }

  /// The start time (ms since the Unix epoch) a segment's name carries, or nil for other files.
  static func startMs(of name: String) -> Int64? {
    guard name.hasSuffix(".mp4"), let date = formatter().date(from: String(name.dropLast(4))) else { return nil }
    return Int64((date.timeIntervalSince1970 * 1000).rounded())
  }

  private static func formatter() -> DateFormatter {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyyMMdd'T'HHmmss.SSS'Z'"
    return formatter
  }
}
