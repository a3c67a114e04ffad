import Foundation
import Media
import MediaDevices
import RelayCore

/// An opened source. Blocking: lives on the capture thread.
protocol CaptureSource {
  var codec: CodecDescription { get }
  /// The next packet, nil at the end of the source.
  mutating func nextPacket() throws -> EncodedPacket?
}

extension SourceSpec {
  func open(interrupt: MediaInterrupt) throws -> any CaptureSource {
    switch self {
    case .testPattern(let width, let height, let frameRate):
      let pattern = try TestPattern(width: width, height: height, frameRate: frameRate, interrupt: interrupt)
      return EncodedSource(codec: CodecDescription(pattern.stream), read: pattern.readVideoPacket)
    case .v4l2(let camera):
      var options: [String: String] = [:]
      if let format = camera.inputFormat { options["input_format"] = format }
      if let width = camera.width, let height = camera.height { options["video_size"] = "\(width)x\(height)" }
      if let rate = camera.frameRate { options["framerate"] = "\(rate)" }
      let input: MediaInput
      do {
        MediaDevices.register()
        input = try MediaInput(url: camera.path, format: "v4l2", options: options, interrupt: interrupt)
      } catch {
        throw camera.explain(error)
      }
      guard input.stream.codecName == "rawvideo" else {
        return DemuxedSource(input: input, pace: nil, interrupt: interrupt)  // H.264, MJPEG: as they are
      }
      var settings = camera.encoding
      if settings.frameRate <= 0 { settings.frameRate = Int(input.stream.frameRate.rounded()) }
      let encoding = try EncodingInput(input: input, settings: settings)
      return EncodedSource(codec: CodecDescription(encoding.stream), read: encoding.readVideoPacket)
    case .rtsp(let url, let transport, let timeout):
      // FFmpeg 5: `timeout` is the socket timeout in µs (`stimeout` is gone and silently ignored).
      let input = try MediaInput(
        url: url, options: ["rtsp_transport": transport, "timeout": String(Int(timeout * 1_000_000))],
        interrupt: interrupt)
      return DemuxedSource(input: input, pace: nil, interrupt: interrupt)
    case .file(let path, let pace, let loop):
      guard FileManager.default.isReadableFile(atPath: path) else {
        throw MediaError(operation: "open \(path)", message: "no such readable file")
      }
      let input = try MediaInput(url: path, interrupt: interrupt)
      return DemuxedSource(input: input, pace: pace == .realtime ? Pacer() : nil, interrupt: interrupt,
                           reopen: loop ? { try MediaInput(url: path, interrupt: interrupt) } : nil)
    case .synthetic(let width, let height, let pixelFormat, let frameRate):
      return try SyntheticSource(width: width, height: height, pixelFormat: pixelFormat, frameRate: frameRate)
    }
  }
}

extension CodecDescription {
  init(_ stream: VideoStreamInfo) {
    self.init(
      name: stream.codecName, width: stream.width, height: stream.height, pixelFormat: stream.pixelFormat,
      extradata: stream.extradata, timeBase: Rational(stream.timeBaseNumerator, stream.timeBaseDenominator),
      frameRate: stream.frameRate)
  }
}

/// Packets straight from a demuxer (RTSP, file): sent as the camera encoded them, never re-encoded.
struct DemuxedSource: CaptureSource {
  private var input: MediaInput
  private var pace: Pacer?
  private let reopen: (() throws -> MediaInput)?
  private let interrupt: MediaInterrupt
  private var lastPts: Int64 = 0
  private var ptsOffset: Int64 = 0
  let codec: CodecDescription

  init(input: MediaInput, pace: Pacer?, interrupt: MediaInterrupt, reopen: (() throws -> MediaInput)? = nil) {
    self.input = input
    self.pace = pace
    self.reopen = reopen
    self.interrupt = interrupt
    self.codec = CodecDescription(input.stream)
  }

