import Annotations
import ArgumentParser
import Foundation
import LogOutput
import Logging
import Metrics
import Prometheus
import RelayCore
import RelayServer
import Settings

/// relay-server's flags. Every flag is also a key of the `--config` YAML file and a `FRAMERELAY_…`
/// environment variable (ServerSettings reads them in that order, flags last); an option left out here
/// is nil, so the file or the environment may set it, and ServerConfiguration's defaults apply last.
@main
struct RelayServerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "relay-server",
    abstract: "Receives camera frames from relay-clients and serves them through the Chrysalis Image API.",
    discussion: "Every option is also a key of the --config file (--ring-max-bytes is ring: {maxBytes: …}) and an environment variable (FRAMERELAY_RING_MAX_BYTES); flags override the environment, which overrides the file. See relay-server/relay-server.yaml.")

  @Option(help: "YAML settings file (annotated example: relay-server/relay-server.yaml).")
  var config: String?

  @Flag(help: "Print the effective settings as YAML (secrets masked) and exit.")
  var printConfig = false

  @Option(help: "Address to listen on, HOST:PORT ([::1]:PORT for IPv6); repeatable, every service on each. Port 0 picks a free port. Default 127.0.0.1:50001.")
  var listen: [String] = []

  @Flag(inversion: .prefixedNo, help: "Allow a non-loopback address without TLS or without authentication (warned about at start and hourly).")
  var insecure: Bool?

  @Option(help: "PEM certificate (chain) for TLS on every listen address and the metrics port; re-read every --tls-reload-seconds.")
  var tlsCert: String?

  @Option(help: "PEM private key of --tls-cert.")
  var tlsKey: String?

  @Option(help: "Require client certificates signed by this PEM CA (mTLS); a certificate's CN or DNS SAN is the caller's identity (cert:NAME in --tokens).")
  var tlsClientCa: String?

  @Option(help: "Read the TLS certificate and key files again this often, seconds (default 10).")
  var tlsReloadSeconds: Double?

  @Option(help: "File of TOKEN ROLES [DEVICES] lines (roles publish, consume, annotate, control, metrics; devices like cam-*); reloaded on change or SIGHUP. See docs/security.md.")
  var tokens: String?

  @Option(help: "PEM public key (ES256, RS256 or EdDSA): bearer JWTs it signed are accepted (sub, roles, devices, exp, nbf).")
  var jwtPublicKey: String?

  @Option(help: "Largest frame a publisher may send and largest image a consumer receives, in bytes (default 16777216).")
  var maxFrameBytes: Int?

  @Option(help: "Per-device packet buffer bound, in bytes (default 67108864).")
  var ringMaxBytes: Int?

  @Option(help: "Per-device packet buffer bound, in seconds of capture time (default 30).")
  var ringMaxSeconds: Double?

  @Option(help: "Most devices this server keeps (default 64).")
  var maxDevices: Int?

  @Option(help: "Most TCP connections served at once on the gRPC listeners; calls on more get RESOURCE_EXHAUSTED and the connection is closed (default 1024).")
  var maxConnections: Int?

  @Option(help: "Most calls (HTTP/2 streams) open at once on one connection; a client past it waits for one to end (default 100).")
  var maxStreamsPerConnection: Int?

  @Option(help: "Frames a publisher may have in flight, unacknowledged (default 32).")
  var window: Int?

  @Option(help: "Stop a device's live decoder after this many seconds without a consumer (default 10).")
  var decoderIdleSeconds: Double?

  @Option(help: "How long the first VideoLatestImage on a device whose decoder is cold waits for the newest picture, ms (default 1000).")
  var coldStartWaitMs: Int?

  @Option(help: "Largest HTTP/2 frame the server accepts, bytes, 16384 to 16777215 (default 1048576).")
  var http2MaxFrameSize: Int?

  @Option(help: "HTTP/2 flow-control window the server offers, bytes (default 16777216).")
  var http2WindowSize: Int?

  @Option(help: "Where gRPC handlers run: event-loops (each on the loop its messages arrive on, no thread hop per message) or pool (Swift's cooperative pool) (default event-loops).")
  var handlerThreads: String?

  @Option(help: "Serve Prometheus metrics at GET /metrics on HOST:PORT (port 0 picks one).")
  var metricsListen: String?

  @Option(help: "Directory for the annotations outbox (annotations.sqlite) and recordings; created if missing (default relay-data).")
  var dataDir: String?

  @Option(help: "Forward annotations to grpc://HOST:PORT (grpcs:// for TLS; another Image API) or http(s)://HOST[:PORT]/PATH (JSON batches). Without it they stay in the outbox.")
  var annotationsUpstream: String?

  @Option(help: "PEM CA that signed the annotations upstream's certificate (grpcs:// or https://), when it is not in the system trust store.")
  var annotationsUpstreamCa: String?

  @Option(help: "File whose first line is the bearer token sent to a grpc(s):// annotations upstream (a relay-server with --tokens wants the annotate role).")
  var annotationsUpstreamTokenFile: String?

  @Option(help: "File holding the shared secret that signs HTTP upstream requests (HMAC-SHA256; see docs/annotations-upstream.md).")
  var annotationsSecretFile: String?

  @Option(help: "Most annotations in one upstream batch (default 100).")
  var annotationsBatchSize: Int?

  @Option(help: "Send a batch that is not full once its oldest annotation has waited this long, ms (default 200).")
  var annotationsBatchWaitMs: Int?

  @Option(help: "Longest pause between upstream retries (exponential back-off with jitter), ms (default 30000).")
  var annotationsRetryMaxMs: Int?

  @Option(help: "Timeout of one upstream request, ms (default 5000).")
  var annotationsTimeoutMs: Int?

  @Option(help: ArgumentHelp(
    "RTMP endpoint for Proxy passthrough, DEVICE=URL; repeatable. DEVICE * means every device; {device} in URL is replaced by the device id.",
    valueName: "device=url"))
  var rtmpEndpoint: [String] = []

  @Option(help: "Start a new recording segment at the first keyframe after this many seconds (default 60).")
  var recordSegmentSeconds: Double?

  @Option(help: "Delete recording segments older than this many seconds (default 86400).")
  var recordMaxAgeSeconds: Double?

  @Option(help: "Delete the oldest recording segments while all of them together exceed this many bytes (default 10737418240).")
  var recordMaxBytes: Int?

  @Option(help: "Minimal protocol (/video/Analyse): the frames' shape, rows x columns, HxW or HxWx3 (default 480x640, the original's 640x480 gray).")
  var simpleShape: String?

  @Option(help: "Minimal protocol: the frames' pixel format, gray, bgr24 or rgb24 (default: gray for HxW, bgr24 for HxWx3).")
  var simplePixelFormat: String?

  @Option(help: "Minimal protocol: the device of a call without x-device-id metadata (default simple).")
  var simpleDefaultDevice: String?

  @Option(help: "AVA extension: the device of a session whose extension_configuration and graph instance name give none (default ava).")
  var avaDefaultDevice: String?

  @Option(help: "AVA extension: a file of user:password lines; sessions must then send a matching x-ms-authentication: Basic header.")
  var avaBasicCredentials: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default info).")
  var logLevel: String?

  @Option(help: "Log format on stderr: human (default) or json (one object per line).")
  var logFormat: String?

  func run() async throws {
    MemoryAllocator.configure()
    let settings: ServerSettings
    do {
      settings = try ServerSettings.read(self)
    } catch let problems {
      for line in problems.lines { FileHandle.standardError.write(Data("relay-server: \(line)\n".utf8)) }
      throw ExitCode(2)
    }
    if printConfig {
      FileHandle.standardOutput.write(Data(settings.yaml.utf8))
      return
    }
    let configuration = settings.configuration
    settings.logFormat.bootstrap()
    let prometheus = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(RelayServer.metricsFactory(registry: prometheus))
    let logger = {
      var logger = Logger(label: "relay-server")
      logger.logLevel = settings.logLevel
      return logger
    }()

    // SIGTERM and SIGINT shut the parts down gracefully, in reverse start order (RelayServer.run).
    try await RelayServer(configuration: configuration, prometheus: prometheus, logger: logger).run { address in
      // Unbuffered: scripts and tests wait for this line.
      FileHandle.standardOutput.write(Data("relay-server listening on \(address)\n".utf8))
      logger.info(
        "listening",
        metadata: [
          "address": "\(address)", "max_frame_bytes": "\(configuration.maxFrameBytes)",
          "memory_allocator": "\(MemoryAllocator.summary)",
        ])
    } onMetricsListening: { address in
      FileHandle.standardOutput.write(Data("relay-server metrics on \(address)\n".utf8))
    }
    logger.info("stopped")
  }
}
