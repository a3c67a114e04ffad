import Annotations
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RelayCore
import NIOPosix
import Prometheus
import ServiceLifecycle

/// relay-server's parts, wired once here. `services` lists them in start order; a ServiceGroup starts
/// them and, on SIGTERM or SIGINT, shuts them down gracefully in reverse: the gRPC listeners stop
/// taking calls and end their streams (everything stored is already acked), live decoders stop,
/// RTMP passthroughs end, recordings close their segments, the forwarder stops, and the outbox commits
/// what it was handed and closes.
public struct RelayServer: Sendable {
  public let configuration: ServerConfiguration
  private let prometheus: PrometheusCollectorRegistry
  private let logger: Logger

  /// `prometheus` is the registry behind the swift-metrics backend the program bootstrapped; /metrics
  /// shows it.
  public init(configuration: ServerConfiguration, prometheus: PrometheusCollectorRegistry, logger: Logger) {
    self.configuration = configuration
    self.prometheus = prometheus
    self.logger = logger
  }

  /// Runs until SIGTERM or SIGINT (or the task is cancelled). `onListening` gets each bound
  /// gRPC address ("host:port", "[::1]:port"), `onMetricsListening` the metrics endpoint's.
  public func run(
    onListening: @escaping @Sendable (String) -> Void,
    onMetricsListening: @escaping @Sendable (String) -> Void = { _ in }
  ) async throws {
    var group = ServiceGroupConfiguration(
      services: try await services(onListening: onListening, onMetricsListening: onMetricsListening),
      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    group.maximumGracefulShutdownDuration = configuration.shutdownTimeout
    group.maximumCancellationDuration = .seconds(2)
    try await ServiceGroup(configuration: group).run()
  }

  /// Every part, in start order (shutdown goes the other way).
  func services(
    onListening: @escaping @Sendable (String) -> Void,
    onMetricsListening: @escaping @Sendable (String) -> Void
  ) async throws -> [ServiceGroupConfiguration.ServiceConfiguration] {
    let security = try await ServerSecurity.make(configuration, logger: logger)
    let decoderMetrics = DecoderMetrics()
    let registry = StreamRegistry(configuration: configuration, metrics: decoderMetrics, logger: logger)
    let annotationMetrics = AnnotationMetrics()
    let outbox = AnnotationOutbox(directory: configuration.dataDirectory, logger: logger)
    let forwarder = try makeForwarder(outbox: outbox, metrics: annotationMetrics)
    let recordings = Recordings(
      directory: (configuration.dataDirectory as NSString).appendingPathComponent("recordings"),
      settings: configuration.recordingSettings, logger: logger)
    let proxies = Proxies(endpoints: configuration.rtmpEndpoints, logger: logger)
    let cursors = ConsumerCursors(capacity: configuration.maxConsumers)
    let readiness = Readiness(listeners: configuration.listen.count)
    let rpcServices: [any RegistrableRPCService] = [
      NativeIngestService(registry: registry, sessions: NativeSessions(), configuration: configuration, logger: logger),
      ImageAPI(
        service: ImageService(
          registry: registry, cursors: cursors,
          replays: ReplayLimiter(limit: configuration.maxReplays), metrics: decoderMetrics,
          outbox: outbox, annotationMetrics: annotationMetrics, recordings: recordings, proxies: proxies,
          configuration: configuration, logger: logger)),
      SimpleIngestService(registry: registry, configuration: configuration, logger: logger),
      AVAIngestService(registry: registry, configuration: configuration, logger: logger),
      HealthService(),
    ]

    // Security first: its reloaders outlive every listener.
    var parts: [(String, any Service)] = []
    if let reloader = security.reloader { parts.append(("tls-certificate-reloader", reloader)) }
    if let tokens = security.authenticator.tokens {
      parts.append(("tokens-reloader", TokenFileWatcher(store: tokens, logger: logger)))
    }
    if configuration.insecure { parts.append(("insecure-warning", InsecureWarning(logger: logger))) }
    parts.append(("annotations-outbox", AnnotationOutboxService(outbox: outbox, readiness: readiness, logger: logger)))
    if let forwarder { parts.append(("annotations-forwarder", ForwarderService(forwarder: forwarder))) }
    parts.append(("recordings", RecordingsService(recordings: recordings)))
    parts.append(("rtmp-passthroughs", ProxiesService(proxies: proxies)))
    parts.append(("live-decoders", LiveDecodersService(registry: registry)))
    parts.append(("memory-trimmer", MemoryTrimmer()))
    if let metrics = configuration.metricsListen {
      let scrape = MetricsScrape(
        prometheus: prometheus, registry: registry, cursors: cursors, outbox: outbox,
        upstreamConfigured: forwarder != nil, recordings: recordings, proxies: proxies,
        insecure: configuration.insecure)
      let http = HTTPSide(
        address: metrics, tls: try security.httpTLSConfiguration(),
        authorization: HTTPAuthorization(authenticator: security.authenticator, gate: security.refusals),
        readiness: readiness,
        view: DevicesView(
          registry: registry, cursors: cursors, recordings: recordings, proxies: proxies, outbox: outbox,
          annotations: annotationMetrics, upstream: forwarder.map { "\($0.upstreamDescription)" }),
        coldStartWait: configuration.coldStartWait,
        renderMetrics: { await scrape.render() },
        logger: logger)
      parts.append(("http", try http.application(onListening: onMetricsListening)))
    }
    let limit = ConnectionLimit(maximum: configuration.maxConnections)
    for address in configuration.listen {
      let listener = listener(
        address: address, services: rpcServices, transportSecurity: try security.grpcTransportSecurity(),
        interceptors: [ConnectionLimitInterceptor(limit: limit), security.interceptor], limit: limit
      ) { bound in
        readiness.listenerBound()
        onListening(bound)
      }
      parts.append(("grpc \(address)", listener))
    }
    return parts.map { name, service in .init(service: service, serviceName: name) }
  }

  /// One gRPC listen address serving `services`, with the threads `--handler-threads` chose.
  private func listener(
    address: HostPort, services: [any RegistrableRPCService],
    transportSecurity: HTTP2ServerTransport.Posix.TransportSecurity, interceptors: [any ServerInterceptor],
    limit: ConnectionLimit, onListening: @escaping @Sendable (String) -> Void
  ) -> GRPCListener {
    let loops = MultiThreadedEventLoopGroup.singleton
    let onLoops = configuration.handlerThreads == .eventLoops
    let transport = HTTP2ServerTransport.Posix(
      address: address.socketAddress, transportSecurity: transportSecurity, config: transportConfig(limit),
      eventLoopGroup: loops)
    let server = GRPCServer(
      transport: LoopPinnedTransport(base: transport, executors: onLoops ? LoopExecutors(group: loops) : nil),
      services: services, interceptors: interceptors)
    return GRPCListener(
      server: server, address: address, handlerExecutor: onLoops ? EventLoopTaskExecutor(group: loops) : nil,
      onListening: onListening)
  }

  /// Serves `services` alone on the first listen address, through the same transport, settings and
  /// threads as relay-server's own services, without security or anything else relay-server runs.
  /// For relay-transport-floor: what the benchmarks measure relay-server against.
  public func serveAlone(
    _ services: [any RegistrableRPCService], onListening: @escaping @Sendable (String) -> Void
  ) async throws {
    let limit = ConnectionLimit(maximum: configuration.maxConnections)
    let listener = listener(
      address: configuration.listen[0], services: services, transportSecurity: .plaintext,
      interceptors: [ConnectionLimitInterceptor(limit: limit)], limit: limit, onListening: onListening)
    var group = ServiceGroupConfiguration(
      services: [.init(service: listener, serviceName: "grpc \(configuration.listen[0])")],
      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    group.maximumGracefulShutdownDuration = configuration.shutdownTimeout
    try await ServiceGroup(configuration: group).run()
  }

  private func makeForwarder(outbox: AnnotationOutbox, metrics: AnnotationMetrics) throws -> AnnotationForwarder? {
    let upstream: any AnnotationUpstream
    switch configuration.annotationsUpstream {
    case nil:
      logger.warning(
        "no annotations upstream configured (--annotations-upstream): annotations stay in the outbox \(outbox.path)")
      return nil
    case .grpc(let host, let port, let tls):
      upstream = try GRPCUpstream(
        host: host, port: port, tls: tls, caFile: configuration.annotationsUpstreamCA,
        bearerToken: configuration.annotationsUpstreamToken, timeout: configuration.annotationsTimeout)
    case .http(let url):
      upstream = try HTTPUpstream(
        url: url, secret: configuration.annotationsSecret, caFile: configuration.annotationsUpstreamCA,
        timeout: configuration.annotationsTimeout)
    }
    return AnnotationForwarder(
      outbox: outbox, upstream: upstream, settings: configuration.annotationsForwarding, metrics: metrics,
      logger: logger)
  }

  /// Tuned for video: the default 64 KiB HTTP/2 window cuts 6 MB-frame throughput about 8×, and the
  /// default 4 MiB payload limit refuses 1080p bgr24 frames with a misleading stream reset.
  func transportConfig(_ limit: ConnectionLimit) -> HTTP2ServerTransport.Posix.Config {
    var config = HTTP2ServerTransport.Posix.Config.defaults
    config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
      limit.accepted(channel)
      return channel.eventLoop.makeSucceededVoidFuture()
    }
    config.http2.targetWindowSize = configuration.http2WindowSize
    config.http2.maxFrameSize = configuration.http2MaxFrameSize
    // The transport's default is no limit: one connection could open streams without end.
    config.http2.maxConcurrentStreams = configuration.maxStreamsPerConnection
    // A peer that vanished in a partition (killed, powered off) leaves a connection TCP may take many
    // minutes to give up on: pings find it (the transport's default waits 2 hours), and at shutdown a
    // connection gets 5 s to close before it is closed, so SIGTERM never waits on a dead peer (seen after
    // a 10-minute partition: the ServiceGroup's cancellation deadline passed and it aborted).
    config.connection.keepalive.time = .seconds(60)
    config.connection.keepalive.timeout = .seconds(20)
    config.connection.maxGraceTime = .seconds(5)
    // Headroom over our own limit so oversized frames reach the ingest, which answers
    // RESOURCE_EXHAUSTED naming the limit; only messages over twice the limit stop in the transport.
    config.rpc.maxRequestPayloadSize = 2 * configuration.maxFrameBytes + (1 << 20)
    return config
  }
}

extension HostPort {
  /// IPv6 when the host is an IPv6 literal ("::1", "::"), IPv4 otherwise.
  var socketAddress: GRPCNIOTransportCore.SocketAddress {
    host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
  }
}
