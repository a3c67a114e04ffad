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

  @Option(help: "Sample encoding: raw, jpg, png or bmp.")
  var encoding = "raw"

  @Option(help: "RAW pixel format: rgb24, bgr24, bgra, rgba, argb, abgr or yuv420p.")
  var pixelFormat = "rgb24"

  @Flag(help: "Send samples through a shared-memory file under /dev/shm instead of embedded in the messages.")
  var sharedMemory = false

  @Option(help: "Size of the shared-memory file, bytes (default: room for 16 frames).")
  var sharedMemoryBytes: Int?

  @Option(help: "The descriptor's extension_configuration, passed to the extension as is.")
  var extensionConfiguration = ""

  @Option(help: "User for x-ms-authentication: Basic (with --basic-password-file).")
  var basicUser: String?

  @Option(help: "File holding the Basic password (never on the command line, which ps shows).")
  var basicPasswordFile: String?

  @Option(help: "A sample without an ack after this many seconds is counted lost and its shared memory reused.")
  var ackTimeoutSeconds: Double = 5

  @Option(help: "Also send each inference result to this relay-server as Image.Annotate, HOST:PORT.")
  var annotateTo: String?

  @OptionGroup(title: "TLS and authentication")
  var security: SecurityOptions

  @OptionGroup var options: RunOptions

  static let pixelFormats = ["rgb24", "bgr24", "bgra", "rgba", "argb", "abgr", "yuv420p"]

  func validate() throws {
    guard AVASenderSettings.Encoding(rawValue: encoding) != nil else { throw ValidationError("--encoding is raw, jpg, png or bmp") }
    guard Self.pixelFormats.contains(pixelFormat) else {
      throw ValidationError("--pixel-format is one of \(Self.pixelFormats.joined(separator: ", "))")
    }
    if let sharedMemoryBytes, sharedMemoryBytes <= 0 { throw ValidationError("--shared-memory-bytes must be positive") }
    guard (basicUser == nil) == (basicPasswordFile == nil) else {
      throw ValidationError("--basic-user and --basic-password-file go together")
    }
    guard ackTimeoutSeconds > 0 else { throw ValidationError("--ack-timeout-seconds must be positive") }
    if let annotateTo, HostPort(annotateTo) == nil { throw ValidationError("--annotate-to \(annotateTo) is not HOST:PORT") }
  }

  func run() async throws {
    let clientSettings = ClientSettings.readOrExit(
      server: server, device: device, source: source, security: security, run: options,
      defaults: .init(server: nil, device: nil, window: 4, gateway: false))
    let logger = clientSettings.run.makeLogger()
    let encoding = AVASenderSettings.Encoding(rawValue: encoding)!
    let size = source.size.flatMap(parseSize)
    let (configurations, _) = try clientSettings.configurations(
      pictures: PictureRequest(
        width: size?.0, height: size?.1, pixelFormat: Self.inputFormat(of: encoding, raw: pixelFormat),
        maxFrameRate: source.fps.map(Double.init), imageEncoder: Self.imageEncoder(of: encoding)))
    let configuration = configurations[0]
    let device = configuration.device

    var settings = AVASenderSettings()
    settings.encoding = encoding
    settings.sharedMemory = sharedMemory
    settings.sharedMemoryBytes = sharedMemoryBytes
    settings.extensionConfiguration = extensionConfiguration
    settings.ackTimeout = .milliseconds(Int(ackTimeoutSeconds * 1000))
    if let basicUser, let basicPasswordFile {
      let password: String
      do {
        password = try String(contentsOfFile: basicPasswordFile, encoding: .utf8).trimmingCharacters(in: .newlines)
      } catch {
        throw ValidationError("cannot read --basic-password-file \(basicPasswordFile): \(error.localizedDescription)")
      }
      settings.authentication = "Basic " + Data("\(basicUser):\(password)".utf8).base64EncodedString()
    }
    let sink = annotateTo.map { AnnotationSink(server: HostPort($0)!, security: configuration.security, logger: logger) }
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
      [Publisher.ava(configuration: configuration, settings: settings, logger: logger)], logger: logger,
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
