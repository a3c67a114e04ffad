import Foundation

/// FFmpeg's moving `testsrc2` pattern at a real-time pace, encoded to H.264 with libx264 (zerolatency):
/// a camera that needs no camera.
public final class TestPattern {
  public let stream: VideoStreamInfo
  private let input: MediaInput
  private let decoder: VideoDecoder
  private let encoder: VideoEncoder
  private var pending: [MediaPacket] = []
  private var nextPts: Int64 = 0

  public init(width: Int, height: Int, frameRate: Int, gop: Int? = nil, interrupt: MediaInterrupt = MediaInterrupt()) throws(MediaError) {
    // `realtime` paces the graph like a camera; lavfi itself runs as fast as it can.
    let graph = "testsrc2=size=\(width)x\(height):rate=\(frameRate),format=yuv420p,realtime"
    input = try MediaInput(url: graph, format: "lavfi", interrupt: interrupt)
    let raw = input.stream
    decoder = try VideoDecoder(
      codecName: raw.codecName, width: raw.width, height: raw.height, pixelFormat: raw.pixelFormat,
      extradata: raw.extradata, timeBase: (raw.timeBaseNumerator, raw.timeBaseDenominator))
    encoder = try VideoEncoder(
      codecName: "libx264", width: width, height: height, pixelFormat: "yuv420p", frameRate: frameRate,
      gop: gop ?? frameRate, options: ["preset": "ultrafast", "tune": "zerolatency"])
    let timeBase = encoder.timeBase
    stream = VideoStreamInfo(
      codecName: "h264", width: width, height: height, pixelFormat: "yuv420p", extradata: encoder.extradata,
      timeBaseNumerator: timeBase.numerator, timeBaseDenominator: timeBase.denominator,
      frameRate: Double(frameRate))
  }

  /// The next encoded packet; blocks until the pattern's clock produces it.
  public func readVideoPacket() throws -> MediaPacket? {
    while pending.isEmpty {
      guard let raw = try input.readVideoPacket() else { return nil }
      try decoder.decode(raw.data, pts: raw.pts ?? 0, dts: raw.dts ?? 0, isKeyframe: true) { picture in
        pending += try encoder.encode(picture, pts: nextPts)
        nextPts += 1
      }
    }
    return pending.removeFirst()
  }
}
