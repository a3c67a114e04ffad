import CZlib
import Foundation
import RelayCore

/// One record of a spool segment, and its bytes on disk:
///
///     u32 body length | u32 CRC-32 of (type, body) | u8 type | body        (integers little-endian)
///
/// A segment is a sequence of records; its first is a `header` that carries everything needed to read
/// the rest on its own (the sequence counter, the acknowledgement and release points, every codec in
/// use), so older segments can be deleted. A record that does not check out (a torn write at a power
/// cut) ends the segment.
enum SpoolRecord: Equatable {
  /// The first record of every segment.
  case header(SpoolPosition, codecs: [Int: CodecDescription])
  /// A new codec generation (the camera reopened with another format).
  case codec(generation: Int, CodecDescription)
  /// A captured frame; its bytes follow the fixed fields.
  case frame(SpoolFrame)
  /// Every frame up to and including this sequence is acknowledged by a server.
  case acknowledged(through: UInt64)
  /// Frames before this sequence are gone from the queue (acknowledged and released, or dropped).
  case released(before: UInt64)

  static let headerBytes = 9
  /// No record is larger (a 4K bgr24 frame is 25 MB): a longer length is damage, not a record.
  static let maxBodyBytes = 256 << 20

  private enum Kind: UInt8 { case header = 1, codec, frame, acknowledged, released }

  /// The record's bytes in two parts, so a frame's bytes are written from where they are rather than
  /// copied behind the fixed fields: `prefix` (length, checksum, type, fixed fields), then `payload`.
  func encodedParts() -> (prefix: Data, payload: Data) {
    var body = ByteWriter()
    var payload = Data()
    let kind: Kind
    switch self {
    case .header(let position, let codecs):
      kind = .header
      body.u64(position.nextSequence)
      body.u64(position.acknowledgedThrough)
      body.u64(position.releasedBefore)
      body.u32(UInt32(codecs.count))
      for generation in codecs.keys.sorted() {
        body.u32(UInt32(generation))
        body.codec(codecs[generation]!)
      }
    case .codec(let generation, let codec):
      kind = .codec
      body.u32(UInt32(generation))
      body.codec(codec)
    case .frame(let frame):
      kind = .frame
      body.u64(frame.sequence)
      body.u32(UInt32(frame.codecGeneration))
      body.u8(frame.isKeyframe ? 1 : 0)
      body.i64(frame.pts)
      body.i64(frame.dts)
      body.i64(frame.captureTimeMs)
      payload = frame.data
    case .acknowledged(let through):
      kind = .acknowledged
      body.u64(through)
    case .released(let before):
      kind = .released
      body.u64(before)
    }
    var prefix = ByteWriter()
    prefix.u32(UInt32(body.bytes.count + payload.count))
    var crc = CRC32()
    crc.update([kind.rawValue])
    crc.update(body.bytes)
    crc.update(payload)
    prefix.u32(crc.value)
    prefix.u8(kind.rawValue)
    prefix.bytes.append(body.bytes)
    return (prefix.bytes, payload)
  }

  func encoded() -> Data {
    let (prefix, payload) = encodedParts()
    return prefix + payload
  }

  /// Where a frame's bytes lie inside its encoded record, from the record's start.
  static let frameDataOffset = headerBytes + 8 + 4 + 1 + 8 + 8 + 8

  enum DecodeResult: Equatable {
    case record(SpoolRecord, length: Int)
    /// Not enough bytes for the record the length announces (a torn last write, or more to read).
    case incomplete
    /// The bytes are not a record (a bad checksum, an unknown type, a length past any record).
    case damaged(String)
  }

  /// Decodes the record at the start of `bytes`.
  static func decode(_ bytes: Data) -> DecodeResult {
    var reader = ByteReader(bytes)
    guard let length = reader.u32(), let crc = reader.u32(), let rawKind = reader.u8() else { return .incomplete }
    guard Int(length) <= maxBodyBytes else { return .damaged("a record of \(length) bytes") }
    guard let body = reader.take(Int(length)) else { return .incomplete }
    var check = CRC32()
    check.update([rawKind])
    check.update(body)
    guard check.value == crc else { return .damaged("a checksum mismatch") }
    guard let kind = Kind(rawValue: rawKind) else { return .damaged("an unknown record type \(rawKind)") }
    var fields = ByteReader(body)
    let record: SpoolRecord?
    switch kind {
    case .header:
      record = fields.header()
    case .codec:
      record = fields.u32().flatMap { generation in fields.codec().map { .codec(generation: Int(generation), $0) } }
    case .frame:
      record = fields.frame()
    case .acknowledged:
      record = fields.u64().map { .acknowledged(through: $0) }
    case .released:
      record = fields.u64().map { .released(before: $0) }
    }
    guard let record, fields.isAtEnd || kind == .frame else { return .damaged("a malformed \(kind) record") }
    return .record(record, length: headerBytes + Int(length))
  }
}

