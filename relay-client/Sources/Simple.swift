import ArgumentParser
import Foundation
import Logging
import RelayClient
import RelayCore

/// `relay-client simple`: feeds a server of the minimal "video over gRPC" protocol (`/video/Analyse`):
/// the camera decoded here, converted and scaled to the shape the server reshapes frames to.
struct Simple: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Send raw frames to a minimal video-over-gRPC server (/video/Analyse), one integer back per frame.")

  @Option(help: "The server's address, HOST:PORT (default 127.0.0.1:50051, where the original server listens).")
  var server: String?

  @Option(help: "Sent as x-device-id metadata, so a relay-server stores the frames under this device (the original client sends none).")
  var device: String?

  @Option(help: "The frames' shape, rows x columns: HxW (one channel) or HxWx3 (default 480x640, the original's).")
  var shape: String?

  @Option(help: "The frames' pixel format, gray, bgr24 or rgb24 (default: gray for HxW, bgr24 for HxWx3).")
  var pixelFormat: String?

  @OptionGroup(title: "Source (one of; the test pattern by default). --fps also caps the frames sent per second.")
  var source: SourceOptions

  @OptionGroup(title: "TLS and authentication")
  var security: SecurityOptions

  @OptionGroup var options: RunOptions

  func run() async throws {
    var shape = PictureShape(height: 480, width: 640, pixelFormat: .gray)
    var fps: Int?
    let settings = ClientSettings.readOrExit(
      server: server, device: device, source: source, security: security, run: options,
      defaults: .init(server: "127.0.0.1:50051", device: "simple", window: 32, gateway: false)
    ) { settings in
      let text = settings.string("shape", flag: self.shape, default: "480x640")!
      let format = settings.string("pixelFormat", flag: pixelFormat, default: nil)
      switch PictureShape.parse(text, pixelFormat: format) {
      case .success(let parsed): shape = parsed
      case .failure(let problem): settings.problem("shape", "\(problem)")
      }
      fps = Int(settings.string("fps", flag: source.fps.map(String.init), default: nil) ?? "")
    }
    let logger = settings.run.bootstrapLoggingAndMetrics()
    let (configurations, _) = try settings.configurations(
      pictures: PictureRequest(
        width: shape.width, height: shape.height, pixelFormat: shape.pixelFormat.rawValue,
        maxFrameRate: fps.map(Double.init)))
    try await settings.run.publish(
      [
        Publisher.simple(
          configuration: configurations[0], sendsDeviceID: settings.deviceGiven,
          spool: try Publisher.openSpool(for: configurations[0], logger: logger), logger: logger)
      ], logger: logger)
  }
}
