import ArgumentParser
import Foundation
import Logging
import RelayClient
import RelayCore
import ServiceLifecycle

struct Publish: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Stream one source to relay-server (the test pattern unless a source is given).")

  @Option(help: "relay-server address, HOST:PORT.")
  var server = "127.0.0.1:50001"

  @Option(help: "Device id: 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.")
  var device: String

  @OptionGroup(title: "Source (one of; the test pattern by default)")
  var source: SourceOptions

  @OptionGroup(title: "TLS and authentication")
  var security: SecurityOptions

  @OptionGroup var options: RunOptions

  func validate() throws {
    guard HostPort(server) != nil else { throw ValidationError("--server \(server) is not HOST:PORT (for example 127.0.0.1:50001)") }
    do { _ = try DeviceID(validating: device) } catch { throw ValidationError("--device: \(error)") }
  }

  func run() async throws {
    let logger = options.makeLogger()
    var configuration = PublisherConfiguration(
      server: HostPort(server)!, device: try DeviceID(validating: device), source: source.spec)
    options.apply(to: &configuration)
    configuration.security = try security.make()
    try await options.publish(Publisher(configuration: configuration, logger: logger), logger: logger)
  }
}