/// The queue's counters a spool carries from one run to the next.
struct SpoolPosition: Equatable {
  /// The sequence the next captured frame gets: never reused, or a server would take a new frame for
  /// one it already has.
  var nextSequence: UInt64 = 1
  var acknowledgedThrough: UInt64 = 0
  var releasedBefore: UInt64 = 1
}

struct SpoolFrame: Equatable {
  var sequence: UInt64
  var codecGeneration: Int
  var isKeyframe: Bool
  var pts: Int64
  var dts: Int64
  var captureTimeMs: Int64
  var data: Data
}

// MARK: Bytes

private struct ByteWriter {
  var bytes = Data()

  mutating func u8(_ value: UInt8) { bytes.append(value) }
  mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
  mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
  mutating func i64(_ value: Int64) { u64(UInt64(bitPattern: value)) }

  mutating func string(_ value: String) {
    let utf8 = Data(value.utf8)
    u32(UInt32(utf8.count))
    bytes.append(utf8)
  }

  mutating func codec(_ codec: CodecDescription) {
    string(codec.name)
    u32(UInt32(truncatingIfNeeded: codec.width))
    u32(UInt32(truncatingIfNeeded: codec.height))
    string(codec.pixelFormat)
    u32(UInt32(codec.extradata.count))
    bytes.append(codec.extradata)
    u32(UInt32(bitPattern: codec.timeBase.numerator))
    u32(UInt32(bitPattern: codec.timeBase.denominator))
    u64(codec.frameRate.bitPattern)
    u32(UInt32(truncatingIfNeeded: codec.stride))
  }
}

private struct ByteReader {
  private let bytes: Data
  private var offset: Int

  init(_ bytes: Data) {
    self.bytes = bytes
    offset = bytes.startIndex
  }

  var isAtEnd: Bool { offset == bytes.endIndex }

  mutating func take(_ count: Int) -> Data? {
    guard count >= 0, bytes.endIndex - offset >= count else { return nil }
    defer { offset += count }
    return bytes[offset..<offset + count]
  }

  mutating func u8() -> UInt8? { take(1)?.first }
  mutating func u32() -> UInt32? { little(4).map { UInt32($0) } }
  mutating func u64() -> UInt64? { little(8) }
  mutating func i64() -> Int64? { u64().map { Int64(bitPattern: $0) } }

  private mutating func little(_ count: Int) -> UInt64? {
    guard let field = take(count) else { return nil }
    var value: UInt64 = 0
    for (shift, byte) in field.enumerated() { value |= UInt64(byte) << (8 * shift) }
    return value
  }

  mutating func string() -> String? {
    guard let count = u32(), let utf8 = take(Int(count)) else { return nil }
    return String(data: utf8, encoding: .utf8)
  }

  mutating func codec() -> CodecDescription? {
    guard let name = string(), let width = u32(), let height = u32(), let pixelFormat = string(),
      let extradataCount = u32(), let extradata = take(Int(extradataCount)),
      let numerator = u32(), let denominator = u32(), let frameRate = u64(), let stride = u32()
    else { return nil }
    return CodecDescription(
      name: name, width: Int(Int32(bitPattern: width)), height: Int(Int32(bitPattern: height)), pixelFormat: pixelFormat,
      extradata: Data(extradata), timeBase: Rational(Int32(bitPattern: numerator), Int32(bitPattern: denominator)),
      frameRate: Double(bitPattern: frameRate), stride: Int(Int32(bitPattern: stride)))
  }

  mutating func header() -> SpoolRecord? {
    guard let next = u64(), let acknowledged = u64(), let released = u64(), let count = u32() else { return nil }
    var codecs: [Int: CodecDescription] = [:]
    for _ in 0..<count {
      guard let generation = u32(), let codec = codec() else { return nil }
      codecs[Int(generation)] = codec
    }
    return .header(.init(nextSequence: next, acknowledgedThrough: acknowledged, releasedBefore: released), codecs: codecs)
  }

  mutating func frame() -> SpoolRecord? {
    guard let sequence = u64(), let generation = u32(), let flags = u8(), let pts = i64(), let dts = i64(),
      let captureTimeMs = i64()
    else { return nil }
    let data = take(bytes.endIndex - offset) ?? Data()
    return .frame(
      SpoolFrame(
        sequence: sequence, codecGeneration: Int(generation), isKeyframe: flags & 1 != 0, pts: pts, dts: dts,
        captureTimeMs: captureTimeMs, data: Data(data)))
  }
}

/// CRC-32 (IEEE 802.3, the one gzip uses), computed by zlib.
struct CRC32 {
  private(set) var value: UInt32 = 0

  mutating func update<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
    update(Data(bytes))
  }

  mutating func update(_ data: Data) {
    data.withUnsafeBytes { buffer in
      guard let base = buffer.bindMemory(to: UInt8.self).baseAddress else { return }
      var done = 0
      while done < buffer.count {  // zlib takes a 32-bit length
        let count = min(buffer.count - done, 1 << 30)
        value = UInt32(crc32(uLong(value), base + done, uInt(count)))
        done += count
      }
    }
  }
}
