import Foundation
import Media
import RelayCore

/// Streams of pictures (raw frames and JPG/PNG/BMP images, as AVA and the minimal protocol bring them)
/// encoded to H.264 for the readers that mux (recording, RTMP passthrough), which want a video codec;
/// H.264 and H.265 packets pass as they are. Runs on the reader's thread; one per reader.
struct H264Transcoder {
  private struct Encoding {
    let source: CodecConfiguration
    let output: CodecConfiguration
    let decoder: VideoDecoder
    let scaler: PictureScaler
    let encoder: VideoEncoder
    var nextPts: Int64 = 0
  }

  private var encoding: Encoding?

  static func passesAsIs(_ codec: CodecDescription) -> Bool { codec.name == "h264" || codec.name == "hevc" }

  /// The packets to mux for `packet`: itself, or its picture encoded (none while the encoder buffers).
  mutating func packets(for packet: StoredPacket) throws(MediaError) -> [StoredPacket] {
    let description = packet.codec.description
    guard !Self.passesAsIs(description) else { return [packet] }
    if encoding?.source !== packet.codec { encoding = try Self.open(for: packet.codec) }
    guard var encoding else { return [] }
    var out: [StoredPacket] = []
    do {
      try encoding.decoder.decode(packet.decodableBytes, pts: packet.pts, dts: packet.dts, isKeyframe: true) { picture in
        let encoded = try encoding.scaler.scale(picture) { try encoding.encoder.encode($0, pts: encoding.nextPts) }
        encoding.nextPts += 1
        for media in encoded {
          out.append(
            StoredPacket(
              index: packet.index, sequence: packet.sequence, data: media.data, pts: media.pts ?? 0,
              dts: media.dts ?? media.pts ?? 0, isKeyframe: media.isKeyframe, timestampMs: packet.timestampMs,
              codec: encoding.output))
        }
      }
    } catch let error as MediaError {
      throw error
    } catch {
      throw MediaError(operation: "encode to H.264", message: "\(error)")
    }
    self.encoding = encoding
    return out
  }

  private static func open(for source: CodecConfiguration) throws(MediaError) -> Encoding {
    let codec = source.description
    // Any protocol's description may arrive here: a rate past what libx264 takes is treated as unknown.
    let frameRate = (1...240).contains(codec.frameRate) ? Int(codec.frameRate.rounded()) : 30
    let encoder = try VideoEncoder(
      codecName: "libx264", width: codec.width, height: codec.height, pixelFormat: "yuv420p", frameRate: frameRate,
      gop: frameRate, options: ["preset": "ultrafast", "tune": "zerolatency"])
    let output = CodecDescription(
      name: "h264", width: codec.width, height: codec.height, pixelFormat: "yuv420p", extradata: encoder.extradata,
      timeBase: Rational(encoder.timeBase.numerator, encoder.timeBase.denominator), frameRate: Double(frameRate))
    return Encoding(
      source: source, output: CodecConfiguration(output),
      decoder: try VideoDecoder(
        codecName: codec.name, width: codec.width, height: codec.height, pixelFormat: codec.pixelFormat,
        extradata: codec.extradata, timeBase: (codec.timeBase.numerator, codec.timeBase.denominator)),
      scaler: try PictureScaler(width: codec.width, height: codec.height, pixelFormat: "yuv420p"),
      encoder: encoder)
  }
}
