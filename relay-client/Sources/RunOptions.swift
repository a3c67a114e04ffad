import ArgumentParser
import Foundation
import Logging
import RelayClient
import RelayCore
import ServiceLifecycle

/// The flags of a publishing run that every protocol's subcommand shares, and the run itself.
struct RunOptions: ParsableArguments {
  @Option(help: "Stop after this many frames are captured and acknowledged.")
  var frames: Int?

  @Option(help: "Stop after this many seconds.")
  var duration: Double?

  @Option(help: "Most frames in flight (unacknowledged); default 32 (ava: 4).")
  var window: Int?

  @Option(help: "Bound on frames captured and not yet acknowledged, in bytes; past it whole GOPs are dropped.")
  var queueMaxBytes = 128 << 20

  @Option(help: "Bound on frames captured and not yet acknowledged, in seconds of capture time.")
  var queueMaxSeconds: Double = 60

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
  var logLevel: String = "info"

  func validate() throws {
    if let window, window <= 0 { throw ValidationError("--window must be positive") }
    guard queueMaxBytes > 0, queueMaxSeconds > 0 else { throw ValidationError("--queue-max-bytes and --queue-max-seconds must be positive") }
    if let frames, frames <= 0 { throw ValidationError("--frames must be positive") }
    guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level \(logLevel) is not a level") }
  }

  func makeLogger() -> Logger {
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: "relay-client")
    logger.logLevel = Logger.Level(rawValue: logLevel)!
    return logger
  }

  func apply(to configuration: inout PublisherConfiguration, defaultWindow: Int = 32) {
    configuration.maxFrames = frames
    configuration.window = window ?? defaultWindow
    configuration.queueMaxBytes = queueMaxBytes
    configuration.queueMaxSeconds = queueMaxSeconds
  }

  /// Runs the publisher until its source ends, --frames or --duration is reached, or SIGTERM/SIGINT
  /// (which stop the capture and wait briefly for the frames in flight); prints the summary.
  func publish(_ publisher: Publisher, logger: Logger, alongside others: [any Service] = []) async throws {
    let service = PublisherService(publisher: publisher)
    if let duration {
      Task {
        try await Task.sleep(for: .milliseconds(Int(duration * 1000)))
        publisher.stop()
      }
    }
    // The run ending on its own (a file's end, --frames) is the normal way out, not a failure.
    let configuration = ServiceGroupConfiguration(
      // `others` start first and stop last: the publisher's last acks may still hand them work.
      services: others.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) }
        + [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    try await ServiceGroup(configuration: configuration).run()
    switch service.result {
    case .success(let summary)?:
      print(summary.json)
    case .failure(let error)?:
      print(publisher.summary.json)
      logger.error("\(error)")
      throw ExitCode.failure
    case nil:
      print(publisher.summary.json)
    }
  }
}
