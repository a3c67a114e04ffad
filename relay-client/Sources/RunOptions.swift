import ArgumentParser
import Foundation
import LogOutput
import Metrics
import Prometheus
import Logging
import RelayClient
import RelayCore
import ServiceLifecycle
import Settings

/// The flags of a publishing run that every protocol's subcommand shares, and the run itself. Keys:
/// `frames`, `duration`, `window`, `queue.maxBytes`, `queue.maxSeconds`, `queue.maxBytesTotal`, `spool.dir`,
/// `spool.maxBytes`, `log.level`.
struct RunOptions: ParsableArguments {
  @Option(help: "YAML settings file (annotated example: relay-client/relay-client.yaml); FRAMERELAY_… environment variables override it, flags override both.")
  var config: String?

  @Flag(help: "Print the effective settings as YAML (secrets masked) and exit.")
  var printConfig = false

  @Option(help: "Stop after this many frames are captured and acknowledged (per camera).")
  var frames: Int?

  @Option(help: "Stop after this many seconds.")
  var duration: Double?

  @Option(help: "Most frames in flight (unacknowledged); default 32 (ava: 4).")
  var window: Int?

  @Option(help: "Bound on one camera's frames captured and not yet acknowledged, in bytes (default 134217728); past it whole GOPs are dropped.")
  var queueMaxBytes: Int?

  @Option(help: "Bound on one camera's frames captured and not yet acknowledged, in seconds of capture time (default 60).")
  var queueMaxSeconds: Double?

  @Option(help: "Bound on all cameras' queues together, in bytes: each camera gets at most this divided by the number of cameras.")
  var queueMaxBytesTotal: Int?

  @Option(help: "Keep each camera's queue on disk in DIR/<device>/ (key spool.dir): frames not yet acknowledged survive an outage of hours and a restart of relay-client, which sends them first. The queue bounds then say how much of it stays in memory.")
  var spool: String?

  @Option(help: "Bound on the spool, all cameras together, in bytes (default 4294967296, about 2 hours of a 4 Mbit/s camera); past it whole GOPs are dropped, oldest first.")
  var spoolMaxBytes: Int?

  @Option(help: "Serve Prometheus metrics of every camera at GET /metrics on HOST:PORT (port 0 picks one).")
  var metricsListen: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default info).")
  var logLevel: String?

  @Option(help: "Log format on stderr: human (default) or json (one object per line).")
  var logFormat: String?

  struct Values {
    var frames: Int?
    var duration: Double?
    var window: Int?
    var queueMaxBytes = 128 << 20
    var queueMaxSeconds: Double = 60
    var queueMaxBytesTotal: Int?
    /// The spool of all cameras (its bound shared evenly), if --spool.
    var spool: Spool.Configuration?
    var logLevel = Logger.Level.info
    var logFormat = LogFormat.human
    var metricsListen: HostPort?
  }

  func read(_ settings: Settings, defaultWindow: Int) -> Values {
    var values = Values()
    let frames = settings.int("frames", flag: self.frames, default: 0, allowed: 0...Int.max)
    values.frames = frames > 0 ? frames : nil
    let duration = settings.double("duration", flag: self.duration, default: 0, atLeast: 0, orMore: true)
    values.duration = duration > 0 ? duration : nil
    values.window = settings.int("window", flag: window, default: defaultWindow)
    values.queueMaxBytes = settings.int("queue.maxBytes", flag: queueMaxBytes, default: values.queueMaxBytes)
    values.queueMaxSeconds = settings.double("queue.maxSeconds", flag: queueMaxSeconds, default: values.queueMaxSeconds)
    let total = settings.int("queue.maxBytesTotal", flag: queueMaxBytesTotal, default: 0, allowed: 0...Int.max)
    values.queueMaxBytesTotal = total > 0 ? total : nil
    let spoolMaxBytes = settings.int("spool.maxBytes", flag: self.spoolMaxBytes, default: 4 << 30, allowed: (1 << 20)...Int.max)
    if let directory = settings.string("spool.dir", flag: spool, default: nil), !directory.isEmpty {
      values.spool = Spool.Configuration(directory: directory, maxBytes: spoolMaxBytes)
    }
    values.logLevel = settings.value(
      "log.level", flag: logLevel, default: Logger.Level.info,
      allowed: "one of trace, debug, info, notice, warning, error, critical"
    ) { Logger.Level(rawValue: $0.lowercased()) }
    values.metricsListen = settings.value(
      "metrics.listen", flag: metricsListen, default: nil as HostPort?, allowed: "HOST:PORT (for example 127.0.0.1:9102)",
      shown: { $0?.description ?? "~" }
    ) { HostPort($0) }
    values.logFormat = settings.value("log.format", flag: logFormat, default: LogFormat.human, allowed: "human or json") {
      LogFormat(rawValue: $0.lowercased())
    }
    return values
  }
}

extension RunOptions.Values {
  /// Once per process: glibc's malloc tuned for frames (MemoryAllocator), swift-log in the chosen format,
  /// swift-metrics into the registry `--metrics-listen` serves. Returns the program's logger.
  func bootstrapLoggingAndMetrics() -> Logger {
    MemoryAllocator.configure()
    logFormat.bootstrap()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: ClientMetricsServer.registry))
    var logger = Logger(label: "relay-client")
    logger.logLevel = logLevel
    logger.debug("memory allocator", metadata: ["memory_allocator": "\(MemoryAllocator.summary)"])
    return logger
  }

  /// `cameras` share the total bound evenly.
  func apply(to configuration: inout PublisherConfiguration, cameras: Int = 1) {
    configuration.maxFrames = frames
    configuration.window = window ?? configuration.window
    configuration.queueMaxBytes = min(queueMaxBytes, queueMaxBytesTotal.map { $0 / max(1, cameras) } ?? .max)
    configuration.queueMaxSeconds = queueMaxSeconds
    configuration.spool = spool.map { Spool.Configuration(directory: $0.directory, maxBytes: $0.maxBytes / max(1, cameras)) }
  }

  /// Runs the publishers until their sources end, --frames or --duration is reached, or SIGTERM/SIGINT
  /// (which stop the capture and wait briefly for the frames in flight); prints the summary.
  func publish(_ publishers: [Publisher], logger: Logger, alongside others: [any Service] = []) async throws {
    let service = PublishersService(publishers: publishers)
    let metricsServer = try metricsListen.map { try ClientMetricsServer(address: $0, publishers: publishers).application() }
    if let duration {
      Task {
        try await Task.sleep(for: .milliseconds(Int(duration * 1000)))
        for publisher in publishers { publisher.stop() }
      }
    }
    // The run ending on its own (a file's end, --frames) is the normal way out, not a failure.
    let configuration = ServiceGroupConfiguration(
      // `others` start first and stop last: the publishers' last acks may still hand them work.
      services: (others + (metricsServer.map { [$0] } ?? [])).map {
        .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup)
      }
        + [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    try await ServiceGroup(configuration: configuration).run()
    let outcomes = service.outcomes
    if publishers.count == 1 {
      print(outcomes[0].summary.json)
    } else {
      print(PublishSummary.json(cameras: outcomes.map(\.summary)))
    }
    let failures = outcomes.compactMap(\.error)
    for error in failures { logger.error("\(error)") }
    if !failures.isEmpty { throw ExitCode.failure }
  }
}