  mutating func nextPacket() throws -> EncodedPacket? {
    var next = try input.readVideoPacket()
    if next == nil, let reopen, !interrupt.isSet {
      // Looping a file: back to its start (opened again only if it cannot seek there; opening probes
      // the file, about 30 ms of CPU per round for 1080p H.264), timestamps increasing across rounds.
      if (try? input.rewind()) != nil { next = try input.readVideoPacket() }
      if next == nil {
        input = try reopen()
        next = try input.readVideoPacket()
      }
      ptsOffset = lastPts + 1
    }
    guard let packet = next else { return nil }
    // The first packet of an RTSP stream may have no pts: fall back to dts, then to the last one.
    let pts = (packet.pts ?? packet.dts ?? lastPts) + ptsOffset
    let dts = (packet.dts ?? packet.pts ?? lastPts) + ptsOffset
    lastPts = max(lastPts, pts)
    if var pacer = pace {
      pacer.wait(untilPts: pts, timeBase: codec.timeBase)
      pace = pacer
    }
    return EncodedPacket(
      data: packet.data, pts: pts, dts: dts, isKeyframe: packet.isKeyframe, captureTimeMs: WallClock.nowMs())
  }
}

/// Packets encoded here from raw pictures (test pattern, raw V4L2 cameras).
struct EncodedSource: CaptureSource {
  let codec: CodecDescription
  let read: () throws -> MediaPacket?

  mutating func nextPacket() throws -> EncodedPacket? {
    guard let packet = try read() else { return nil }
    return EncodedPacket(
      data: packet.data, pts: packet.pts ?? 0, dts: packet.dts ?? packet.pts ?? 0, isKeyframe: packet.isKeyframe,
      captureTimeMs: WallClock.nowMs())
  }
}

/// Raw frames of one picture, made once; every frame shares its bytes, so the source costs nothing.
struct SyntheticSource: CaptureSource {
  let codec: CodecDescription
  private let picture: Data
  private var pace: Pacer?
  private var frameNumber: Int64 = 0

  init(width: Int, height: Int, pixelFormat: String, frameRate: Double) throws {
    guard ["bgr24", "rgb24", "gray"].contains(pixelFormat),
      let size = RawPicture.packedBytes(pixelFormat: pixelFormat, width: width, height: height)
    else {
      throw MediaError(operation: "synthetic source", message: "unsupported pixel format \(pixelFormat) (use bgr24, rgb24 or gray)")
    }
    var bytes = Data(count: size)
    bytes.withUnsafeMutableBytes { buffer in
      for i in 0..<buffer.count { buffer[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i / 4096) }
    }
    picture = bytes
    let rate = frameRate > 0 ? frameRate : 30
    codec = CodecDescription(
      name: "rawvideo", width: width, height: height, pixelFormat: pixelFormat,
      timeBase: Rational(1, Int32(rate.rounded())), frameRate: rate)
    pace = frameRate > 0 ? Pacer() : nil
  }

  mutating func nextPacket() throws -> EncodedPacket? {
    frameNumber += 1
    if var pacer = pace {
      pacer.wait(untilPts: frameNumber, timeBase: codec.timeBase)
      pace = pacer
    }
    return EncodedPacket(
      data: picture, pts: frameNumber, dts: frameNumber, isKeyframe: true, captureTimeMs: WallClock.nowMs())
  }
}

/// Sleeps so packets leave at the pace their timestamps say.
struct Pacer {
  private var start: (ns: UInt64, pts: Int64)?

  mutating func wait(untilPts pts: Int64, timeBase: Rational) {
    guard timeBase.isValid else { return }
    guard let start else {
      self.start = (WallClock.monotonicNs(), pts)
      return
    }
    let dueNs = start.ns + UInt64(max(0, Double(pts - start.pts) * timeBase.doubleValue * 1e9))
    let now = WallClock.monotonicNs()
    if dueNs > now { usleep(UInt32(min((dueNs - now) / 1000, 5_000_000))) }
  }
}

extension SourceSpec.V4L2 {
  /// FFmpeg says "Invalid argument" for a format or size the camera does not offer: say what it offers.
  func explain(_ error: MediaError) -> MediaError {
    guard inputFormat != nil || width != nil, let device = try? CaptureDevice.describe(path: path) else { return error }
    let offered = device.formats.map { format in
      "\(format.fourcc) (" + format.sizes.map { "\($0.width)x\($0.height)" }.joined(separator: ", ") + ")"
    }
    let asked = [inputFormat, width.map { "\($0)x\(height ?? 0)" }].compactMap { $0 }.joined(separator: " ")
    return MediaError(
      operation: "open \(path)",
      message: "\(error.message): the camera does not offer \(asked); it offers \(offered.joined(separator: "; "))")
  }
}
