import Annotations
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging

/// relay-server's services on one gRPC port: FrameRelay (ingest), Image (consumers), health.
public struct RelayServer: Sendable {
  public let configuration: ServerConfiguration
  private let logger: Logger

  public init(configuration: ServerConfiguration, logger: Logger) {
    self.configuration = configuration
    self.logger = logger
  }

  /// Serves until the task is cancelled. `onListening` gets the bound "host:port" once listening,
  /// `onMetricsListening` the metrics endpoint's.
  public func run(
    onListening: @Sendable (String) -> Void, onMetricsListening: @escaping @Sendable (String) -> Void = { _ in }
  ) async throws {
    let decoderMetrics = DecoderMetrics()
    let registry = DeviceRegistry(configuration: configuration, metrics: decoderMetrics, logger: logger)
    let annotationMetrics = AnnotationMetrics()
    let outbox = AnnotationOutbox(directory: configuration.dataDirectory, logger: logger)
    do {
      try await outbox.open()
    } catch {
      logger.error("annotations outbox unavailable, Annotate will fail until this is fixed: \(error)")
    }
    let forwarder = try makeForwarder(outbox: outbox, metrics: annotationMetrics)
    let recordings = Recordings(
      directory: (configuration.dataDirectory as NSString).appendingPathComponent("recordings"),
      settings: configuration.recordingSettings, logger: logger)
    let proxies = Proxies(endpoints: configuration.rtmpEndpoints, logger: logger)
    let services: [any RegistrableRPCService] = [
      IngestService(registry: registry, configuration: configuration, logger: logger),
      ImageService(
        registry: registry, cursors: ConsumerCursors(capacity: configuration.maxConsumers),
        replays: ReplayLimiter(limit: configuration.maxReplays), metrics: decoderMetrics,
        outbox: outbox, annotationMetrics: annotationMetrics, recordings: recordings, proxies: proxies,
        configuration: configuration, logger: logger),
      HealthService(),
    ]
    let server = GRPCServer(
      transport: .http2NIOPosix(
        address: .ipv4(host: configuration.host, port: configuration.port),
        transportSecurity: .plaintext,
        config: transportConfig),
      services: services)

    do {
      try await withThrowingDiscardingTaskGroup { group in
        if let host = configuration.metricsHost {
          let metricsServer = MetricsServer(host: host, port: configuration.metricsPort) {
            MetricsText(
              registry: registry, decoders: decoderMetrics, outbox: outbox, annotations: annotationMetrics,
              upstreamConfigured: forwarder != nil, recordings: recordings, proxies: proxies
            ).render()
          }
          group.addTask { try await metricsServer.run(onListening: onMetricsListening) }
        }
        if let forwarder {
          group.addTask { try await forwarder.run() }
        }
        group.addTask { await recordings.runRetention() }
        try await serve(server, onListening: onListening)
        group.cancelAll()
      }
    } catch where Task.isCancelled {
      // Asked to stop (SIGINT/SIGTERM): the transport reports the cancellation; that is a clean stop.
    }
    // Recordings end with their segments closed (a clean stop leaves complete files); passthroughs end.
    proxies.stopAll()
    await recordings.stopAll()
  }

  private func makeForwarder(outbox: AnnotationOutbox, metrics: AnnotationMetrics) throws -> AnnotationForwarder? {
    let upstream: any AnnotationUpstream
    switch configuration.annotationsUpstream {
    case nil:
      logger.warning(
        "no annotations upstream configured (--annotations-upstream): annotations stay in the outbox \(outbox.path)")
      return nil
    case .grpc(let host, let port, let tls):
      upstream = try GRPCUpstream(host: host, port: port, tls: tls, timeout: configuration.annotationsTimeout)
    case .http(let url):
      upstream = HTTPUpstream(url: url, secret: configuration.annotationsSecret, timeout: configuration.annotationsTimeout)
    }
    return AnnotationForwarder(
      outbox: outbox, upstream: upstream, settings: configuration.annotationsForwarding, metrics: metrics,
      logger: logger)
  }

  private func serve(
    _ server: GRPCServer<HTTP2ServerTransport.Posix>, onListening: @Sendable (String) -> Void
  ) async throws {
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      guard let address = try await server.listeningAddress?.ipv4 else {
        throw RPCError(code: .unavailable, message: "relay-server could not listen on \(configuration.host):\(configuration.port)")
      }
      onListening("\(address.host):\(address.port)")
      // Cancelled (SIGINT/SIGTERM): stop taking calls, let running ones finish.
      await withTaskCancellationHandler {
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
      } onCancel: {
        server.beginGracefulShutdown()
      }
    }
  }

  /// Tuned for video: the default 64 KiB HTTP/2 window cuts 6 MB-frame throughput about 8×, and the
  /// default 4 MiB payload limit refuses 1080p bgr24 frames with a misleading stream reset.
  var transportConfig: HTTP2ServerTransport.Posix.Config {
    var config = HTTP2ServerTransport.Posix.Config.defaults
    config.http2.targetWindowSize = configuration.http2WindowSize
    config.http2.maxFrameSize = configuration.http2MaxFrameSize
    // Headroom over our own limit so oversized frames reach IngestService, which answers
    // RESOURCE_EXHAUSTED naming the limit; only messages over twice the limit stop in the transport.
    config.rpc.maxRequestPayloadSize = 2 * configuration.maxFrameBytes + (1 << 20)
    return config
  }
}
