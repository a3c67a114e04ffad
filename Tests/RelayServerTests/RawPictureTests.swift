import Foundation
import Logging
import RelayCore
import RelayProtocol
import Testing

@testable import RelayServer

/// Raw pictures (what AVA and the minimal protocol deliver) go into the same DeviceStream as encoded packets
/// and come out of the same decoder path as bgr24.
@Suite struct RawPictureTests {
  private func decode(_ codec: CodecDescription, _ picture: Data) throws -> [LiveFrame] {
    let stream = DeviceStream(id: try DeviceID(validating: "raw1"), ringLimits: .init(maxBytes: 1 << 24, maxSeconds: 60))
    stream.publisherConnected(codec: codec, status: .init())
    stream.append(.init(sequence: 1, data: picture, pts: 0, dts: 0, isKeyframe: true, timestampMs: 42))
    var decoder = PacketDecoder(device: stream.id, metrics: DecoderMetrics(), logger: Logger(label: "test"))
    return stream.packets(after: 0).flatMap { decoder.decode($0) } + decoder.flush()
  }

  @Test func paddedRGBRowsComeOutAsPackedBGR() throws {
    let (width, height, stride) = (5, 3, 20)  // 15 bytes of pixels per row, 5 of padding
    var picture = Data(repeating: 0xEE, count: stride * height)
    var expected = Data(count: width * height * 3)
    for y in 0..<height {
      for x in 0..<width {
        let (r, g, b) = (UInt8(10 * x), UInt8(50 + y), UInt8(200 - x - y))
        picture[y * stride + x * 3 + 0] = r
        picture[y * stride + x * 3 + 1] = g
        picture[y * stride + x * 3 + 2] = b
        expected[(y * width + x) * 3 + 0] = b
        expected[(y * width + x) * 3 + 1] = g
        expected[(y * width + x) * 3 + 2] = r
      }
    }
    let codec = CodecDescription(
      name: CodecDescription.rawVideo, width: width, height: height, pixelFormat: "rgb24", timeBase: Rational(1, 90_000),
      stride: stride)
    let frames = try decode(codec, picture)
    #expect(frames.count == 1)
    #expect(frames.first?.bgr24 == expected)
    #expect(frames.first?.timestampMs == 42)
  }

  @Test func packedGrayBecomesThreeEqualChannels() throws {
    let (width, height) = (4, 2)
    let picture = Data((0..<(width * height)).map { UInt8($0 * 30) })
    let codec = CodecDescription(
      name: CodecDescription.rawVideo, width: width, height: height, pixelFormat: "gray", timeBase: Rational(1, 90_000))
    let frame = try #require(try decode(codec, picture).first)
    #expect(frame.bgr24 == Data(picture.flatMap { [$0, $0, $0] }))
  }
}

/// Fuzzing the Image API found relay-server trapping when it recorded a picture stream whose hello
/// claimed an absurd frame rate (Tests/Fuzz/Regressions/image-api): rates become whole numbers.
@Suite struct AbsurdFrameRateTests {
  @Test func aHelloWithAnAbsurdFrameRateHasAnUnknownOne() throws {
    for rate in [1e300, -5, .infinity, .nan, 1001] {
      var proto = Framerelay_V1_CodecDescription()
      proto.name = CodecDescription.rawVideo
      proto.width = 8
      proto.height = 8
      proto.pixFmt = "bgr24"
      proto.timeBaseNum = 1
      proto.timeBaseDen = 90_000
      proto.frameRate = rate
      #expect(try CodecDescription(validating: proto).frameRate == 0, "\(rate)")
    }
  }

  @Test func picturesWithAnAbsurdFrameRateAreStillEncoded() throws {
    let codec = CodecDescription(
      name: CodecDescription.rawVideo, width: 16, height: 16, pixelFormat: "bgr24", timeBase: Rational(1, 90_000),
      frameRate: 1e300)
    let configuration = CodecConfiguration(codec)
    var transcoder = H264Transcoder()
    var encoded = 0
    for index in 1...40 {
      let picture = Data(repeating: UInt8(index * 5), count: 16 * 16 * 3)
      let packet = StoredPacket(
        index: UInt64(index), sequence: UInt64(index), data: picture, pts: Int64(index) * 3000, dts: Int64(index) * 3000,
        isKeyframe: true, timestampMs: Int64(index) * 33, codec: configuration)
      encoded += try transcoder.packets(for: packet).count
    }
    #expect(encoded > 0)
  }
}
