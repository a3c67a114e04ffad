import Annotations
import ArgumentParser
import Foundation
import Logging
import RelayCore
import RelayServer

@main
struct RelayServerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "relay-server",
    abstract: "Receives camera frames from relay-clients and serves them through the Chrysalis Image API.")

  @Option(help: "Address to listen on, HOST:PORT ([::1]:PORT for IPv6); repeatable, every service on each. Port 0 picks a free port. Default 127.0.0.1:50001.")
  var listen: [String] = []

  @Flag(help: "Allow a non-loopback address without TLS or without authentication (warned about at start and hourly).")
  var insecure = false

  @Option(help: "PEM certificate (chain) for TLS on every listen address and the metrics port; re-read every --tls-reload-seconds.")
  var tlsCert: String?

  @Option(help: "PEM private key of --tls-cert.")
  var tlsKey: String?

  @Option(help: "Require client certificates signed by this PEM CA (mTLS); a certificate's CN or DNS SAN is the caller's identity (cert:NAME in --tokens).")
  var tlsClientCa: String?

  @Option(help: "Read the TLS certificate and key files again this often, seconds: a renewed certificate reaches new connections, open ones keep theirs.")
  var tlsReloadSeconds: Double = 10

  @Option(help: "File of TOKEN ROLES [DEVICES] lines (roles publish, consume, annotate, control, metrics; devices like cam-*); reloaded on change or SIGHUP. See docs/security.md.")
  var tokens: String?

  @Option(help: "PEM public key (ES256, RS256 or EdDSA): bearer JWTs it signed are accepted (sub, roles, devices, exp, nbf).")
  var jwtPublicKey: String?

  @Option(help: "Largest frame a publisher may send and largest image a consumer receives, in bytes.")
  var maxFrameBytes = 16 << 20

  @Option(help: "Per-device packet buffer bound, in bytes.")
  var ringMaxBytes = 64 << 20

  @Option(help: "Per-device packet buffer bound, in seconds of capture time.")
  var ringMaxSeconds: Double = 30

  @Option(help: "Most devices this server keeps.")
  var maxDevices = 64

  @Option(help: "Frames a publisher may have in flight (unacknowledged).")
  var window = 32

  @Option(help: "Stop a device's live decoder after this many seconds without a consumer.")
  var decoderIdleSeconds: Double = 10

  @Option(help: "How long the first VideoLatestImage on a device whose decoder is cold waits for the newest picture, ms.")
  var coldStartWaitMs = 1000

  @Option(help: "Largest HTTP/2 frame the server accepts, bytes (16384 to 16777215).")
  var http2MaxFrameSize = 1 << 20

  @Option(help: "HTTP/2 flow-control window the server offers, bytes.")
  var http2WindowSize = 16 << 20

  @Option(help: "Serve Prometheus metrics at GET /metrics on HOST:PORT (port 0 picks one).")
  var metricsListen: String?

  @Option(help: "Directory for the annotations outbox (annotations.sqlite) and recordings; created if missing.")
  var dataDir = "relay-data"

  @Option(help: "Forward annotations to grpc://HOST:PORT (grpcs:// for TLS; another Image API) or http(s)://HOST[:PORT]/PATH (JSON batches). Without it they stay in the outbox.")
  var annotationsUpstream: String?

  @Option(help: "PEM CA that signed the annotations upstream's certificate (grpcs:// or https://), when it is not in the system trust store.")
  var annotationsUpstreamCa: String?

  @Option(help: "File whose first line is the bearer token sent to a grpc(s):// annotations upstream (a relay-server with --tokens wants the annotate role).")
  var annotationsUpstreamTokenFile: String?

  @Option(help: "File holding the shared secret that signs HTTP upstream requests (HMAC-SHA256; see docs/annotations-upstream.md).")
  var annotationsSecretFile: String?

  @Option(help: "Most annotations in one upstream batch.")
  var annotationsBatchSize = 100

  @Option(help: "Send a batch that is not full once its oldest annotation has waited this long, ms.")
  var annotationsBatchWaitMs = 200

  @Option(help: "Longest pause between upstream retries (exponential back-off with jitter), ms.")
  var annotationsRetryMaxMs = 30_000

  @Option(help: "Timeout of one upstream request, ms.")
  var annotationsTimeoutMs = 5000

  @Option(help: ArgumentHelp(
    "RTMP endpoint for Proxy passthrough, DEVICE=URL; repeatable. DEVICE * means every device; {device} in URL is replaced by the device id.",
    valueName: "device=url"))
  var rtmpEndpoint: [String] = []

  @Option(help: "Start a new recording segment at the first keyframe after this many seconds.")
  var recordSegmentSeconds: Double = 60

  @Option(help: "Delete recording segments older than this many seconds.")
  var recordMaxAgeSeconds: Double = 86_400

  @Option(help: "Delete the oldest recording segments while all of them together exceed this many bytes.")
  var recordMaxBytes = 10 << 30

  @Option(help: "Minimal protocol (/video/Analyse): the frames' shape, rows x columns, HxW or HxWx3 (480x640 is the original's 640x480 gray).")
  var simpleShape = "480x640"

  @Option(help: "Minimal protocol: the frames' pixel format, gray, bgr24 or rgb24 (default: gray for HxW, bgr24 for HxWx3).")
  var simplePixelFormat: String?

  @Option(help: "Minimal protocol: the device of a call without x-device-id metadata.")
  var simpleDefaultDevice = "simple"

  @Option(help: "AVA extension: the device of a session whose extension_configuration and graph instance name give none.")
  var avaDefaultDevice = "ava"

  @Option(help: "AVA extension: a file of user:password lines; sessions must then send a matching x-ms-authentication: Basic header.")
  var avaBasicCredentials: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
  var logLevel: Logger.Level = .info

  func validate() throws {
    for address in listen where HostPort(address) == nil {
      throw ValidationError("--listen \(address) is not HOST:PORT (for example 127.0.0.1:50001 or [::1]:50001)")
    }
    if case .failure(let problem) = PictureShape.parse(simpleShape, pixelFormat: simplePixelFormat) {
      throw ValidationError("--simple-shape/--simple-pixel-format: \(problem)")
    }
    do { _ = try DeviceID(validating: simpleDefaultDevice) } catch {
      throw ValidationError("--simple-default-device: \(error)")
    }
    do { _ = try DeviceID(validating: avaDefaultDevice) } catch {
      throw ValidationError("--ava-default-device: \(error)")
    }
    guard coldStartWaitMs >= 0 else { throw ValidationError("--cold-start-wait-ms must not be negative") }
    if let metricsListen, HostPort(metricsListen) == nil {
      throw ValidationError("--metrics-listen \(metricsListen) is not HOST:PORT (for example 127.0.0.1:9101)")
    }
    guard (16384...16_777_215).contains(http2MaxFrameSize) else {
      throw ValidationError("--http2-max-frame-size is 16384 to 16777215 (the HTTP/2 limits)")
    }
    guard http2WindowSize >= 65535 else { throw ValidationError("--http2-window-size is at least 65535") }
    if let annotationsUpstream {
      do { _ = try UpstreamAddress(parsing: annotationsUpstream) } catch { throw ValidationError(error.description) }
    }
    if annotationsSecretFile != nil, annotationsUpstream?.lowercased().hasPrefix("http") != true {
      throw ValidationError("--annotations-secret-file signs HTTP upstream requests: it needs an http(s):// --annotations-upstream")
    }
    guard annotationsBatchSize > 0, annotationsBatchWaitMs >= 0, annotationsRetryMaxMs > 0, annotationsTimeoutMs > 0 else {
      throw ValidationError("--annotations-batch-size, --annotations-retry-max-ms and --annotations-timeout-ms must be positive")
    }
    for endpoint in rtmpEndpoint {
      let parts = endpoint.split(separator: "=", maxSplits: 1)
      guard parts.count == 2, !parts[0].isEmpty, parts[1].lowercased().hasPrefix("rtmp") else {
        throw ValidationError("--rtmp-endpoint \(endpoint) is not DEVICE=rtmp://HOST[:PORT]/APP/KEY")
      }
    }
    if (tlsCert == nil) != (tlsKey == nil) {
      throw ValidationError("--tls-cert and --tls-key go together: the certificate (chain) and its private key, both PEM")
    }
    if tlsClientCa != nil && tlsCert == nil {
      throw ValidationError("--tls-client-ca requires TLS: add --tls-cert and --tls-key")
    }
    guard tlsReloadSeconds > 0 else { throw ValidationError("--tls-reload-seconds must be positive") }
    for (flag, path) in [("--tls-cert", tlsCert), ("--tls-key", tlsKey), ("--tls-client-ca", tlsClientCa),
                         ("--tokens", tokens), ("--jwt-public-key", jwtPublicKey),
                         ("--annotations-upstream-ca", annotationsUpstreamCa),
                         ("--annotations-upstream-token-file", annotationsUpstreamTokenFile)] {
      if let path, !FileManager.default.isReadableFile(atPath: path) {
        throw ValidationError("\(flag) \(path): no such readable file")
      }
    }
    if annotationsUpstreamCa != nil, !(annotationsUpstream?.lowercased().hasPrefix("grpcs://") == true
        || annotationsUpstream?.lowercased().hasPrefix("https://") == true) {
      throw ValidationError("--annotations-upstream-ca verifies a TLS upstream: it needs a grpcs:// or https:// --annotations-upstream")
    }
    guard recordSegmentSeconds > 0, recordMaxAgeSeconds > 0, recordMaxBytes > 0 else {
      throw ValidationError("--record-segment-seconds, --record-max-age-seconds and --record-max-bytes must be positive")
    }
    guard maxFrameBytes > 0, ringMaxBytes > 0, ringMaxSeconds > 0, maxDevices > 0, window > 0 else {
      throw ValidationError("limits must be positive")
    }
  }

  func run() async throws {
    let addresses = listen.isEmpty ? [HostPort(host: "127.0.0.1", port: 50001)] : listen.map { HostPort($0)! }
    let metricsAddress = metricsListen.flatMap { HostPort($0) }
    let exposed = (addresses + [metricsAddress].compactMap { $0 }).filter { !$0.isLoopback }
    let authenticated = tokens != nil || jwtPublicKey != nil || tlsClientCa != nil
    if let address = exposed.first, !insecure {
      if tlsCert == nil {
        throw ValidationError(
          "refusing to serve \(address) without TLS: add --tls-cert and --tls-key (see docs/security.md), or --insecure to accept plaintext on a non-loopback address")
      }
      if !authenticated {
        throw ValidationError(
          "refusing to serve \(address) without authentication: add --tokens, --jwt-public-key or --tls-client-ca (see docs/security.md), or --insecure to let anyone who reaches it in")
      }
    }
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    let logger = {
      var logger = Logger(label: "relay-server")
      logger.logLevel = logLevel
      return logger
    }()

    var configuration = ServerConfiguration()
    configuration.listen = addresses
    configuration.insecure = !exposed.isEmpty && (tlsCert == nil || !authenticated)
    if let tlsCert, let tlsKey {
      configuration.tls = .init(certificateChain: tlsCert, privateKey: tlsKey, clientCA: tlsClientCa)
      configuration.tls?.reloadInterval = .milliseconds(Int(tlsReloadSeconds * 1000))
    }
    configuration.tokensFile = tokens
    configuration.jwtPublicKeyFile = jwtPublicKey
    configuration.annotationsUpstreamCA = annotationsUpstreamCa
    if let annotationsUpstreamTokenFile {
      guard let text = try? String(contentsOfFile: annotationsUpstreamTokenFile, encoding: .utf8),
        let token = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }),
        !token.isEmpty
      else { throw ValidationError("--annotations-upstream-token-file \(annotationsUpstreamTokenFile) holds no token") }
      configuration.annotationsUpstreamToken = token
    }
    configuration.coldStartWait = .milliseconds(coldStartWaitMs)
    configuration.simpleShape = try PictureShape.parse(simpleShape, pixelFormat: simplePixelFormat).get()
    configuration.simpleDefaultDevice = simpleDefaultDevice
    configuration.avaDefaultDevice = avaDefaultDevice
    if let avaBasicCredentials {
      configuration.avaBasicCredentials = try Self.credentials(in: avaBasicCredentials)
    }
    configuration.maxFrameBytes = maxFrameBytes
    configuration.ringMaxBytes = ringMaxBytes
    configuration.ringMaxSeconds = ringMaxSeconds
    configuration.maxDevices = maxDevices
    configuration.publishWindow = window
    configuration.http2MaxFrameSize = http2MaxFrameSize
    configuration.http2WindowSize = http2WindowSize
    configuration.metricsListen = metricsAddress
    configuration.decoderIdleTimeout = .milliseconds(Int(decoderIdleSeconds * 1000))
    configuration.dataDirectory = dataDir
    configuration.annotationsUpstream = try annotationsUpstream.map { try UpstreamAddress(parsing: $0) }
    if let annotationsSecretFile {
      let secret: String
      do {
        secret = try String(contentsOfFile: annotationsSecretFile, encoding: .utf8)
      } catch {
        throw ValidationError("cannot read --annotations-secret-file \(annotationsSecretFile): \(error.localizedDescription)")
      }
      configuration.annotationsSecret = secret.trimmingCharacters(in: .newlines)
      guard configuration.annotationsSecret?.isEmpty == false else {
        throw ValidationError("--annotations-secret-file \(annotationsSecretFile) is empty")
      }
    }
    configuration.annotationsForwarding.batchSize = annotationsBatchSize
    configuration.annotationsForwarding.batchWait = .milliseconds(annotationsBatchWaitMs)
    configuration.annotationsForwarding.backoff = Backoff(
      initialSeconds: min(0.25, Double(annotationsRetryMaxMs) / 1000), maximumSeconds: Double(annotationsRetryMaxMs) / 1000)
    configuration.annotationsTimeout = .milliseconds(annotationsTimeoutMs)
    for endpoint in rtmpEndpoint {
      let parts = endpoint.split(separator: "=", maxSplits: 1).map(String.init)
      configuration.rtmpEndpoints[parts[0]] = parts[1]
    }
    configuration.recordSegmentSeconds = recordSegmentSeconds
    configuration.recordMaxAgeSeconds = recordMaxAgeSeconds
    configuration.recordMaxBytes = recordMaxBytes

    // SIGTERM and SIGINT shut the parts down gracefully, in reverse start order (RelayServer.run).
    try await RelayServer(configuration: configuration, logger: logger).run { address in
      // Unbuffered: scripts and tests wait for this line.
      FileHandle.standardOutput.write(Data("relay-server listening on \(address)\n".utf8))
      logger.info("listening", metadata: ["address": "\(address)", "max_frame_bytes": "\(maxFrameBytes)"])
    } onMetricsListening: { address in
      FileHandle.standardOutput.write(Data("relay-server metrics on \(address)\n".utf8))
    }
    logger.info("stopped")
  }
}

extension RelayServerCommand {
  /// The `user:password` lines of --ava-basic-credentials (blank lines and # comments skipped).
  static func credentials(in path: String) throws -> [String] {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
      throw ValidationError("cannot read --ava-basic-credentials \(path): \(error.localizedDescription)")
    }
    var pairs: [String] = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let entry = line.trimmingCharacters(in: .whitespaces)
      if entry.isEmpty || entry.hasPrefix("#") { continue }
      guard let colon = entry.firstIndex(of: ":"), colon != entry.startIndex else {
        throw ValidationError("--ava-basic-credentials \(path) line \(number + 1) is not user:password")
      }
      pairs.append(entry)
    }
    guard !pairs.isEmpty else { throw ValidationError("--ava-basic-credentials \(path) holds no user:password line") }
    return pairs
  }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
