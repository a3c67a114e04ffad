import ArgumentParser
import RelayClient
import Settings

/// The source flags every subcommand that captures shares. Each is also a key (`rtspTransport` is
/// `--rtsp-transport`, `rtsp_transport:` in the file, FRAMERELAY_RTSP_TRANSPORT) and a field of a
/// `cameras:` entry; `SourceReading` turns either into a SourceSpec.
struct SourceOptions: ParsableArguments {
  @Flag(help: "FFmpeg's testsrc2 pattern encoded to H.264 (the default source).")
  var testPattern = false

  @Option(help: "Picture size, WIDTHxHEIGHT: the test pattern's (default 1280x720) or the size to ask a V4L2 camera for.")
  var size: String?

  @Option(help: "Frame rate: the test pattern's (default 30) or the rate to ask a V4L2 camera for.")
  var fps: Int?

  @Option(help: "A V4L2 camera, e.g. /dev/video0 (see `relay-client devices`).")
  var v4l2: String?

  @Option(help: "V4L2 format to ask for, FFmpeg's name: yuyv422, nv12, mjpeg, h264.")
  var inputFormat: String?

  @Option(help: "H.264 encoder for cameras that give raw pixels: libx264 (default) or h264_v4l2m2m (hardware, Raspberry Pi).")
  var encoder: String?

  @Option(help: "Encoder bit rate, bits per second (default 0: the encoder's default).")
  var bitrate: Int?

  @Option(help: "Frames between keyframes when encoding (default: one a second).")
  var gop: Int?

  @Option(help: "An RTSP camera URL (rtsp://[user:password@]host[:port]/path).")
  var rtsp: String?

  @Option(help: "RTSP transport: tcp (default) or udp.")
  var rtspTransport: String?

  @Option(help: "Seconds without packets after which an RTSP camera counts as stalled and is reopened (default 5).")
  var rtspStallSeconds: Double?

  @Option(help: "A media file to send as it is stored.")
  var file: String?

  @Option(help: "File pace: realtime (default; as its timestamps say) or fast (as fast as the network takes it).")
  var pace: String?

  @Flag(help: "Start the file again when it ends.")
  var loop = false

  @Option(help: "Raw frames of one picture, WIDTHxHEIGHT[:PIXFMT] (bgr24, rgb24, gray), sent as fast as possible (or at --fps).")
  var synthetic: String?

  /// The flags as plain values (a `cameras:` entry has none).
  var given: SourceReading.Flags {
    .init(
      testPattern: testPattern ? true : nil, size: size, fps: fps.map(String.init), v4l2: v4l2, inputFormat: inputFormat,
      encoder: encoder, bitrate: bitrate.map(String.init), gop: gop.map(String.init), rtsp: rtsp,
      rtspTransport: rtspTransport, rtspStallSeconds: rtspStallSeconds.map { "\($0)" }, file: file, pace: pace,
      loop: loop ? true : nil, synthetic: synthetic)
  }
}

/// One camera's source, read from the top level (flags first, then environment and file) or from a
/// `cameras:` entry; every problem goes to `problem` naming the key.
struct SourceReading {
  struct Flags {
    var testPattern: Bool?, size: String?, fps: String?, v4l2: String?, inputFormat: String?, encoder: String?
    var bitrate: String?, gop: String?, rtsp: String?, rtspTransport: String?, rtspStallSeconds: String?
    var file: String?, pace: String?, loop: Bool?, synthetic: String?
  }

  static let keys: Set<String> = [
    "testPattern", "size", "fps", "v4l2", "inputFormat", "encoder", "bitrate", "gop", "rtsp", "rtspTransport",
    "rtspStallSeconds", "file", "pace", "loop", "synthetic",
  ]

  /// Reads a key (the flag's value, when given, wins).
  let text: (_ key: String, _ flag: String?) -> String?
  let problem: (_ key: String, _ message: String) -> Void

