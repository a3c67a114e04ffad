import Foundation
import Media
import RelayCore
import RelayProtocol

/// What an AVA session's descriptor says about its frames, checked once: the codec the stream gets
/// and the content length each sample must have.
struct AVAFrameLayout: Sendable {
  let encoding: AVASampleFormat.Encoding
  let codec: CodecDescription
  /// RAW: the exact content length of a sample (padded rows included); nil for encoded images.
  let rawBytes: Int?
  /// RAW: the shortest content accepted (a last row without its padding), for senders that trim it.
  let rawBytesTrimmed: Int?
  private let layoutText: String

  init(_ descriptor: AVADescriptor, maxFrameBytes: Int) throws(AVAIngestError) {
    guard descriptor.hasMediaDescriptor, case .videoFrameSampleFormat(let format)? = descriptor.mediaDescriptor.mediaSampleFormat
    else { throw .noMediaDescriptor }
    let width = Int(format.dimensions.width)
    let height = Int(format.dimensions.height)
    guard (1...16384).contains(width), (1...16384).contains(height), width * height <= maxFrameBytes else {
      throw .badDimensions(width: format.dimensions.width, height: format.dimensions.height, limit: maxFrameBytes)
    }
    let timescale = descriptor.mediaDescriptor.timescale
    let timeBase = Rational(1, Int32(clamping: timescale > 0 ? timescale : 90_000))
    encoding = format.encoding
    switch format.encoding {
    case .raw:
      guard let pixelFormat = format.pixelFormat.ffmpegName else { throw .unknownPixelFormat("\(format.pixelFormat)") }
      let stride = Int(format.strideBytes)
      if let rowBytes = RawPicture.packedRowBytes(pixelFormat: pixelFormat, width: width) {
        // Single plane: stride 0 or absent means packed rows.
        guard stride == 0 || stride >= rowBytes else {
          throw .strideTooSmall(stride: stride, rowBytes: rowBytes, pixelFormat: pixelFormat, width: width)
        }
        let rowStride = stride == 0 ? rowBytes : stride
        rawBytes = rowStride * height
        rawBytesTrimmed = rowStride * (height - 1) + rowBytes
        layoutText = "\(width)x\(height) \(pixelFormat) with rows of \(rowStride) bytes"
        codec = CodecDescription(
          name: CodecDescription.rawVideo, width: width, height: height, pixelFormat: pixelFormat, timeBase: timeBase,
          stride: rowStride == rowBytes ? 0 : rowStride)
      } else {
        // YUV420P: planes one after another, packed.
        guard stride == 0 || stride == width else {
          throw .strideTooSmall(stride: stride, rowBytes: width, pixelFormat: "\(pixelFormat) (padded planes are not supported)", width: width)
        }
        let bytes = RawPicture.packedBytes(pixelFormat: pixelFormat, width: width, height: height) ?? 0
        rawBytes = bytes
        rawBytesTrimmed = bytes
        layoutText = "\(width)x\(height) \(pixelFormat), planes packed"
        codec = CodecDescription(
          name: CodecDescription.rawVideo, width: width, height: height, pixelFormat: pixelFormat, timeBase: timeBase)
      }
      guard rawBytes! <= maxFrameBytes else {
        throw .badDimensions(width: format.dimensions.width, height: format.dimensions.height, limit: maxFrameBytes)
      }
    case .jpg, .png, .bmp:
      rawBytes = nil
      rawBytesTrimmed = nil
      layoutText = "\(format.encoding.name) \(width)x\(height)"
      codec = CodecDescription(name: format.encoding.codecName!, width: width, height: height, pixelFormat: "", timeBase: timeBase)
    case .UNRECOGNIZED(let value):
      throw .unknownEncoding("\(value)")
    }
  }

