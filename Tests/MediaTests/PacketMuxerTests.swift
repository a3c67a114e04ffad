import Foundation
import Media
import MediaDevices
import Testing

@Suite struct PacketMuxerTests {
  /// testsrc2 → libx264 → PacketMuxer (MP4) → MediaInput: every packet comes back, keyframes where they were.
  /// 25 test-pattern packets (160x120, a keyframe every 10, 40 ms apart) written to an MP4 at `path`;
  /// returns which were keyframes.
  private func writeClip(to path: String, options: [String: String] = [:]) throws -> [Bool] {
    let pattern = try TestPattern(width: 160, height: 120, frameRate: 30, gop: 10)
    let muxer = try PacketMuxer(
      url: path, format: "mp4", codecName: "h264", width: 160, height: 120, extradata: pattern.stream.extradata,
      timeBase: (1, 1000), options: options)
    var keyframes: [Bool] = []
    for index in 0..<25 {
      let packet = try #require(try pattern.readVideoPacket())
      keyframes.append(packet.isKeyframe)
      try muxer.write(packet.data, pts: Int64(index) * 40, dts: Int64(index) * 40, isKeyframe: packet.isKeyframe)
    }
    try muxer.finish()
    return keyframes
  }

  @Test func packetsWrittenToMP4ReadBackUnchanged() throws {
    let path = NSTemporaryDirectory() + "muxer-\(UUID().uuidString).mp4"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let keyframes = try writeClip(to: path, options: ["movflags": "+frag_keyframe+empty_moov+default_base_moof"])

    let input = try MediaInput(url: path)
    #expect(input.stream.codecName == "h264" && input.stream.width == 160 && input.stream.height == 120)
    var readBack: [(key: Bool, dtsMs: Int64)] = []
    while let packet = try input.readVideoPacket() {
      let dtsMs = (packet.dts ?? 0) * 1000 * Int64(input.stream.timeBaseNumerator) / Int64(input.stream.timeBaseDenominator)
      readBack.append((packet.isKeyframe, dtsMs))
    }
    #expect(readBack.map(\.key) == keyframes)
    #expect(readBack.map(\.dtsMs) == (0..<25).map { Int64($0) * 40 })
  }

  /// What a looping file source does at the end of each round: the same packets again, from the first.
  @Test func rewindReadsTheSamePacketsAgain() throws {
    let path = NSTemporaryDirectory() + "rewind-\(UUID().uuidString).mp4"
    defer { try? FileManager.default.removeItem(atPath: path) }
    _ = try writeClip(to: path)

    let input = try MediaInput(url: path)
    func readAll() throws -> [(Data, Int64?, Bool)] {
      var packets: [(Data, Int64?, Bool)] = []
      while let packet = try input.readVideoPacket() { packets.append((Data(packet.data), packet.pts, packet.isKeyframe)) }
      return packets
    }
    let first = try readAll()
    try input.rewind()
    let second = try readAll()
    #expect(first.count == 25)
    #expect(second.count == first.count)
    #expect(second.map(\.0) == first.map(\.0), "the same bytes, packet by packet")
    #expect(second.map(\.1) == first.map(\.1) && second.first?.2 == true)
  }

  @Test func anUnwritablePathIsAClearError() throws {
    #expect(throws: MediaError.self) {
      try PacketMuxer(
        url: "/proc/framerelay-cannot-write-here.mp4", format: "mp4", codecName: "h264", width: 16, height: 16,
        extradata: Data(), timeBase: (1, 1000))
    }
  }
}

@Suite struct ParameterSetsTests {
  @Test func copiesSPSAndPPSOutOfAnH264Keyframe() {
    let sps: [UInt8] = [0x67, 0x42, 0x00, 0x1e]
    let pps: [UInt8] = [0x68, 0xce, 0x38, 0x80]
    let slice: [UInt8] = [0x65, 0x88, 0x84, 0x00]
    let accessUnit = Data([0, 0, 0, 1] + sps + [0, 0, 1] + pps + [0, 0, 0, 1] + slice)
    #expect(ParameterSets.annexB(in: accessUnit, codecName: "h264") == Data([0, 0, 0, 1] + sps + [0, 0, 0, 1] + pps))
    #expect(ParameterSets.annexB(in: Data([0, 0, 0, 1] + slice), codecName: "h264").isEmpty)
    #expect(ParameterSets.annexB(in: accessUnit, codecName: "mjpeg").isEmpty)
  }
}