  func spec(_ flags: Flags) -> SourceSpec? {
    func flag(_ value: Bool?) -> String? { value.map { $0 ? "true" : "false" } }
    let testPattern = text("testPattern", flag(flags.testPattern)).map(isTrue) ?? false
    let rtsp = text("rtsp", flags.rtsp), v4l2 = text("v4l2", flags.v4l2), file = text("file", flags.file)
    let synthetic = text("synthetic", flags.synthetic)
    let size = text("size", flags.size)
    let parsedSize = size.flatMap { text -> (Int, Int)? in
      guard let parsed = parseSize(text) else {
        problem("size", "\"\(text)\" is not WIDTHxHEIGHT (16 to 8192 each)")
        return nil
      }
      return parsed
    }
    let fps = int("fps", flags.fps, 1...240)
    let encoder = text("encoder", flags.encoder) ?? "libx264"
    if !["libx264", "h264_v4l2m2m"].contains(encoder) { problem("encoder", "\"\(encoder)\" is not libx264 or h264_v4l2m2m") }
    let bitrate = int("bitrate", flags.bitrate, 0...Int.max) ?? 0
    let gop = int("gop", flags.gop, 1...Int.max)
    let inputFormat = text("inputFormat", flags.inputFormat)
    let transport = text("rtspTransport", flags.rtspTransport) ?? "tcp"
    if !["tcp", "udp"].contains(transport) { problem("rtspTransport", "\"\(transport)\" is not tcp or udp") }
    let stall = text("rtspStallSeconds", flags.rtspStallSeconds).map { text -> Double in
      guard let seconds = Double(text), seconds > 0 else {
        problem("rtspStallSeconds", "\"\(text)\" is not a number of seconds above 0")
        return 5
      }
      return seconds
    } ?? 5
    let pace = text("pace", flags.pace) ?? "realtime"
    if SourceSpec.Pace(rawValue: pace) == nil { problem("pace", "\"\(pace)\" is not realtime or fast") }
    let loop = text("loop", flag(flags.loop)).map(isTrue) ?? false

    let given = [testPattern, rtsp != nil, v4l2 != nil, file != nil, synthetic != nil].filter { $0 }.count
    guard given <= 1 else {
      problem("source", "give one source: test_pattern, rtsp, v4l2, file or synthetic (--test-pattern, --rtsp, --v4l2, --file, --synthetic)")
      return nil
    }
    if let rtsp {
      guard rtsp.hasPrefix("rtsp://") || rtsp.hasPrefix("rtsps://") else {
        problem("rtsp", "\"\(SourceSpec.withoutCredentials(rtsp))\" is not an rtsp:// or rtsps:// URL")
        return nil
      }
      return .rtsp(url: rtsp, transport: transport, timeoutSeconds: stall)
    }
    if let v4l2 {
      var camera = SourceSpec.V4L2(path: v4l2)
      camera.inputFormat = inputFormat
      if let (width, height) = parsedSize { (camera.width, camera.height) = (width, height) }
      camera.frameRate = fps
      camera.encoding.encoder = encoder
      camera.encoding.bitRate = bitrate
      camera.encoding.gop = gop
      camera.encoding.frameRate = fps ?? 0
      return .v4l2(camera)
    }
    if let file { return .file(path: file, pace: SourceSpec.Pace(rawValue: pace) ?? .realtime, loop: loop) }
    if let synthetic {
      guard let (width, height, format) = parseSynthetic(synthetic) else {
        problem("synthetic", "\"\(synthetic)\" is not WIDTHxHEIGHT[:PIXFMT] with PIXFMT bgr24, rgb24 or gray")
        return nil
      }
      return .synthetic(width: width, height: height, pixelFormat: format, frameRate: Double(fps ?? 0))
    }
    let (width, height) = parsedSize ?? (1280, 720)
    return .testPattern(width: width, height: height, frameRate: fps ?? 30)
  }

  private func int(_ key: String, _ flag: String?, _ range: ClosedRange<Int>) -> Int? {
    guard let text = text(key, flag) else { return nil }
    guard let value = Int(text), range.contains(value) else {
      problem(key, "\"\(text)\" is not a whole number from \(range.lowerBound)\(range.upperBound == Int.max ? " up" : " to \(range.upperBound)")")
      return nil
    }
    return value
  }

  private func isTrue(_ text: String) -> Bool { ["true", "yes", "on", "1"].contains(text.lowercased()) }
}

func parseSize(_ value: String) -> (Int, Int)? {
  let parts = value.split(separator: "x")
  guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]),
    (16...8192).contains(width), (16...8192).contains(height)
  else { return nil }
  return (width, height)
}

private func parseSynthetic(_ value: String) -> (Int, Int, String)? {
  let parts = value.split(separator: ":", maxSplits: 1)
  guard let (width, height) = parseSize(String(parts[0])) else { return nil }
  let format = parts.count > 1 ? String(parts[1]) : "bgr24"
  guard ["bgr24", "rgb24", "gray"].contains(format) else { return nil }
  return (width, height, format)
}