  /// Checks a sample's bytes against the layout (length for RAW, the image signature otherwise).
  func check(_ content: Data) throws(AVAIngestError) {
    if let rawBytes, let rawBytesTrimmed {
      guard content.count == rawBytes || content.count == rawBytesTrimmed else {
        throw .contentLength(got: content.count, expected: rawBytes, layout: layoutText)
      }
      return
    }
    let signature: [UInt8]
    switch encoding {
    case .jpg: signature = [0xFF, 0xD8, 0xFF]
    case .png: signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    default: signature = [0x42, 0x4D]  // "BM"
    }
    guard content.count > signature.count, content.prefix(signature.count).elementsEqual(signature) else {
      throw .notAnImage(encoding: encoding.name, reason: "it does not start with the \(encoding.name) signature")
    }
  }

  /// Decodes one encoded image fully (the session's first): it must decode to the described size.
  /// Blocking FFmpeg work: call it off the cooperative pool.
  func decodeCheck(_ content: Data) throws(AVAIngestError) {
    guard rawBytes == nil else { return }
    var size: (Int, Int)?
    do {
      let decoder = try VideoDecoder(
        codecName: codec.name, width: codec.width, height: codec.height, pixelFormat: "", extradata: Data(),
        timeBase: (codec.timeBase.numerator, codec.timeBase.denominator))
      try decoder.decode(content, pts: 0, dts: 0, isKeyframe: true) { size = ($0.width, $0.height) }
      try decoder.flush { picture in if size == nil { size = (picture.width, picture.height) } }
    } catch {
      throw .notAnImage(encoding: encoding.name, reason: "\(error)")
    }
    guard let size else { throw .notAnImage(encoding: encoding.name, reason: "FFmpeg decoded no picture from it") }
    guard size == (codec.width, codec.height) else {
      throw .notAnImage(
        encoding: encoding.name, reason: "it is \(size.0)x\(size.1), the descriptor says \(codec.width)x\(codec.height)")
    }
  }
}

/// Server time for AVA samples: `timestamp` in timescale ticks from the first sample's arrival; a
/// sender whose timestamps are all 0 or go backwards gets each sample stamped on arrival instead.
struct AVATimeline {
  let timescale: UInt64
  private var first: (ticks: UInt64, ms: Int64)?
  private var lastMs: Int64 = 0

  init(timescale: UInt32) { self.timescale = UInt64(timescale > 0 ? timescale : 90_000) }

  mutating func serverTime(ticks: UInt64, arrivedMs: Int64) -> Int64 {
    var ms = arrivedMs
    if ticks > 0 {
      if first == nil { first = (ticks, arrivedMs) }
      if let first, ticks >= first.ticks, let fromTicks = Self.ms(first.ms, plus: ticks - first.ticks, timescale: timescale),
        fromTicks > lastMs
      {
        ms = fromTicks
      }
    }
    ms = max(ms, lastMs + 1)  // never backwards, never twice the same ms
    lastMs = ms
    return ms
  }

  /// `startMs` plus `ticks` of the timescale; nil when that overflows or leaves `StoredTime.usableMs`
  /// (a sender's 64-bit timestamp can be anything).
  private static func ms(_ startMs: Int64, plus ticks: UInt64, timescale: UInt64) -> Int64? {
    let (scaled, overflow) = ticks.multipliedReportingOverflow(by: 1000)
    guard !overflow, let elapsed = Int64(exactly: scaled / timescale) else { return nil }
    return StoredTime.adding(elapsed, to: startMs)
  }
}

/// Which device an AVA session feeds: `extension_configuration` when it is a device id or a JSON object
/// with "device_id", else the graph instance name, else the configured default.
enum AVADeviceName {
  static func of(_ descriptor: AVADescriptor, default fallback: String) -> String {
    let configuration = descriptor.extensionConfiguration.trimmingCharacters(in: .whitespacesAndNewlines)
    if (try? DeviceID(validating: configuration)) != nil { return configuration }
    if configuration.hasPrefix("{"),
      let object = try? JSONSerialization.jsonObject(with: Data(configuration.utf8)) as? [String: Any],
      let device = object["device_id"] as? String
    {
      return device
    }
    if case .graphIdentifier(let graph)? = descriptor.streamIdentifier,
      (try? DeviceID(validating: graph.graphInstanceName)) != nil
    {
      return graph.graphInstanceName
    }
    return fallback
  }
}
