import ArgumentParser
import Foundation
import Logging
import RelayClient
import RelayCore

struct Publish: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Stream one source to relay-server (the test pattern unless a source is given), or every camera a --config file lists.",
    discussion: "Every option is also a key of the --config file (--queue-max-bytes is queue: {max_bytes: …}) and an environment variable (FRAMERELAY_QUEUE_MAX_BYTES); flags override the environment, which overrides the file. A file's cameras: list publishes several cameras over one connection. See relay-client/relay-client.yaml.")

  @Option(help: "relay-server address, HOST:PORT (default 127.0.0.1:50001).")
  var server: String?

  @Option(help: "Device id: 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.")
  var device: String?

  @OptionGroup(title: "Source (one of; the test pattern by default)")
  var source: SourceOptions

  @OptionGroup(title: "TLS and authentication")
  var security: SecurityOptions

  @OptionGroup var options: RunOptions

  func run() async throws {
    let settings = ClientSettings.readOrExit(
      server: server, device: device, source: source, security: security, run: options,
      defaults: .init(server: "127.0.0.1:50001", device: nil, window: 32, gateway: true))
    let logger = settings.run.bootstrapLoggingAndMetrics()
    let (configurations, shared) = try settings.configurations()
    if configurations.count > 1 {
      logger.info(
        "publishing \(configurations.count) cameras over one connection to \(settings.server); queue bound per camera \(configurations[0].queueMaxBytes) bytes")
    }
    let publishers = try configurations.map { configuration in
      var cameraLogger = logger
      if configurations.count > 1 { cameraLogger[metadataKey: "device"] = "\(configuration.device)" }
      let spool = try Publisher.openSpool(for: configuration, logger: cameraLogger)
      return Publisher(configuration: configuration, spool: spool, logger: cameraLogger)
    }
    try await settings.run.publish(publishers, logger: logger, alongside: shared.map { [$0] } ?? [])
  }
}
