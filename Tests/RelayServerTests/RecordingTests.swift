import Foundation
import RelayCore
import Testing

@testable import RelayServer

@Suite struct RecordingTests {
  @Test func segmentNamesCarryTheStartTimeAndSortByIt() throws {
    let times: [Int64] = [1_700_000_000_000, 1_700_000_000_001, 1_700_000_059_999, 1_799_999_999_999]
    let names = times.map { SegmentName.make(startMs: $0) }
    #expect(names[0] == "20231114T221320.000Z.mp4")
    #expect(names.map { SegmentName.startMs(of: $0) } == times)
    #expect(names.sorted() == names)
    #expect(SegmentName.startMs(of: "notes.txt") == nil)
  }

  @Test func timelineCountsMillisecondsFromTheStartAndNeverGoesBack() {
    let codec = CodecConfiguration(
      CodecDescription(name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 90_000)))
    func packet(ms: Int64, pts: Int64, dts: Int64) -> StoredPacket {
      StoredPacket(
        index: 1, sequence: 1, data: Data(), pts: pts, dts: dts, isKeyframe: false, timestampMs: ms, codec: codec)
    }
    var timeline = MillisecondTimeline(startMs: 10_000)
    #expect(timeline.stamps(for: packet(ms: 10_000, pts: 0, dts: 0)) == (0, 0))
    #expect(timeline.stamps(for: packet(ms: 10_040, pts: 9000, dts: 3600)) == (100, 40), "pts keeps the reorder delay")
    #expect(timeline.stamps(for: packet(ms: 10_040, pts: 7200, dts: 7200)) == (41, 41), "a repeated time moves on by 1 ms")
    #expect(timeline.stamps(for: packet(ms: 10_020, pts: 0, dts: 0)) == (42, 42), "never backwards")
  }

  // Found reading the code after fuzzing found the native clock-offset overflow: a publisher's pts and
  // dts are any Int64, and (pts - dts) * 1000 trapped while recording or passing through.
  @Test func absurdReorderDelaysAreTakenAsNone() {
    let codec = CodecConfiguration(
      CodecDescription(name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 90_000)))
    var timeline = MillisecondTimeline(startMs: 10_000)
    let cases: [(pts: Int64, dts: Int64)] = [(.max, -1), (10_000_000_000_000_000, 0), (0, 90_000), (.min, .max), (0, .min)]
    for (offset, (pts, dts)) in cases.enumerated() {
      let packet = StoredPacket(
        index: 1, sequence: 1, data: Data(), pts: pts, dts: dts, isKeyframe: false, timestampMs: 10_000 + Int64(offset) * 40,
        codec: codec)
      let stamps = timeline.stamps(for: packet)
      #expect(stamps.pts == stamps.dts, "pts \(pts), dts \(dts)")
    }
    let tenSeconds = StoredPacket(
      index: 1, sequence: 1, data: Data(), pts: 900_000, dts: 0, isKeyframe: false, timestampMs: 10_400, codec: codec)
    #expect(MillisecondTimeline.reorderMs(tenSeconds) == MillisecondTimeline.largestReorderMs, "the largest delay kept")
  }
}
