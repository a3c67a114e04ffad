import Foundation
import Media
import MediaDevices
import Testing

/// Real FFmpeg end to end inside the Media room: lavfi testsrc2 → libx264 → our decoder → bgr24.
@Suite struct TestPatternDecodeTests {
  @Test func encodedPatternDecodesToMovingBGRPictures() throws {
    let pattern = try TestPattern(width: 160, height: 120, frameRate: 30, gop: 10)
    #expect(pattern.stream.codecName == "h264")
    #expect(!pattern.stream.extradata.isEmpty, "SPS/PPS travel out of band in the hello")
    let decoder = try VideoDecoder(
      codecName: "h264", width: 160, height: 120, pixelFormat: "yuv420p", extradata: pattern.stream.extradata,
      timeBase: (pattern.stream.timeBaseNumerator, pattern.stream.timeBaseDenominator))
    let converter = PictureConverter()
    var pictures: [Data] = []
    var keyframes = 0
    var types: [String] = []
    for _ in 0..<12 {
      let packet = try #require(try pattern.readVideoPacket())
      if packet.isKeyframe { keyframes += 1 }
      try decoder.decode(packet.data, pts: packet.pts ?? 0, dts: packet.dts ?? 0, isKeyframe: packet.isKeyframe) {
        pictures.append(try converter.bgr24($0))
        types.append($0.pictureType)
      }
    }
    try decoder.flush { pictures.append(try converter.bgr24($0)) }
    #expect(pictures.count == 12)
    #expect(pictures.allSatisfy { $0.count == 160 * 120 * 3 })
    #expect(keyframes == 2, "a GOP of 10 gives keyframes at 0 and 10")
    #expect(types.first == "I" && types.dropFirst().contains("P"))
    #expect(pictures[0] != pictures[5], "testsrc2 moves")
  }

  @Test func garbageDoesNotBreakTheDecoder() throws {
    let pattern = try TestPattern(width: 160, height: 120, frameRate: 30, gop: 5)
    let decoder = try VideoDecoder(
      codecName: "h264", width: 160, height: 120, pixelFormat: "yuv420p", extradata: pattern.stream.extradata,
      timeBase: (pattern.stream.timeBaseNumerator, pattern.stream.timeBaseDenominator))
    var decoded = 0
    for index in 0..<10 {
      let packet = try #require(try pattern.readVideoPacket())
      var data = packet.data
      if index == 2 { data = Data((0..<data.count).map { UInt8(truncatingIfNeeded: $0 &* 31) }) }
      do {
        try decoder.decode(data, pts: packet.pts ?? 0, dts: packet.dts ?? 0, isKeyframe: packet.isKeyframe) { _ in
          decoded += 1
        }
      } catch {}
    }
    // The second GOP (from packet 5) decodes whatever happened to packet 2.
    #expect(decoded >= 5)
  }

  @Test func unknownCodecIsAClearError() {
    #expect(throws: MediaError.self) {
      try VideoDecoder(codecName: "no-such-codec", width: 16, height: 16, pixelFormat: "", extradata: Data(), timeBase: (1, 30))
    }
  }

  @Test func missingFileNamesThePath() {
    do {
      _ = try MediaInput(url: "/nonexistent/clip.mp4")
      Issue.record("opening a missing file succeeded")
    } catch {
      #expect("\(error)".contains("/nonexistent/clip.mp4"))
    }
  }
}
