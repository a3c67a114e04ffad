import Foundation
import Media
import RelayCore
import SwiftProtobuf
import Testing

@testable import RelayServer

/// The VideoFrame SerializedFrames writes by hand (the picture copied once) is byte for byte what
/// SwiftProtobuf writes for the same message.
@Suite struct SerializedFramesTests {
  private func frame(width: Int64, height: Int64, picture: Data) -> VideoFrame {
    var frame = VideoFrame()
    frame.width = width
    frame.height = height
    frame.data = picture
    frame.timestamp = 1_764_000_000_123
    frame.isKeyframe = true
    frame.pts = 9000
    frame.dts = -3
    frame.frameType = "I"
    frame.timeBase = 1.0 / 90_000
    frame.shape = .with { $0.dim = [.with { $0.size = height; $0.name = "0" }, .with { $0.size = width; $0.name = "1" }] }
    frame.deviceID = "cam-1"
    frame.packet = 42
    frame.keyframe = 40
    frame.extradata = Data([0, 0, 0, 1, 0x67])
    frame.codecName = "h264"
    frame.pixFmt = "bgr24"
    return frame
  }

  @Test(arguments: zip([640, 1, 0, 200], [360, 1, 0, 100]))
  func handWrittenEqualsSwiftProtobuf(width: Int, height: Int) throws {
    let picture = Data((0..<(width * height * 3)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    let message = frame(width: Int64(width), height: Int64(height), picture: picture)
    let pool = PictureBuffers(keep: 1)
    let written = try SerializedFrames.wireFormat(message, into: pool)
    #expect(written == (try message.serializedData()))
    #expect(try VideoFrame(serializedBytes: written) == message)
  }

  private func liveFrame(index: UInt64) -> LiveFrame {
    let codec = CodecDescription(
      name: CodecDescription.rawVideo, width: 2, height: 1, pixelFormat: "bgr24", timeBase: Rational(1, 90_000))
    return LiveFrame(
      packetIndex: index, sequence: index, keyframeSequence: 1, bgr24: Data([1, 2, 3, 4, 5, 6]), width: 2, height: 1,
      timestampMs: 1000 + Int64(index), pts: 0, dts: 0, isKeyframe: true, pictureType: "I", isCorrupt: false,
      codec: CodecConfiguration(codec), storedNs: 1, decodedNs: 2)
  }

  // Found reading the code after fuzzing: an AVA sender's sequence_number is any UInt64, and
  // VideoFrame.packet (int64) trapped on one above Int64.max.
  @Test func sequenceNumbersAboveInt64MaxAreClamped() throws {
    let codec = CodecDescription(
      name: CodecDescription.rawVideo, width: 2, height: 1, pixelFormat: "bgr24", timeBase: Rational(1, 90_000))
    let frame = LiveFrame(
      packetIndex: 1, sequence: .max, keyframeSequence: UInt64(Int64.max) + 1, bgr24: Data([1, 2, 3, 4, 5, 6]), width: 2,
      height: 1, timestampMs: 1000, pts: 0, dts: 0, isKeyframe: true, pictureType: "I", isCorrupt: false,
      codec: CodecConfiguration(codec), storedNs: 1, decodedNs: 2)
    let answer = VideoFrame(frame, device: try DeviceID(validating: "cam-a"))
    #expect(answer.packet == .max)
    #expect(answer.keyframe == .max)
  }

  @Test func aPictureIsSerializedOncePerDeviceAndIdleDevicesAreForgotten() async throws {
    let frames = SerializedFrames(idleAfter: .milliseconds(50))
    let a = try DeviceID(validating: "cam-a"), b = try DeviceID(validating: "cam-b")
    let first = frames.serialized(liveFrame(index: 1), device: a)
    let again = frames.serialized(liveFrame(index: 1), device: a)
    #expect(first.bytes.withUnsafeBytes { $0.baseAddress } == again.bytes.withUnsafeBytes { $0.baseAddress })
    let parsed = try VideoFrame(serializedBytes: first.bytes)
    #expect(parsed.deviceID == "cam-a" && parsed.packet == 1 && parsed.data == Data([1, 2, 3, 4, 5, 6]))
    #expect(frames.devicesKept == 1)
    try await Task.sleep(for: .milliseconds(120))
    _ = frames.serialized(liveFrame(index: 7), device: b)
    #expect(frames.devicesKept == 1)  // cam-a was not asked for in 120 ms
  }

  @Test func anEmptyMessageIsEmpty() throws {
    #expect(try SerializedFrames.wireFormat(VideoFrame(), into: PictureBuffers()).isEmpty)
  }
}
