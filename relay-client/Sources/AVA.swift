import ArgumentParser
import Foundation
import Logging
import RelayClient
import RelayCore
import ServiceLifecycle

/// `relay-client ava`: feeds an existing AVA gRPC extension (an inference server written for Azure Video
/// Analyzer) from any source; prints the inference results on the acks as AVA JSON, one per line.
struct AVA: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ava",
    abstract: "Feed an AVA gRPC extension server (MediaGraphExtension/ProcessMediaStream) and print its inference results.")

  @Option(help: "The extension's address, HOST:PORT.")
  var server: String?

  @Option(help: "Device id: names the camera in logs, the shared-memory file and --annotate-to annotations.")
  var device: String?

  @OptionGroup(title: "Source (one of; the test pattern by default). --size also scales the frames sent (default: the source's size); --fps also caps the frames sent per second.")
  var source: SourceOptions

  @Option(help: "Sample encoding: raw (default), jpg, png or bmp.")
  var encoding: String?

  @Option(help: "RAW pixel format: rgb24 (default), bgr24, bgra, rgba, argb, abgr or yuv420p.")
  var pixelFormat: String?

  @Flag(help: "Send samples through a shared-memory file under /dev/shm instead of embedded in the messages.")
  var sharedMemory = false

  @Option(help: "Size of the shared-memory file, bytes (default: room for 16 frames).")
  var sharedMemoryBytes: Int?

  @Option(help: "The descriptor's extension_configuration, passed to the extension as is.")
  var extensionConfiguration: String?

  @Option(help: "User for x-ms-authentication: Basic (with --basic-password-file).")
  var basicUser: String?

  @Option(help: "File holding the Basic password (never on the command line, which ps shows).")
  var basicPasswordFile: String?

  @Option(help: "A sample without an ack after this many seconds is counted lost and its shared memory reused (default 5).")
  var ackTimeoutSeconds: Double?

  @Option(help: "Also send each inference result to this relay-server as Image.Annotate, HOST:PORT.")
  var annotateTo: String?

  @OptionGroup(title: "TLS and authentication")
  var security: SecurityOptions

  @OptionGroup var options: RunOptions

  static let pixelFormats = ["rgb24", "bgr24", "bgra", "rgba", "argb", "abgr", "yuv420p"]

  func run() async throws {
    var settings = AVASenderSettings()
    var pixelFormat = "rgb24"
    var size: (Int, Int)?
    var fps: Int?
    var basic: (user: String, passwordFile: String)?
    var annotateTo: HostPort?
    let clientSettings = ClientSettings.readOrExit(
      server: server, device: device, source: source, security: security, run: options,
      defaults: .init(server: nil, device: nil, window: 4, gateway: false)
    ) { keys in
      settings.encoding = keys.value(
        "encoding", flag: encoding, default: .raw, allowed: "raw, jpg, png or bmp", shown: { $0.rawValue }
      ) { AVASenderSettings.Encoding(rawValue: $0) }
      pixelFormat = keys.value(
        "pixelFormat", flag: self.pixelFormat, default: "rgb24", allowed: "one of \(Self.pixelFormats.joined(separator: ", "))"
      ) { Self.pixelFormats.contains($0) ? $0 : nil }
      settings.sharedMemory = keys.bool("sharedMemory", flag: sharedMemory ? true : nil, default: false)
      let bytes = keys.int("sharedMemoryBytes", flag: sharedMemoryBytes, default: 0, allowed: 0...Int.max)
      settings.sharedMemoryBytes = bytes > 0 ? bytes : nil
      settings.extensionConfiguration = keys.string("extensionConfiguration", flag: extensionConfiguration, default: "")!
      settings.ackTimeout = .milliseconds(Int(1000 * keys.double("ackTimeoutSeconds", flag: ackTimeoutSeconds, default: 5)))
      let user = keys.string("basicUser", flag: basicUser, default: nil)
      let passwordFile = keys.string("basicPasswordFile", flag: basicPasswordFile, default: nil)
      if (user == nil) != (passwordFile == nil) {
        keys.problem("basicUser", "basic_user (--basic-user) and basic_password_file (--basic-password-file) go together")
      }
      if let user, let passwordFile { basic = (user, passwordFile) }
      annotateTo = keys.value(
        "annotateTo", flag: self.annotateTo, default: nil as HostPort?, allowed: "HOST:PORT", shown: { $0?.description ?? "~" }
      ) { HostPort($0) }
      size = keys.string("size", flag: source.size, default: nil).flatMap(parseSize)
      fps = Int(keys.string("fps", flag: source.fps.map(String.init), default: nil) ?? "")
    }
    let logger = clientSettings.run.bootstrapLoggingAndMetrics()
    let (configurations, _) = try clientSettings.configurations(
      pictures: PictureRequest(
        width: size?.0, height: size?.1, pixelFormat: Self.inputFormat(of: settings.encoding, raw: pixelFormat),
        maxFrameRate: fps.map(Double.init), imageEncoder: Self.imageEncoder(of: settings.encoding)))
    let configuration = configurations[0]
    let device = configuration.device
    if let basic {
      let password: String
      do {
        password = try String(contentsOfFile: basic.passwordFile, encoding: .utf8).trimmingCharacters(in: .newlines)
      } catch {
        throw ValidationError("cannot read --basic-password-file \(basic.passwordFile): \(error.localizedDescription)")
      }
      settings.authentication = "Basic " + Data("\(basic.user):\(password)".utf8).base64EncodedString()
    }
    let sink = annotateTo.map { AnnotationSink(server: $0, security: configuration.security, logger: logger) }
    let output = StandardOutputLines()
    settings.onInferences = { results in
      output.write(InferenceJSON.line(results))
      if let sink, let size = results.frameSize {
        for request in InferenceAnnotation.requests(results, device: device, width: size.width, height: size.height) {
          sink.add(request)
        }
      }
    }
    try await clientSettings.run.publish(
      [
        Publisher.ava(
          configuration: configuration, settings: settings, spool: try Publisher.openSpool(for: configuration, logger: logger),
          logger: logger)
      ], logger: logger,
      alongside: sink.map { [$0] } ?? [])
  }

  /// What the capture converts pictures to before they are sent (or encoded).
  static func inputFormat(of encoding: AVASenderSettings.Encoding, raw: String) -> String {
    switch encoding {
    case .raw: raw
    case .jpg: "yuvj420p"
    case .png: "rgb24"
    case .bmp: "bgr24"
    }
  }

  static func imageEncoder(of encoding: AVASenderSettings.Encoding) -> String? {
    switch encoding {
    case .raw: nil
    case .jpg: "mjpeg"
    case .png: "png"
    case .bmp: "bmp"
    }
  }
}

/// Whole lines on stdout from any thread (the inference results), unbuffered so pipes see each at once.
final class StandardOutputLines: Sendable {
  private let lock = Locked(())
  func write(_ line: String) {
    lock.withLock { _ in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
  }
}
