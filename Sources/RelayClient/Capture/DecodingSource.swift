import Foundation
import Media
import RelayCore

/// What a protocol that carries pictures rather than packets (the minimal protocol, AVA) asks the
/// capture for: raw frames of one size and pixel format, at most so many a second.
public struct PictureRequest: Sendable, Equatable {
  /// nil: the source's own size.
  public var width: Int?
  public var height: Int?
  /// FFmpeg's name: gray, bgr24, rgb24, bgra, yuv420p, …
  public var pixelFormat: String
  /// Frames beyond this rate are left out (nil: every frame).
  public var maxFrameRate: Double?
  /// Encode each picture as an image with this FFmpeg encoder (mjpeg, png, bmp) after converting it
  /// to `pixelFormat` (the encoder's input); nil: raw pixels.
  public var imageEncoder: String?

  public init(
    width: Int? = nil, height: Int? = nil, pixelFormat: String, maxFrameRate: Double? = nil, imageEncoder: String? = nil
  ) {
    self.width = width
    self.height = height
    self.pixelFormat = pixelFormat
    self.maxFrameRate = maxFrameRate
    self.imageEncoder = imageEncoder
  }
}

/// Decodes another source's packets on the capture thread and hands out packed raw pictures in the
/// requested size and format: the one place the edge decodes (only protocols that want pictures).
struct DecodingSource: CaptureSource {
  let codec: CodecDescription
  private var inner: any CaptureSource
  private let decoder: VideoDecoder
  private let converter = PictureConverter()
  private let request: PictureRequest
  private let images: (scaler: PictureScaler, encoder: VideoEncoder)?
  private var ready: [EncodedPacket] = []
  private var lastKeptMs: Int64?
  private var ended = false

  init(_ inner: any CaptureSource, request: PictureRequest) throws(MediaError) {
    self.inner = inner
    self.request = request
    let source = inner.codec
    decoder = try VideoDecoder(
      codecName: source.name, width: source.width, height: source.height, pixelFormat: source.pixelFormat,
      extradata: source.extradata, timeBase: (source.timeBase.numerator, source.timeBase.denominator))
    let rate = request.maxFrameRate.map { source.frameRate > 0 ? min($0, source.frameRate) : $0 } ?? source.frameRate
    let (width, height) = (request.width ?? source.width, request.height ?? source.height)
    codec = CodecDescription(
      name: request.imageEncoder ?? CodecDescription.rawVideo, width: width, height: height,
      pixelFormat: request.pixelFormat, timeBase: source.timeBase, frameRate: rate)
    if let encoder = request.imageEncoder {
      images = (
        try PictureScaler(width: width, height: height, pixelFormat: request.pixelFormat),
        try VideoEncoder(
          codecName: encoder, width: width, height: height, pixelFormat: request.pixelFormat,
          frameRate: max(1, Int(rate.rounded())), gop: 1, bitRate: width * height * 8)
      )
    } else {
      images = nil
    }
  }

  mutating func nextPacket() throws -> EncodedPacket? {
    while ready.isEmpty && !ended {
      guard let packet = try inner.nextPacket() else {
        ended = true
        try decoder.flush { picture in try keep(picture, capturedMs: WallClock.nowMs()) }
        break
      }
      do {
        try decoder.decode(packet.data, pts: packet.pts, dts: packet.dts, isKeyframe: packet.isKeyframe) { picture in
          try keep(picture, capturedMs: packet.captureTimeMs)
        }
      } catch {
        continue  // a packet that does not decode (a camera's broken frame): the next one may
      }
    }
    return ready.isEmpty ? nil : ready.removeFirst()
  }

  private mutating func keep(_ picture: DecodedPicture, capturedMs: Int64) throws {
    if let rate = request.maxFrameRate, let last = lastKeptMs, Double(capturedMs - last) < 1000 / rate * 0.9 {
      return  // faster than asked: left out (0.9: a camera's jitter must not halve the rate)
    }
    lastKeptMs = capturedMs
    if let images {
      let packets = try images.scaler.scale(picture) { try images.encoder.encode($0, pts: picture.pts) }
      for packet in packets {
        ready.append(EncodedPacket(data: packet.data, pts: picture.pts, dts: picture.pts, isKeyframe: true, captureTimeMs: capturedMs))
      }
      return
    }
    let data = try converter.packed(picture, width: codec.width, height: codec.height, pixelFormat: codec.pixelFormat)
    ready.append(EncodedPacket(data: data, pts: picture.pts, dts: picture.pts, isKeyframe: true, captureTimeMs: capturedMs))
  }
}
