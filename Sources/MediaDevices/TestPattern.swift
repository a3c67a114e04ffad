import Foundation
import Media

/// FFmpeg's moving `testsrc2` pattern at a real-time pace, encoded to H.264 with libx264 (zerolatency):
/// a camera that needs no camera.
public final class TestPattern {
  private let encoding: EncodingInput

  public init(width: Int, height: Int, frameRate: Int, gop: Int? = nil, interrupt: MediaInterrupt = MediaInterrupt()) throws(MediaError) {
    MediaDevices.register()
    // `realtime` paces the graph like a camera; lavfi itself runs as fast as it can.
    let graph = "testsrc2=size=\(width)x\(height):rate=\(frameRate),format=yuv420p,realtime"
    var settings = EncodingInput.Settings()
    settings.frameRate = frameRate
    settings.gop = gop
    encoding = try EncodingInput(input: MediaInput(url: graph, format: "lavfi", interrupt: interrupt), settings: settings)
  }

  public var stream: VideoStreamInfo { encoding.stream }

  /// The next encoded packet; blocks until the pattern's clock produces it.
  public func readVideoPacket() throws -> MediaPacket? { try encoding.readVideoPacket() }
}
