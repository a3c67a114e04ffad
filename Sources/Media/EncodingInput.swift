import Foundation

/// An input that gives raw pictures (a V4L2 camera's YUYV, a lavfi graph) made into H.264 packets:
/// decode the raw packet, convert to yuv420p, encode. The encoder is libx264 (ultrafast, zerolatency)
/// unless told otherwise, e.g. `h264_v4l2m2m` on boards with a hardware encoder.
public final class EncodingInput {
  public struct Settings: Sendable, Equatable {
    public var encoder = "libx264"
    public var frameRate = 30
    /// Frames between keyframes; nil for one a second.
    public var gop: Int?
    /// Bits per second; 0 for the encoder's default.
    public var bitRate = 0

    public init() {}
  }

  public let stream: VideoStreamInfo
  private let input: MediaInput
  private let decoder: VideoDecoder
  private let scaler: PictureScaler?
  private let encoder: VideoEncoder
  private var pending: [MediaPacket] = []
  private var nextPts: Int64 = 0

  public init(input: MediaInput, settings: Settings) throws(MediaError) {
    self.input = input
    let raw = input.stream
    decoder = try VideoDecoder(
      codecName: raw.codecName, width: raw.width, height: raw.height, pixelFormat: raw.pixelFormat,
      extradata: raw.extradata, timeBase: (raw.timeBaseNumerator, raw.timeBaseDenominator))
    scaler = raw.pixelFormat == "yuv420p" ? nil : try PictureScaler(width: raw.width, height: raw.height, pixelFormat: "yuv420p")
    let options = settings.encoder == "libx264" ? ["preset": "ultrafast", "tune": "zerolatency"] : [:]
    encoder = try VideoEncoder(
      codecName: settings.encoder, width: raw.width, height: raw.height, pixelFormat: "yuv420p",
      frameRate: settings.frameRate, gop: settings.gop ?? settings.frameRate, bitRate: settings.bitRate,
      options: options)
    let timeBase = encoder.timeBase
    stream = VideoStreamInfo(
      codecName: "h264", width: raw.width, height: raw.height, pixelFormat: "yuv420p", extradata: encoder.extradata,
      timeBaseNumerator: timeBase.numerator, timeBaseDenominator: timeBase.denominator,
      frameRate: Double(settings.frameRate))
  }

  /// The next encoded packet; blocks until the input gives the picture it comes from.
  public func readVideoPacket() throws -> MediaPacket? {
    while pending.isEmpty {
      guard let raw = try input.readVideoPacket() else {
        pending = try encoder.flush()
        return pending.isEmpty ? nil : pending.removeFirst()
      }
      try decoder.decode(raw.data, pts: raw.pts ?? 0, dts: raw.dts ?? 0, isKeyframe: true) { picture in
        if let scaler {
          try scaler.scale(picture) { pending += try encoder.encode($0, pts: nextPts) }
        } else {
          pending += try encoder.encode(picture, pts: nextPts)
        }
        nextPts += 1
      }
    }
    return pending.removeFirst()
  }
}
