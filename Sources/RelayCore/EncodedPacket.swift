import Foundation

/// One packet as a source gives it: encoded (H.264, H.265, MJPEG) or one raw frame.
public struct EncodedPacket: Sendable {
  public var data: Data
  public var pts: Int64
  public var dts: Int64
  public var isKeyframe: Bool
  /// When it was captured, ms since the Unix epoch on the clock of whoever holds it.
  public var captureTimeMs: Int64

  public init(data: Data, pts: Int64, dts: Int64, isKeyframe: Bool, captureTimeMs: Int64) {
    self.data = data
    self.pts = pts
    self.dts = dts
    self.isKeyframe = isKeyframe
    self.captureTimeMs = captureTimeMs
  }
}
