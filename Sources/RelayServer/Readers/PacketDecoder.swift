import Foundation
import Logging
import Media
import RelayCore

/// Turns a device's stored packets, in order, into bgr24 frames: the live decoder's and replay's
/// common part. Owns one FFmpeg decoder; use it from one thread.
struct PacketDecoder {
  private var decoder: VideoDecoder?
  private var codec: CodecConfiguration?
  private let converter = PictureConverter()
  /// Packets sent to the decoder but not yet out as pictures, by pts (decoders reorder).
  private var pending: [Int64: StoredPacket] = [:]
  private var lastKeyframeSequence: UInt64 = 0
  private let device: DeviceID
  private let metrics: DecoderMetrics
  private let logger: Logger

  init(device: DeviceID, metrics: DecoderMetrics, logger: Logger) {
    self.device = device
    self.metrics = metrics
    self.logger = logger
  }

  /// The pictures still held inside the decoder (reordered streams hold some back).
  mutating func flush() -> [LiveFrame] {
    guard let decoder else { return [] }
    let converter = self.converter
    let keyframeSequence = lastKeyframeSequence
    var frames: [LiveFrame] = []
    try? decoder.flush { picture in
      guard let source = pending.removeValue(forKey: picture.pts) else { return }
      frames.append(try Self.frame(picture, from: source, keyframeSequence: keyframeSequence, converter: converter))
    }
    return frames
  }

  /// Forgets the decoder: the next picture comes from the next keyframe.
  mutating func restart() { decoder = nil }

  /// Whether `codec` differs from the one being decoded (a new hello changed it).
  func willReopen(for codec: CodecConfiguration) -> Bool {
    self.codec != nil && self.codec !== codec
  }

  /// Decodes one packet; returns the pictures it completed. Packets that do not decode are skipped and
  /// counted; a decoder only starts (or restarts after a gap or a codec change) at a keyframe.
  mutating func decode(_ packet: StoredPacket) -> [LiveFrame] {
    if packet.followsGap { decoder = nil }  // frames are missing before it: start clean at this keyframe
    if codec !== packet.codec || decoder == nil {
      guard packet.isKeyframe else { return [] }
      let description = packet.codec.description
      codec = packet.codec
      pending.removeAll()
      do {
        decoder = try VideoDecoder(
          codecName: description.name, width: description.width, height: description.height,
          pixelFormat: description.pixelFormat, extradata: description.extradata,
          timeBase: (description.timeBase.numerator, description.timeBase.denominator))
      } catch {
        logger.error("cannot decode device \(device): \(error)")
        decoder = nil
        return []
      }
    }
    guard let decoder else { return [] }
    if packet.isKeyframe { lastKeyframeSequence = packet.sequence }
    pending[packet.pts] = packet
    if pending.count > 64 { pending.removeAll() }  // a decoder that never answers must not grow this
    let started = WallClock.threadCPUNs()
    let converter = self.converter
    let keyframeSequence = lastKeyframeSequence
    var frames: [LiveFrame] = []
    var failed = false
    do {
      try decoder.decode(packet.decodableBytes, pts: packet.pts, dts: packet.dts, isKeyframe: packet.isKeyframe) { picture in
        let source = pending.removeValue(forKey: picture.pts) ?? packet
        frames.append(try Self.frame(picture, from: source, keyframeSequence: keyframeSequence, converter: converter))
      }
    } catch {
      failed = true
      pending[packet.pts] = nil
      logger.debug("skipped a packet that does not decode", metadata: ["device": "\(device)", "error": "\(error)"])
    }
    metrics.recordDecode(nanoseconds: WallClock.threadCPUNs() - started, corrupt: failed)
    return frames
  }

  /// A picture as consumers get it: bgr24, with what VideoFrame reports of the packet it came from.
  private static func frame(
    _ picture: DecodedPicture, from source: StoredPacket, keyframeSequence: UInt64, converter: PictureConverter
  ) throws -> LiveFrame {
    LiveFrame(
      packetIndex: source.index, sequence: source.sequence, keyframeSequence: keyframeSequence,
      bgr24: try converter.bgr24(picture), width: picture.width, height: picture.height,
      timestampMs: source.timestampMs, pts: picture.pts, dts: source.dts, isKeyframe: picture.isKeyframe,
      pictureType: picture.pictureType, isCorrupt: picture.isCorrupt, codec: source.codec,
      storedNs: source.storedNs, decodedNs: WallClock.monotonicNs())
  }
}

extension StoredPacket {
  /// The bytes as FFmpeg's decoders take them: a raw picture with padded rows loses the padding
  /// (FFmpeg's raw decoder takes packed rows; one copy), anything else is as stored.
  var decodableBytes: Data {
    let codec = codec.description
    guard codec.isRaw, codec.stride > 0,
      let rowBytes = RawPicture.packedRowBytes(pixelFormat: codec.pixelFormat, width: codec.width),
      codec.stride > rowBytes, data.count >= codec.stride * (codec.height - 1) + rowBytes
    else { return data }
    return RawPicture.packed(data, rowBytes: rowBytes, height: codec.height, stride: codec.stride)
  }
}
