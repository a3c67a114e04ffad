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

  @Option(help: "The frames' shape, rows x columns: HxW (one channel) or HxWx3; the original's is 480x640.")
  var shape = "480x640"

  @Option(help: "The frames' pixel format, gray, bgr24 or rgb24 (default: gray for HxW, bgr24 for HxWx3).")
  var pixelFormat: String?

  @OptionGroup(title: "Source (one of; the test pattern by default). --fps also caps the frames sent per second.")
  var source: SourceOptions

  @OptionGroup(title: "TLS and authentication")
  var security: SecurityOptions

  @OptionGroup var options: RunOptions

  func validate() throws {
    if let device { do { _ = try DeviceID(validating: device) } catch { throw ValidationError("--device: \(error)") } }
    if case .failure(let problem) = PictureShape.parse(shape, pixelFormat: pixelFormat) {
      throw ValidationError("--shape/--pixel-format: \(problem)")
    }
  }

  func run() async throws {
    let settings = ClientSettings.readOrExit(
      server: server, device: device, source: source, security: security, run: options,
      defaults: .init(server: "127.0.0.1:50051", device: "simple", window: 32, gateway: false))
    let logger = settings.run.makeLogger()
    let shape = try PictureShape.parse(shape, pixelFormat: pixelFormat).get()
    let (configurations, _) = try settings.configurations(
      pictures: PictureRequest(
        width: shape.width, height: shape.height, pixelFormat: shape.pixelFormat.rawValue,
        maxFrameRate: source.fps.map(Double.init)))
    try await settings.run.publish(
      [Publisher.simple(configuration: configurations[0], sendsDeviceID: device != nil, logger: logger)], logger: logger)
  }
}
