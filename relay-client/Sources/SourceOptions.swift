import ArgumentParser
import RelayClient

/// The source flags every subcommand that captures shares (publish, simple, and ava next).
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

  @Option(help: "H.264 encoder for cameras that give raw pixels: libx264 or h264_v4l2m2m (hardware, Raspberry Pi).")
  var encoder = "libx264"

  @Option(help: "Encoder bit rate, bits per second (0: the encoder's default).")
  var bitrate = 0

  @Option(help: "Frames between keyframes when encoding (default: one a second).")
  var gop: Int?

  @Option(help: "An RTSP camera URL (rtsp://[user:password@]host[:port]/path).")
  var rtsp: String?

  @Option(help: "RTSP transport: tcp or udp.")
  var rtspTransport = "tcp"

  @Option(help: "Seconds without packets after which an RTSP camera counts as stalled and is reopened.")
  var rtspStallSeconds: Double = 5

  @Option(help: "A media file to send as it is stored.")
  var file: String?

  @Option(help: "File pace: realtime (as its timestamps say) or fast (as fast as the network takes it).")
  var pace = "realtime"

  @Flag(help: "Start the file again when it ends.")
  var loop = false

  @Option(help: "Raw frames of one picture, WIDTHxHEIGHT[:PIXFMT] (bgr24, rgb24, gray), sent as fast as possible.")
  var synthetic: String?

  func validate() throws {
    let sources = [testPattern, rtsp != nil, v4l2 != nil, file != nil, synthetic != nil].filter { $0 }.count
    guard sources <= 1 else { throw ValidationError("give one source: --test-pattern, --rtsp, --v4l2, --file or --synthetic") }
    guard ["libx264", "h264_v4l2m2m"].contains(encoder) else { throw ValidationError("--encoder is libx264 or h264_v4l2m2m") }
    if let gop, gop <= 0 { throw ValidationError("--gop must be positive") }
    if let rtsp, !(rtsp.hasPrefix("rtsp://") || rtsp.hasPrefix("rtsps://")) {
      throw ValidationError("--rtsp \(rtsp) is not an rtsp:// or rtsps:// URL")
    }
    guard ["tcp", "udp"].contains(rtspTransport) else { throw ValidationError("--rtsp-transport is tcp or udp") }
    guard SourceSpec.Pace(rawValue: pace) != nil else { throw ValidationError("--pace is realtime or fast") }
    if let size, parseSize(size) == nil { throw ValidationError("--size \(size) is not WIDTHxHEIGHT") }
    if let synthetic, parseSynthetic(synthetic) == nil {
      throw ValidationError("--synthetic \(synthetic) is not WIDTHxHEIGHT[:PIXFMT] with PIXFMT bgr24, rgb24 or gray")
    }
    if let fps, !(1...240).contains(fps) { throw ValidationError("--fps is 1 to 240") }
  }

  var spec: SourceSpec {
    if let rtsp { return .rtsp(url: rtsp, transport: rtspTransport, timeoutSeconds: rtspStallSeconds) }
    if let v4l2 {
      var camera = SourceSpec.V4L2(path: v4l2)
      camera.inputFormat = inputFormat
      if let size, let (width, height) = parseSize(size) { (camera.width, camera.height) = (width, height) }
      camera.frameRate = fps
      camera.encoding.encoder = encoder
      camera.encoding.bitRate = bitrate
      camera.encoding.gop = gop
      camera.encoding.frameRate = fps ?? 0
      return .v4l2(camera)
    }
    if let file { return .file(path: file, pace: SourceSpec.Pace(rawValue: pace)!, loop: loop) }
    if let synthetic, let (width, height, format) = parseSynthetic(synthetic) {
      return .synthetic(width: width, height: height, pixelFormat: format, frameRate: 0)
    }
    let (width, height) = parseSize(size ?? "1280x720")!
    return .testPattern(width: width, height: height, frameRate: fps ?? 30)
  }
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
