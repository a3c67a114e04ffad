import Foundation

/// The facts FFmpeg gives about a video stream, in FFmpeg's own names.
public struct VideoStreamInfo: Equatable, Sendable {
  public var codecName: String
  public var width: Int
  public var height: Int
  public var pixelFormat: String
  public var extradata: Data
  public var timeBaseNumerator: Int32
  public var timeBaseDenominator: Int32
  /// Frames per second as the container states it, 0 when unknown.
  public var frameRate: Double
}

/// One packet of a video stream. `data` shares FFmpeg's buffer (no copy) until the last reference goes.
public struct MediaPacket: Sendable {
  public var data: Data
  public var pts: Int64?
  public var dts: Int64?
  public var duration: Int64
  public var isKeyframe: Bool
}
